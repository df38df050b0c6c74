"""Float64 NumPy references, written straight from the textbook formulas.

Each reference works on the flat list of leaves of a pytree (float64 arrays) and
keeps its own state; ``update(grads, params) -> updates``. They share no code
with ``adam_tx`` on purpose: a test passes when two independent writings of the
same formula agree. The formulas are those of the papers (Kingma & Ba 2015 for
Adam, AdaMax and the bias correction; Loshchilov & Hutter 2019 for AdamW) and
of the papers cited in each adam_tx module.

``run_against_reference`` drives an adam_tx transform and a reference side by
side on a random pytree and reports the largest error of the updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Leaves = list[np.ndarray]


def _zeros(leaves: Leaves, value: float = 0.0) -> Leaves:
    return [np.full(np.shape(x), value, np.float64) for x in leaves]


def _value(rate, t: int) -> float:
    """A constant, or a schedule evaluated at ``t`` (the count before the step)."""
    return float(rate(t)) if callable(rate) else float(rate)


class Reference:
    """Base class: ``t`` is the number of updates taken so far."""

    def init(self, params: Leaves) -> None:
        self.t = 0

    def update(self, grads: Leaves, params: Leaves) -> Leaves:
        raise NotImplementedError


class Adam(Reference):
    """Kingma & Ba 2015, Algorithm 1; NAdam's look-ahead in optax's form."""

    def __init__(
        self,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        eps_root=0.0,
        *,
        bias_correction=True,
        nesterov=False,
    ):
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root
        self.bias_correction, self.nesterov = bias_correction, nesterov

    def init(self, params):
        super().init(params)
        self.m, self.v = _zeros(params), _zeros(params)

    def moments(self, grads):
        self.t += 1
        b1, b2 = _value(self.b1, self.t - 1), _value(self.b2, self.t - 1)
        self.m = [b1 * m + (1 - b1) * g for m, g in zip(self.m, grads)]
        self.v = [b2 * v + (1 - b2) * g * g for v, g in zip(self.v, grads)]
        return b1, b2

    def m_hat(self, b1, m, g):
        t = self.t
        if not self.bias_correction:
            return b1 * m + (1 - b1) * g if self.nesterov else m
        if self.nesterov:
            return b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        return m / (1 - b1**t)

    def update(self, grads, params):
        b1, b2 = self.moments(grads)
        out = []
        for m, v, g in zip(self.m, self.v, grads):
            v_hat = v / (1 - b2**self.t) if self.bias_correction else v
            d = np.sqrt(v_hat + self.eps_root) + self.eps
            out.append(self.m_hat(b1, m, g) / d)
        return out


class Amsgrad(Adam):
    """Reddi et al. 2018; ``max_of`` "nu_hat" (optax) or "nu" (torch)."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, *, max_of="nu_hat"):
        super().__init__(b1, b2, eps, eps_root)
        self.max_of = max_of

    def init(self, params):
        super().init(params)
        self.v_max = _zeros(params)

    def update(self, grads, params):
        b1, b2 = self.moments(grads)
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        out = []
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            if self.max_of == "nu_hat":
                self.v_max[i] = np.maximum(self.v_max[i], v / c2)
                v_eff = self.v_max[i]
            else:
                self.v_max[i] = np.maximum(self.v_max[i], v)
                v_eff = self.v_max[i] / c2
            out.append((m / c1) / (np.sqrt(v_eff + self.eps_root) + self.eps))
        return out


