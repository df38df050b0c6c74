"""Ready-made optimizers: each a :func:`adam_tx.chain` of the pieces.

Every rate accepts a float or a schedule. The Adam-family aliases take
``mu_dtype``, ``nu_dtype``, ``state_format`` (``"nearest"``, ``"stochastic"``
or ``"int8"``) and ``seed``, which choose how the moments are stored (see
:func:`adam_tx.scale_by_adam`). The chains follow optax's order
(preconditioner, decoupled decay, learning rate), so ``adamw`` takes the step
``p <- p - lr * (adam_direction + wd * p)``, exactly as torch.optim.AdamW and
optax.adamw do. Where torch couples weight decay as an L2 term (``SGD``,
``RMSprop``, ``Adagrad``), the aliases do too: the decay is added to the
gradient before the preconditioner.
"""

from __future__ import annotations

from adam_tx._fusion import chain
from adam_tx._validate import check_nonnegative, is_schedule
from adam_tx.adabelief import scale_by_belief
from adam_tx.adam import scale_by_adam
from adam_tx.adamax import scale_by_adamax
from adam_tx.amsgrad import scale_by_amsgrad
from adam_tx.baselines import scale_by_adagrad, scale_by_rms, trace
from adam_tx.learning_rate import scale_by_learning_rate
from adam_tx.weight_decay import add_decayed_weights


def _optional_decay(weight_decay, mask=None):
    """``add_decayed_weights`` as a chain member, or nothing when the decay is 0.

    Placed before the preconditioner it is torch's coupled L2 decay; after it,
    decoupled (AdamW-style) decay.
    """
    check_nonnegative("weight_decay", weight_decay)
    if not is_schedule(weight_decay) and weight_decay == 0:
        return ()
    return (add_decayed_weights(weight_decay, mask),)


def adam(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    *,
    mu_dtype=None,
    nu_dtype=None,
    nesterov: bool = False,
    state_format: str = "nearest",
    seed: int = 0,
):
    """Adam: ``chain(scale_by_adam(...), scale_by_learning_rate(lr))``.

    ``p <- p - lr * m_hat / (sqrt(v_hat + eps_root) + eps)``. For torch's
    ``Adam(weight_decay=wd)`` (L2, coupled) chain
    ``add_decayed_weights(wd)`` in front.

    >>> import adam_tx, optax, jax.numpy as jnp
    >>> opt = adam_tx.adam(0.1)
    >>> p = jnp.array([1.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0]), s, p)
    >>> optax.apply_updates(p, u).tolist()
    [0.8999999761581421]

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return chain(
        scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
            nesterov=nesterov,
            state_format=state_format,
            seed=seed,
        ),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    weight_decay=1e-4,
    *,
    mask=None,
    mu_dtype=None,
    nu_dtype=None,
    nesterov: bool = False,
    state_format: str = "nearest",
    seed: int = 0,
):
    """AdamW: Adam with decoupled weight decay.

    ``p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)``. torch.optim.AdamW
    takes the same step; its default ``weight_decay`` is 1e-2, ours (and
    optax's) 1e-4. ``mask`` as in :func:`adam_tx.add_decayed_weights`
    (e.g. ``adam_tx.decay_mask``).

    >>> import adam_tx, optax, jax.numpy as jnp
    >>> opt = adam_tx.adamw(0.1, weight_decay=0.5)
    >>> p = jnp.array([1.0]); s = opt.init(p)
    >>> u, s = opt.update(jnp.array([2.0]), s, p)
    >>> round(optax.apply_updates(p, u).tolist()[0], 6)  # 1 - 0.1 * (1 + 0.5)
    0.85

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return chain(
        scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
            nesterov=nesterov,
            state_format=state_format,
            seed=seed,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def nadam(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, **kwargs):
    """NAdam in optax's form: :func:`adam` with ``nesterov=True``.

    torch.optim.NAdam additionally decays the momentum with a schedule
    (``momentum_decay=4e-3``) and so takes different steps.

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
    return adam(learning_rate, b1, b2, eps, eps_root, nesterov=True, **kwargs)


def nadamw(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    weight_decay=1e-4,
    **kwargs,
):
    """NAdamW: :func:`adamw` with Nesterov momentum (optax.nadamw).

    The step is ``lr * (nadam_direction + weight_decay * p)``:
    >>> import adam_tx, jax.numpy as jnp
    >>> tx = adam_tx.nadamw(0.1, weight_decay=0.5)
    >>> p, g = jnp.array([1.0, -1.0]), jnp.array([2.0, -0.5])
    >>> u, _ = tx.update(g, tx.init(p), p)  # 0.1474 + 0.05
    >>> [round(float(x), 4) for x in u]
    [-0.1974, 0.1974]

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return adamw(
        learning_rate, b1, b2, eps, eps_root, weight_decay, nesterov=True, **kwargs
    )


def amsgrad(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    *,
    max_of: str = "nu_hat",
    weight_decay=0.0,
    mask=None,
    mu_dtype=None,
    nu_dtype=None,
    state_format: str = "nearest",
    seed: int = 0,
):
    """AMSGrad; ``max_of="nu"`` for torch's ``Adam(amsgrad=True)`` convention.

    ``weight_decay`` is decoupled (torch's ``AdamW(amsgrad=True)``); see
    :mod:`adam_tx.amsgrad` for the two conventions.

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
    return chain(
        scale_by_amsgrad(
            b1,
            b2,
            eps,
            eps_root,
            max_of=max_of,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
            state_format=state_format,
            seed=seed,
        ),
        *_optional_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def adabelief(
    learning_rate=1e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-16,
    eps_root=1e-16,
    *,
    mu_dtype=None,
    nu_dtype=None,
    nesterov: bool = False,
    state_format: str = "nearest",
    seed: int = 0,
):
    """AdaBelief (optax.adabelief's form).

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
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
            nesterov=nesterov,
            state_format=state_format,
            seed=seed,
        ),
        scale_by_learning_rate(learning_rate),
    )


def adamax(
    learning_rate=2e-3,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    *,
    weight_decay=0.0,
    mu_dtype=None,
    nu_dtype=None,
    state_format: str = "nearest",
    seed: int = 0,
):
    """Adamax. Defaults are torch.optim.Adamax's (lr 2e-3); ``weight_decay`` is
    coupled L2, as torch's.

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
        scale_by_adamax(
            b1,
            b2,
            eps,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
            state_format=state_format,
            seed=seed,
        ),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate=1e-2,
    decay=0.9,
    eps=1e-8,
    initial_scale=0.0,
    *,
    centered: bool = False,
    momentum=0.0,
    nesterov: bool = False,
    eps_in_sqrt: bool = True,
    weight_decay=0.0,
):
    """RMSProp, optionally centered and with momentum.

    optax's defaults (``decay=0.9``, eps inside the root). For
    ``torch.optim.RMSprop(lr, alpha, eps, weight_decay, momentum, centered)``
    use ``rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False, ...)``; torch's
    default alpha is 0.99. ``weight_decay`` is coupled L2, as torch's.

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
    check_nonnegative("momentum", momentum)
    use_momentum = is_schedule(momentum) or momentum > 0
    return chain(
        *_optional_decay(weight_decay),
        scale_by_rms(
            decay, eps, initial_scale, centered=centered, eps_in_sqrt=eps_in_sqrt
        ),
        *((trace(momentum, nesterov=nesterov),) if use_momentum else ()),
        scale_by_learning_rate(learning_rate),
    )


