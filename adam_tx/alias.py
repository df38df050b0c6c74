"""Ready-made optimizers: each a :func:`adam_tx.chain` of the pieces.

Every alias that optax also defines takes optax 0.2.8's arguments, in its
positional order and with its defaults (the list of deliberate differences,
each for torch parity, is in ``docs/coming-from-optax.md``); what adam_tx adds
comes after them, keyword-only. Every rate accepts a float, a JAX array or a
schedule. The Adam-family aliases also take the moment :class:`Storage`
options (``nu_dtype``, ``state_format``, ``seed``) as keywords, declared once
here. The chains follow optax's order (preconditioner, decoupled decay,
learning rate), so ``adamw`` takes the step
``p <- p - lr * (adam_direction + wd * p)``, exactly as torch.optim.AdamW and
optax.adamw do. Where torch couples weight decay as an L2 term (``SGD``,
``RMSprop``, ``Adagrad``, ``Adamax``), the ``weight_decay`` extras do too: the
decay is added to the gradient before the preconditioner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from adam_tx._engine.fusion import chain
from adam_tx._engine.storage import Storage as Storage  # the options, documented there
from adam_tx._engine.storage import stores_moments
from adam_tx._engine.typing import DType, Numeric, ScalarOrSchedule
from adam_tx._engine.validate import (
    check_nonnegative,
    check_range,
    is_schedule,
    is_traced,
)
from adam_tx.adabelief import scale_by_belief
from adam_tx.adam import scale_by_adam
from adam_tx.adamax import scale_by_adamax
from adam_tx.amsgrad import scale_by_amsgrad
from adam_tx.baselines import scale_by_adagrad, scale_by_rms, trace
from adam_tx.learning_rate import identity, scale_by_learning_rate
from adam_tx.weight_decay import add_decayed_weights

Optimizer = optax.GradientTransformationExtraArgs


def _is_zero(value: Any) -> bool:
    """A concrete 0 (so the transform it scales can be left out of a chain)."""
    if value is None:
        return True
    if is_schedule(value) or is_traced(value):
        return False
    return value == 0


def _optional_decay(weight_decay: Any, mask: Any = None) -> tuple[Any, ...]:
    """``add_decayed_weights`` as a chain member, or nothing for 0 or None.

    Placed before the preconditioner it is torch's coupled L2 decay; after it,
    decoupled (AdamW-style) decay.
    """
    if weight_decay is None:
        return ()
    check_nonnegative("weight_decay", weight_decay)
    if _is_zero(weight_decay):
        return ()
    return (add_decayed_weights(weight_decay, mask),)


@stores_moments
def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Numeric = 0.9,
    b2: Numeric = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    *,
    nesterov: bool = False,
    **storage: Any,
) -> Optimizer:
    """Adam: ``chain(scale_by_adam(...), scale_by_learning_rate(lr))``.

    ``p <- p - lr * m_hat / (sqrt(v_hat + eps_root) + eps)``. For torch's
    ``Adam(weight_decay=wd)`` (L2, coupled) chain
    ``add_decayed_weights(wd)`` in front. The arguments are optax.adam's;
    ``nu_dtype``, ``state_format`` and ``seed`` are :class:`Storage`'s.

    >>> import adam_tx, optax, jax.numpy as jnp
    >>> opt = adam_tx.adam(0.1)
    >>> p = jnp.array([1.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0]), s, p)
    >>> optax.apply_updates(p, u).tolist()
    [0.8999999761581421]

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return chain(
        scale_by_adam(
            b1, b2, eps, eps_root, mu_dtype=mu_dtype, nesterov=nesterov, **storage
        ),
        scale_by_learning_rate(learning_rate),
    )