class AdaBelief(Adam):
    """Zhuang et al. 2020: ``s = b2 s + (1-b2)(g - m)^2 + eps_root``."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16):
        super().__init__(b1, b2, eps, eps_root)

    def update(self, grads, params):
        self.t += 1
        b1, b2, t = self.b1, self.b2, self.t
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            s = b2 * self.v[i] + (1 - b2) * (g - self.m[i]) ** 2 + self.eps_root
            self.v[i] = s
            out.append(
                (self.m[i] / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + self.eps)
            )
        return out


class Adamax(Adam):
    """Kingma & Ba 2015, section 7.1, eps inside the max (torch and optax)."""

    def update(self, grads, params):
        self.t += 1
        b1, b2 = self.b1, self.b2
        out = []
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = np.maximum(b2 * self.v[i], np.abs(g) + self.eps)
            out.append(self.m[i] / (1 - b1**self.t) / self.v[i])
        return out


class Rms(Reference):
    """RMSProp, plain or centered; eps inside or outside the square root."""

    def __init__(
        self,
        decay=0.9,
        eps=1e-8,
        initial_scale=0.0,
        *,
        centered=False,
        eps_in_sqrt=True,
    ):
        self.a, self.eps, self.initial_scale = decay, eps, initial_scale
        self.centered, self.eps_in_sqrt = centered, eps_in_sqrt

    def init(self, params):
        super().init(params)
        self.m, self.v = _zeros(params), _zeros(params, self.initial_scale)

    def update(self, grads, params):
        self.t += 1
        a, out = self.a, []
        for i, g in enumerate(grads):
            self.v[i] = a * self.v[i] + (1 - a) * g * g
            self.m[i] = a * self.m[i] + (1 - a) * g
            var = self.v[i] - self.m[i] ** 2 if self.centered else self.v[i]
            d = np.sqrt(var + self.eps) if self.eps_in_sqrt else np.sqrt(var) + self.eps
            out.append(g / d)
        return out


class Adagrad(Reference):
    """Duchi et al. 2011, eps outside the root (torch.optim.Adagrad)."""

    def __init__(self, initial_accumulator_value=0.0, eps=1e-10):
        self.s0, self.eps = initial_accumulator_value, eps

    def init(self, params):
        super().init(params)
        self.s = _zeros(params, self.s0)

    def update(self, grads, params):
        self.t += 1
        out = []
        for i, g in enumerate(grads):
            self.s[i] = self.s[i] + g * g
            out.append(g / (np.sqrt(self.s[i]) + self.eps))
        return out


class Trace(Reference):
    """Momentum as torch.optim.SGD: ``b_1 = g_1``, ``b_t = mu b + (1 - d) g``."""

    def __init__(self, decay=0.9, *, nesterov=False, dampening=0.0):
        self.mu, self.nesterov, self.d = decay, nesterov, dampening

    def init(self, params):
        super().init(params)
        self.b = _zeros(params)

    def update(self, grads, params):
        self.t += 1
        mu, out = self.mu, []
        for i, g in enumerate(grads):
            self.b[i] = g.copy() if self.t == 1 else mu * self.b[i] + (1 - self.d) * g
            out.append(g + mu * self.b[i] if self.nesterov else self.b[i])
        return out


class Clip(Reference):
    def __init__(self, max_delta):
        self.max_delta = max_delta

    def update(self, grads, params):
        return [np.clip(g, -self.max_delta, self.max_delta) for g in grads]


class ClipByGlobalNorm(Reference):
    """Pascanu et al. 2013: ``g * min(1, max_norm / ||g||)``."""

    def __init__(self, max_norm):
        self.max_norm = max_norm

    def update(self, grads, params):
        self.norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
        self.factor = 1.0 if self.norm < self.max_norm else self.max_norm / self.norm
        return [g * self.factor for g in grads]


def unitwise_norm(x: np.ndarray) -> np.ndarray:
    """Per-unit L2 norm (Brock et al. 2021): whole array for rank <= 1, the
    input axis for dense kernels, the HWI axes for HWIO convolutions."""
    axes = {0: None, 1: None, 2: (0,), 3: (0,), 4: (0, 1, 2)}[x.ndim]
    return np.broadcast_to(np.sqrt(np.sum(x * x, axis=axes, keepdims=True)), x.shape)


class AdaptiveGradClip(Reference):
    """Brock et al. 2021: clip units whose ``||g|| > c * max(||p||, eps)``."""

    def __init__(self, clipping=0.01, eps=1e-3):
        self.clipping, self.eps = clipping, eps

    def update(self, grads, params):
        out = []
        for g, p in zip(grads, params):
            g_norm = unitwise_norm(g)
            max_norm = self.clipping * np.maximum(unitwise_norm(p), self.eps)
            clipped = g * (max_norm / np.maximum(g_norm, 1e-6))
            out.append(np.where(g_norm < max_norm, g, clipped))
        return out


class AddDecayedWeights(Reference):
    """Loshchilov & Hutter 2019: ``u + wd * p`` where the mask is True."""

    def __init__(self, weight_decay=1e-4, mask: Sequence | None = None):
        self.wd, self.mask = weight_decay, mask

    def update(self, grads, params):
        wd = _value(self.wd, self.t)
        self.t += 1
        mask = self.mask if self.mask is not None else [True] * len(grads)
        return [np.where(k, g + wd * p, g) for g, p, k in zip(grads, params, mask)]


class ScaleByLearningRate(Reference):
    """``-lr_t u``, the schedule evaluated at the count before the step."""

    def __init__(self, learning_rate, flip_sign=True):
        self.lr, self.sign = learning_rate, -1.0 if flip_sign else 1.0

    def update(self, grads, params):
        lr = _value(self.lr, self.t)
        self.t += 1
        return [self.sign * lr * g for g in grads]


class BiasCorrection(Reference):
    """Divide by ``1 - b^t``, t counted from 1."""

    def __init__(self, decay):
        self.decay = decay

    def update(self, grads, params):
        self.t += 1
        return [g / (1 - self.decay**self.t) for g in grads]


class TrustRatio(Reference):
    """LARS/LAMB's ``||p|| / ||u||`` per leaf (1 when either norm is 0)."""

    def update(self, grads, params):
        out = []
        for g, p in zip(grads, params):
            pn, un = np.linalg.norm(p), np.linalg.norm(g)
            out.append(g * (pn / un if pn > 0 and un > 0 else 1.0))
        return out


