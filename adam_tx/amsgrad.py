"""AMSGrad: Adam with a non-decreasing second moment (Reddi et al., "On the
Convergence of Adam and Beyond", ICLR 2018).

Two conventions are in use, and ``max_of`` picks one:

* ``max_of="nu_hat"`` (optax.amsgrad): keep the running max of the
  *bias-corrected* second moment, ``vmax_t = max(vmax_{t-1}, v_t / (1-b2^t))``,
  and step with ``m_hat / (sqrt(vmax_t + eps_root) + eps)``.
* ``max_of="nu"`` (torch.optim.Adam(amsgrad=True)): keep the max of the *raw*
  second moment, ``vmax_t = max(vmax_{t-1}, v_t)``, and bias-correct it
  afterwards: ``m_hat / (sqrt(vmax_t / (1-b2^t) + eps_root) + eps)``.

They differ because ``1 - b2^t`` grows with t: an early large ``v_hat`` is
remembered at full size by the first, and shrunk by the growing correction in
the second.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adam_tx import hyperparams
from adam_tx._engine.stateful import SplitMath, counted_transform
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx._engine.validate import check_choice
from adam_tx.adam import ADAM_RANGES, adam_corrections, adam_hypers, check_adam_args
from adam_tx.bias_correction import debias
from adam_tx.moments import adaptive_step, ema, ema_sq
from adam_tx.state_format import moment_format


class ScaleByAmsgradState(NamedTuple):
    """State of :func:`scale_by_amsgrad`: the step count, the moments and the running
    maximum.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    nu_max: Any
    hyperparams: dict
    rng: Any = None  # PRNG key, only with state_format="stochastic"


hyperparams.register_ranges(ScaleByAmsgradState, **ADAM_RANGES)


def scale_by_amsgrad(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    *,
    max_of: str = "nu_hat",
    nu_dtype: DType | None = None,
    state_format: str = "nearest",
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Rescale updates by AMSGrad's moment estimates (see module docstring).

    Args:
      b1, b2: moment decays in [0, 1) (floats or schedules).
      eps, eps_root: denominator terms outside / inside the square root.
      max_of: ``"nu_hat"`` (optax's convention) or ``"nu"`` (PyTorch's).
      mu_dtype, nu_dtype: storage dtypes of the moments (``nu_max`` shares
        ``nu_dtype``).
      state_format, seed: moment storage, as in :func:`adam_tx.scale_by_adam`.

    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.scale_by_amsgrad(max_of="nu")
    >>> u, s = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
    >>> round(u.tolist()[0], 6)
    1.0

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
    """
    check_adam_args(b1, b2, eps, eps_root)
    check_choice("max_of", max_of, ("nu_hat", "nu"))
    nu_fmt = moment_format("nu_dtype", nu_dtype, state_format, signed=False, seed=seed)
    formats = {
        "mu": moment_format("mu_dtype", mu_dtype, state_format, seed=seed),
        "nu": nu_fmt,
        "nu_max": nu_fmt,
    }

    def moments(c, g, m, v, v_max):
        m = ema(m, g, c.hp["b1"], c.hp["1-b1"])
        v = ema_sq(v, g, c.hp["b2"], c.hp["1-b2"])
        peak = debias(v, c.scalars["c2"]) if max_of == "nu_hat" else v
        return m, v, jnp.maximum(v_max, peak)

    def update(c, g, m, v, v_max):
        v_eff = v_max if max_of == "nu_hat" else debias(v_max, c.scalars["c2"])
        m_hat = debias(m, c.scalars["c1"])
        return adaptive_step(m_hat, v_eff, c.hp["eps"], c.hp["eps_root"])

    math = SplitMath(moments, update)

    return counted_transform(
        "scale_by_amsgrad",
        ScaleByAmsgradState,
        adam_hypers(b1, b2, eps, eps_root),
        formats,
        math,
        scalars=adam_corrections(True, False),
    )