@stores_moments
def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Numeric = 0.9,
    b2: Numeric = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[..., Any] | None = None,
    *,
    nesterov: bool = False,
    **storage: Any,
) -> Optimizer:
    """AdamW: Adam with decoupled weight decay.

    ``p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)``. torch.optim.AdamW
    takes the same step; its default ``weight_decay`` is 1e-2, ours (and
    optax's) 1e-4. ``mask`` as in :func:`adam_tx.add_decayed_weights`
    (e.g. ``adam_tx.decay_mask``). The arguments are optax.adamw's.

    >>> import adam_tx, optax, jax.numpy as jnp
    >>> opt = adam_tx.adamw(0.1, weight_decay=0.5)
    >>> p = jnp.array([1.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0]), s, p)
    >>> round(optax.apply_updates(p, u).tolist()[0], 6)  # 1 - 0.1 * (1 + 0.5)
    0.85

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      weight_decay: decoupled weight decay rate (AdamW's), multiplied by the learning
        rate; a float, an array or a schedule ``count -> value``. 0 adds no decay.
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    check_nonnegative("weight_decay", weight_decay)
    return chain(
        scale_by_adam(
            b1, b2, eps, eps_root, mu_dtype=mu_dtype, nesterov=nesterov, **storage
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@stores_moments
def nadam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Numeric = 0.9,
    b2: Numeric = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    *,
    nesterov: bool = True,
    **storage: Any,
) -> Optimizer:
    """NAdam in optax's form: :func:`adam` with ``nesterov=True``.

    torch.optim.NAdam additionally decays the momentum with a schedule
    (``momentum_decay=4e-3``) and so takes different steps.

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nesterov: Nesterov momentum (True: NAdam; False is plain Adam).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.

    The numerator is ``b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)``;
    at ``t = 1`` that is ``(0.09 / 0.19 + 1) g``:
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.nadam(0.1)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)
    >>> [round(float(x), 4) for x in u]
    [-0.1474, 0.1474]
    """
    return adam(
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype,
        nesterov=nesterov,
        **storage,
    )


@stores_moments
def nadamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Numeric = 0.9,
    b2: Numeric = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[..., Any] | None = None,
    *,
    nesterov: bool = True,
    **storage: Any,
) -> Optimizer:
    """NAdamW: :func:`adamw` with Nesterov momentum (optax.nadamw).

    The step is ``lr * (nadam_direction + weight_decay * p)``:
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.nadamw(0.1, weight_decay=0.5)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)  # 0.1474 + 0.05
    >>> [round(float(x), 4) for x in u]
    [-0.1974, 0.1974]

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      weight_decay: decoupled weight decay rate (AdamW's), multiplied by the learning
        rate; a float, an array or a schedule ``count -> value``. 0 adds no decay.
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      nesterov: Nesterov momentum (True: NAdamW; False is plain AdamW).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return adamw(
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype,
        weight_decay,
        mask,
        nesterov=nesterov,
        **storage,
    )


@stores_moments
def amsgrad(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Numeric = 0.9,
    b2: Numeric = 0.999,
    eps: Numeric = 1e-8,
    eps_root: Numeric = 0.0,
    mu_dtype: DType | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    max_of: str = "nu_hat",
    weight_decay: ScalarOrSchedule | None = None,
    mask: Any | Callable[..., Any] | None = None,
    **storage: Any,
) -> Optimizer:
    """AMSGrad; ``max_of="nu"`` for torch's ``Adam(amsgrad=True)`` convention.

    ``weight_decay`` is decoupled (torch's ``AdamW(amsgrad=True)``); see
    :mod:`adam_tx.amsgrad` for the two conventions. The arguments are
    optax.amsgrad's; only the bias-corrected form (``bias_correction_mu`` and
    ``bias_correction_nu`` True, the default) is implemented.

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the square root of the second moment in the denominator, for
        numerical stability.
      eps_root: added to the second moment inside the square root (0: none; useful when
        differentiating through the update, as in meta-learning).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      bias_correction_mu: bias-correct the first moment (only True is implemented).
      bias_correction_nu: bias-correct the second moment (only True is implemented).
      max_of: ``"nu_hat"`` (optax: the running maximum of ``v_hat``) or ``"nu"``
        (torch's ``Adam(amsgrad=True)``: of ``v``).
      weight_decay: decoupled weight decay rate (AdamW's), multiplied by the learning
        rate; a float, an array or a schedule ``count -> value``. 0 adds no decay.
      mask: which leaves to decay: a pytree of booleans shaped like the parameters, or a
        callable ``params -> pytree`` (e.g. ``adam_tx.decay_mask``); None decays every
        leaf.
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    The first step is Adam's, ``lr * g / |g|``:
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.amsgrad(0.1)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)
    >>> [round(float(x), 4) for x in u]
    [-0.1, 0.1]
    """
    if not (bias_correction_mu and bias_correction_nu):
        raise NotImplementedError(
            f"amsgrad(bias_correction_mu={bias_correction_mu!r}, "
            f"bias_correction_nu={bias_correction_nu!r}): only the bias-corrected "
            "AMSGrad is implemented; use optax.amsgrad for the uncorrected forms"
        )
    return chain(
        scale_by_amsgrad(
            b1, b2, eps, eps_root, mu_dtype=mu_dtype, max_of=max_of, **storage
        ),
        *_optional_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@stores_moments
def adabelief(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Numeric = 0.9,
    b2: Numeric = 0.999,
    eps: Numeric = 1e-16,
    eps_root: Numeric = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: DType | None = None,
    **storage: Any,
) -> Optimizer:
    """AdaBelief (optax.adabelief's form and arguments).

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to the root of the belief ``s_t`` in the denominator.
      eps_root: added to ``s_t`` at every step (inside the root), as optax.
      nesterov: use Nesterov momentum (NAdam's look-ahead numerator).
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
      Observed Gradients", NeurIPS 2020.

    First step: ``s_1 = (1 - b2) (0.9 g)^2``, so the step is ``lr / 0.9``.
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.adabelief(0.1)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)
    >>> [round(float(x), 4) for x in u]
    [-0.1111, 0.1111]
    """
    return chain(
        scale_by_belief(
            b1, b2, eps, eps_root, mu_dtype=mu_dtype, nesterov=nesterov, **storage
        ),
        scale_by_learning_rate(learning_rate),
    )


@stores_moments
def adamax(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: Numeric = 0.9,
    b2: Numeric = 0.999,
    eps: Numeric = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    mu_dtype: DType | None = None,
    **storage: Any,
) -> Optimizer:
    """Adamax (optax.adamax's arguments). ``weight_decay`` is coupled L2, as
    torch.optim.Adamax's; the default learning rate, where optax asks for
    one, is torch's 2e-3.

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      b1: decay rate of the first moment (momentum), a float, an array or a schedule
        ``count -> value``.
      b2: decay rate of the second moment, a float, an array or a schedule
        ``count -> value``.
      eps: added to ``|g_t|`` in the infinity-norm update.
      weight_decay: coupled L2 coefficient, added to the gradient before the
        preconditioner (torch's ``weight_decay``); None or 0: none.
      mu_dtype: storage dtype of the first moment (None: the parameter's).
      nu_dtype: storage dtype of the second moment (None: the parameter's).
      state_format: ``"nearest"`` (round to the storage dtype), ``"stochastic"``
        (bfloat16 storage rounded stochastically), ``"int8"`` or ``"int4"`` (blockwise
        quantized); see ``adam_tx.state_format``.
      seed: seed of the stochastic-rounding key (None: 0).

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, 7.1.

    ``u_t = max(b2 u_{t-1}, |g_t| + eps)``, step ``lr * m_t / ((1 - b1^t) u_t)``:
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.adamax(0.1)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)
    >>> [round(float(x), 4) for x in u]
    [-0.1, 0.1]
    """
    return chain(
        *_optional_decay(weight_decay),
        scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, **storage),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    decay: Numeric = 0.9,
    eps: Numeric = 1e-8,
    initial_scale: Numeric = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Numeric | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
    weight_decay: ScalarOrSchedule | None = None,
) -> Optimizer:
    """RMSProp, optionally centered and with momentum (optax.rmsprop's arguments).

    optax's defaults (``decay=0.9``, eps inside the root). For
    ``torch.optim.RMSprop(lr, alpha, eps, weight_decay, momentum, centered)``
    use ``rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False, ...)``; torch's
    default alpha is 0.99. ``weight_decay`` is coupled L2, as torch's.

    For torch parity the learning rate scales the momentum buffer (torch's
    ``p -= lr * buf``), where optax.rmsprop accumulates ``lr_t``-scaled
    updates in it: the two agree while the learning rate is constant, and the
    state is ``(rms, trace, lr)`` where optax's is ``(rms, lr, trace)``.

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      decay: decay rate of the mean of squares (torch's ``alpha``), a float, an array or
        a schedule ``count -> value``.
      eps: stabiliser of the denominator, inside or outside the root (``eps_in_sqrt``).
      initial_scale: starting value of the mean of squares.
      eps_in_sqrt: True: ``sqrt(v + eps)`` (optax); False: ``sqrt(v) + eps`` (torch).
      centered: divide by the root of the variance (subtract the squared mean gradient).
      momentum: momentum of the scaled step (None: no momentum buffer).
      nesterov: use Nesterov momentum (with ``momentum``).
      bias_correction: bias-correct the mean of squares, as Adam does.
      weight_decay: coupled L2 coefficient, added to the gradient before the
        preconditioner (torch's ``weight_decay``); None or 0: none.

    References:
      Tieleman & Hinton, "Lecture 6.5 - RMSProp", COURSERA 2012.

    ``v_t = decay v_{t-1} + (1 - decay) g_t^2``, step ``lr * g_t / sqrt(v_t + eps)``;
    at ``t = 1`` that is ``lr * g / (sqrt(0.1) |g|)``:
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.rmsprop(0.1)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)
    >>> [round(float(x), 4) for x in u]
    [-0.3162, 0.3162]
    """
    rms = scale_by_rms(
        decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered=centered
    )
    momentum_ = () if momentum is None else (trace(momentum, nesterov),)
    return chain(
        *_optional_decay(weight_decay),
        rms,
        *momentum_,
        scale_by_learning_rate(learning_rate),
    )


def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    initial_accumulator_value: Numeric = 0.0,
    eps: Numeric = 1e-10,
    *,
    lr_decay: Numeric | None = None,
    weight_decay: ScalarOrSchedule | None = None,
) -> Optimizer:
    """AdaGrad with torch.optim.Adagrad's semantics and defaults.

    ``lr_t = lr / (1 + t * lr_decay)`` (t counted from 0); eps outside the root;
    ``weight_decay`` is coupled L2. optax's arguments in optax's order, but for
    torch parity its defaults and eps are torch's: optax.adagrad starts the
    accumulator at 0.1 and puts eps (1e-7) inside the root (for optax's
    numbers, ``adagrad(lr, 0.1, 1e-7)`` differs only in where eps goes).

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      initial_accumulator_value: starting value of the sum of squared gradients.
      eps: added to the root of the sum in the denominator (outside the root, as torch).
      lr_decay: torch's ``lr_decay``: the rate is ``lr / (1 + t * lr_decay)`` (None or
        0: constant).
      weight_decay: coupled L2 coefficient, added to the gradient before the
        preconditioner (torch's ``weight_decay``); None or 0: none.

    References:
      Duchi, Hazan & Singer, JMLR 2011.

    First step: the accumulator is ``g^2``, so the step is ``lr * g / |g|``.
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.adagrad(0.1)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)
    >>> [round(float(x), 4) for x in u]
    [-0.1, 0.1]
    """
    lr = learning_rate
    if lr_decay is not None:
        check_nonnegative("lr_decay", lr_decay)

    if not _is_zero(lr_decay):

        def lr(count, base=learning_rate):
            value = base(count) if is_schedule(base) else base
            return value / (1 + count * lr_decay)

    return chain(
        *_optional_decay(weight_decay),
        scale_by_adagrad(initial_accumulator_value, eps),
        scale_by_learning_rate(lr),
    )