class Chain(Reference):
    """Apply references in order, as a chain applies transforms."""

    def __init__(self, *refs: Reference):
        self.refs = refs

    def init(self, params):
        for r in self.refs:
            r.init(params)

    def update(self, grads, params):
        for r in self.refs:
            grads = r.update(grads, params)
        return grads


# The aliases as compositions of the references above.


def adam(lr, **kw):
    return Chain(Adam(**kw), ScaleByLearningRate(lr))


def adamw(lr, weight_decay=1e-4, mask=None, **kw):
    return Chain(
        Adam(**kw), AddDecayedWeights(weight_decay, mask), ScaleByLearningRate(lr)
    )


def l2(weight_decay) -> tuple[Reference, ...]:
    return (AddDecayedWeights(weight_decay),) if weight_decay else ()


# ----------------------------------------------------------------------------
# Random pytrees and the side-by-side driver.

# Five leaves: a scalar, a vector, a matrix and a 4-d (HWIO) kernel, inside nested
# dict / list / tuple containers. Kept small: XLA's CPU compile time grows with the
# number of leaves, and every case compiles its own program.
SHAPES = {
    "scalar": (),
    "mat": (3, 4),
    "nested": {"list": [(5,), {"conv": (2, 2, 3, 2)}], "tuple": ((2, 3),)},
}


def shape_tree(shapes=SHAPES):
    """``SHAPES`` with its shape tuples turned into leaves."""
    return jax.tree.map(
        lambda s: tuple(s),
        shapes,
        is_leaf=lambda s: isinstance(s, tuple) and all(isinstance(d, int) for d in s),
    )


def random_tree(rng: np.random.Generator, shapes=SHAPES, scale: float = 1.0):
    """A pytree of float64 NumPy arrays (shapes from ``shapes``), N(0, scale^2)
    with a few exact zeros, as gradients often have."""

    def leaf(shape):
        x = rng.normal(0.0, scale, size=shape)
        if x.size > 2:
            x.flat[rng.integers(0, x.size)] = 0.0
        return x

    is_shape = lambda s: isinstance(s, tuple) and all(isinstance(d, int) for d in s)
    return jax.tree.map(leaf, shapes, is_leaf=is_shape)


def run_against_reference(
    tx,
    ref: Reference,
    *,
    dtype=jnp.float32,
    steps: int = 50,
    jit: bool = True,
    seed: int = 0,
    shapes=SHAPES,
    grad_scale: Callable[[int], float] = lambda t: 1.0,
):
    """Run ``tx`` and ``ref`` on the same gradients and parameters.

    Every step both see the same gradients (drawn in float64, rounded to
    ``dtype``) and the same parameters; parameters then move by the reference's
    update, so errors of one step do not feed the next step's inputs and each
    step measures the transform alone (its own state still carries its own
    rounding). Returns ``(max_rel_err, max_abs_err, final_state, ref)``, the
    relative error taken against the largest reference update of that step.
    """
    rng = np.random.default_rng(seed)
    params64 = random_tree(rng, shapes)
    # Rounded by NumPy (ml_dtypes covers bfloat16): no per-shape XLA convert.
    np_dtype = np.dtype(jnp.dtype(dtype))
    cast = lambda tree: jax.tree.map(
        lambda x: jnp.asarray(np.asarray(x, np_dtype)), tree
    )
    as64 = lambda tree: [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]
    params = cast(params64)
    state = tx.init(params)
    ref.init(as64(params))
    update = jax.jit(tx.update) if jit else tx.update
    treedef = jax.tree.structure(params)
    max_rel = max_abs = 0.0
    for t in range(steps):
        grads = cast(random_tree(rng, shapes, grad_scale(t)))
        updates, state = update(grads, state, params)
        for u in jax.tree.leaves(updates):
            assert u.dtype == jnp.dtype(dtype), (u.dtype, dtype)
        expected = ref.update(as64(grads), as64(params))
        got = as64(updates)
        scale = max(max(float(np.max(np.abs(e), initial=0.0)) for e in expected), 1e-30)
        err = max(
            float(np.max(np.abs(g - e), initial=0.0)) for g, e in zip(got, expected)
        )
        max_abs, max_rel = max(max_abs, err), max(max_rel, err / scale)
        params64 = [p + e for p, e in zip(as64(params), expected)]
        params = cast(jax.tree.unflatten(treedef, params64))
    return max_rel, max_abs, state, ref