def adagrad(
    learning_rate=1e-2,
    initial_accumulator_value=0.0,
    eps=1e-10,
    *,
    lr_decay: float = 0.0,
    weight_decay=0.0,
):
    """AdaGrad with torch.optim.Adagrad's semantics and defaults.

    ``lr_t = lr / (1 + t * lr_decay)`` (t counted from 0); eps outside the root;
    ``weight_decay`` is coupled L2. optax.adagrad starts the accumulator at 0.1
    and puts eps (1e-7) inside the root.

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
    check_nonnegative("lr_decay", lr_decay)
    lr = learning_rate
    if lr_decay:

        def lr(count, base=learning_rate):
            value = base(count) if is_schedule(base) else base
            return value / (1 + count * lr_decay)

    return chain(
        *_optional_decay(weight_decay),
        scale_by_adagrad(initial_accumulator_value, eps),
        scale_by_learning_rate(lr),
    )


def sgd(
    learning_rate=1e-2,
    momentum=0.0,
    nesterov: bool = False,
    *,
    dampening=0.0,
    weight_decay=0.0,
):
    """SGD with optional (Nesterov) momentum, torch.optim.SGD's semantics.

    ``b_t = momentum b_{t-1} + (1 - dampening) g_t`` (``b_1 = g_1``),
    ``p <- p - lr * b_t`` (or ``g_t + momentum b_t`` with Nesterov);
    ``weight_decay`` is coupled L2.

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
    check_nonnegative("momentum", momentum)
    use_momentum = is_schedule(momentum) or momentum > 0
    if nesterov and not use_momentum:
        raise ValueError("nesterov=True needs momentum > 0")
    return chain(
        *_optional_decay(weight_decay),
        *(
            (trace(momentum, nesterov=nesterov, dampening=dampening),)
            if use_momentum
            else ()
        ),
        scale_by_learning_rate(learning_rate),
    )