def sgd(
    learning_rate: ScalarOrSchedule = 1e-2,
    momentum: Numeric | None = None,
    nesterov: bool = False,
    accumulator_dtype: DType | None = None,
    *,
    dampening: Numeric | None = None,
    weight_decay: ScalarOrSchedule | None = None,
) -> Optimizer:
    """SGD with optional (Nesterov) momentum: optax.sgd's arguments and state,
    torch.optim.SGD's semantics.

    ``b_t = momentum b_{t-1} + (1 - dampening) g_t`` (``b_1 = g_1``),
    ``p <- p - lr * b_t`` (or ``g_t + momentum b_t`` with Nesterov);
    ``weight_decay`` is coupled L2. As in optax, ``momentum=None`` keeps no
    momentum buffer (the state holds ``optax.EmptyState()`` in its place) and a
    number, 0 included, keeps one (:class:`adam_tx.TraceState`).

    Args:
      learning_rate: step size, a float, an array or a schedule ``count -> value``.
      momentum: momentum coefficient (None: no momentum buffer; a number, 0 included,
        keeps one).
      nesterov: use Nesterov momentum.
      accumulator_dtype: storage dtype of the momentum buffer (None: the parameter's).
      dampening: torch's dampening: the gradient enters the buffer times
        ``1 - dampening``.
      weight_decay: coupled L2 coefficient, added to the gradient before the
        preconditioner (torch's ``weight_decay``); None or 0: none.

    References:
      Sutskever et al., "On the importance of initialization and momentum in
      deep learning", ICML 2013.
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.sgd(0.1, momentum=0.9)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)
    >>> [round(float(x), 4) for x in u]
    [-0.2, 0.05]
    """
    if momentum is None:
        for name, value in (("nesterov", nesterov), ("dampening", dampening)):
            if value not in (None, False):
                raise ValueError(f"{name}={value!r} needs momentum: got momentum=None")
        buffer = identity()
    else:
        check_range("momentum", momentum, 0.0, 1.0)
        buffer = trace(momentum, nesterov, accumulator_dtype, dampening=dampening)
    return chain(
        *_optional_decay(weight_decay), buffer, scale_by_learning_rate(learning_rate)
    )