def run_against_transform(
    tx,
    other,
    *,
    dtype=jnp.float32,
    steps: int = 50,
    seed: int = 0,
    shapes=SHAPES,
    grad_scale: Callable[[int], float] = lambda t: 1.0,
):
    """Run two transforms (e.g. adam_tx's and optax's) on the same inputs.

    As in :func:`run_against_reference`, parameters move by ``other``'s update,
    so each step compares the two transforms on identical inputs. Returns the
    largest error relative to the largest update of ``other`` in that step.
    """
    rng = np.random.default_rng(seed)
    np_dtype = np.dtype(jnp.dtype(dtype))
    cast = lambda tree: jax.tree.map(
        lambda x: jnp.asarray(np.asarray(x, np_dtype)), tree
    )
    params = cast(random_tree(rng, shapes))
    s1, s2 = tx.init(params), other.init(params)
    u1_fn, u2_fn = jax.jit(tx.update), jax.jit(other.update)
    max_rel = 0.0
    for t in range(steps):
        grads = cast(random_tree(rng, shapes, grad_scale(t)))
        u1, s1 = u1_fn(grads, s1, params)
        u2, s2 = u2_fn(grads, s2, params)
        a = [np.asarray(x, np.float64) for x in jax.tree.leaves(u1)]
        b = [np.asarray(x, np.float64) for x in jax.tree.leaves(u2)]
        scale = max(max(float(np.max(np.abs(x), initial=0.0)) for x in b), 1e-30)
        err = max(float(np.max(np.abs(x - y), initial=0.0)) for x, y in zip(a, b))
        max_rel = max(max_rel, err / scale)
        params = cast(
            jax.tree.map(
                lambda p, u: np.asarray(p, np.float64) + u,
                params,
                jax.tree.unflatten(jax.tree.structure(params), b),
            )
        )
    return max_rel, s1, s2


# Tolerances of the per-step comparisons (relative to the step's largest update).
# float64: the reference and adam_tx differ only in how 1 - b^t is evaluated
# (-expm1(t log1p(-(1-b))) vs 1 - b**t) and in operation order; measured <= 1e-14.
F64_RTOL = 1e-12
# float32: adam_tx runs in float32 against the float64 formula; measured <= 8e-7
# (about ten float32 roundings of 6e-8). 2e-6 still catches the classic float32
# slips: 1 - float32(0.999) in place of the exact complement (6.5e-6 on Adam's
# step) or 1 - float32(0.999)**t in the bias correction (1e-5, optax's error).
F32_RTOL = 2e-6
# float32 parity with optax's Adam family: optax evaluates 1 - b2**t in float32,
# 1.3e-5 off at t = 1 for b2 = 0.999, which moves the step by up to 1.01e-5.
OPTAX_ADAM_RTOL = 2e-5

MODES = ("float32-jit", "float64-jit")
EAGER = "float32-eager"
# Eager runs dispatch every operation on its own; a smaller tree keeps them fast.
SMALL_SHAPES = {"s": (), "v": (3,), "n": [{"m": (2, 3)}]}


def check_against_reference(
    make_tx, make_ref, mode: str, *, rtol32=F32_RTOL, steps: int = 50, **kw
) -> float:
    """Assert ``make_tx()`` matches ``make_ref()`` for ``steps`` steps in ``mode``."""
    dtype_name, how = mode.split("-")
    jit = how == "jit"
    kw.setdefault("shapes", SHAPES if jit else SMALL_SHAPES)
    if dtype_name == "float64":
        with jax.enable_x64(True):
            rel = run_against_reference(
                make_tx(), make_ref(), dtype=jnp.float64, jit=jit, steps=steps, **kw
            )[0]
        tol = F64_RTOL
    else:
        rel = run_against_reference(
            make_tx(), make_ref(), dtype=jnp.float32, jit=jit, steps=steps, **kw
        )[0]
        tol = rtol32
    assert rel <= tol, f"{mode}: max relative error {rel:.3g} > {tol:.3g}"
    return rel


def check_against_transform(
    make_tx, make_other, dtype_name: str, *, rtol32=F32_RTOL, steps: int = 50, **kw
) -> float:
    """Assert two transforms agree (float32: ``rtol32``; float64: F64_RTOL)."""
    if dtype_name == "float64":
        with jax.enable_x64(True):
            rel = run_against_transform(
                make_tx(), make_other(), dtype=jnp.float64, steps=steps, **kw
            )[0]
        tol = F64_RTOL
    else:
        rel = run_against_transform(make_tx(), make_other(), steps=steps, **kw)[0]
        tol = rtol32
    assert rel <= tol, f"{dtype_name}: max relative error {rel:.3g} > {tol:.3g}"
    return rel
