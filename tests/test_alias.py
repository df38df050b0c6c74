"""The aliases equal their compositions of reference pieces, and optax's."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as R

import adam_tx

LR = lambda t: 1e-2 * 0.97**t  # a schedule, so each alias sees a changing rate

ALIASES = {
    "adam": (lambda: adam_tx.adam(LR), lambda: R.adam(LR)),
    "adamw": (
        lambda: adam_tx.adamw(LR, weight_decay=0.1),
        lambda: R.adamw(LR, weight_decay=0.1),
    ),
    "adamw_masked": (
        lambda: adam_tx.adamw(1e-2, weight_decay=0.1, mask=lambda path, p: p.ndim > 1),
        lambda: R.adamw(1e-2, weight_decay=0.1, mask=[True, False, True, True, False]),
    ),
    "nadam": (lambda: adam_tx.nadam(LR), lambda: R.adam(LR, nesterov=True)),
    "nadamw": (
        lambda: adam_tx.nadamw(LR, weight_decay=0.1),
        lambda: R.adamw(LR, weight_decay=0.1, nesterov=True),
    ),
    "amsgrad_nu": (
        lambda: adam_tx.amsgrad(LR, max_of="nu", weight_decay=0.1),
        lambda: R.Chain(
            R.Amsgrad(max_of="nu"),
            R.AddDecayedWeights(0.1),
            R.ScaleByLearningRate(LR),
        ),
    ),
    "adabelief": (
        lambda: adam_tx.adabelief(LR),
        lambda: R.Chain(R.AdaBelief(), R.ScaleByLearningRate(LR)),
    ),
    "adamax_l2": (
        lambda: adam_tx.adamax(LR, weight_decay=0.1),
        lambda: R.Chain(*R.l2(0.1), R.Adamax(), R.ScaleByLearningRate(LR)),
    ),
    "rmsprop_torch": (
        lambda: adam_tx.rmsprop(
            LR, 0.99, centered=True, momentum=0.9, eps_in_sqrt=False, weight_decay=0.1
        ),
        lambda: R.Chain(
            *R.l2(0.1),
            R.Rms(0.99, centered=True, eps_in_sqrt=False),
            R.Trace(0.9),
            R.ScaleByLearningRate(LR),
        ),
    ),
    "adagrad_lr_decay": (
        lambda: adam_tx.adagrad(1e-2, 0.1, lr_decay=0.05, weight_decay=0.1),
        lambda: R.Chain(
            *R.l2(0.1),
            R.Adagrad(0.1),
            R.ScaleByLearningRate(lambda t: 1e-2 / (1 + t * 0.05)),
        ),
    ),
    "sgd_dampening": (
        lambda: adam_tx.sgd(LR, 0.9, dampening=0.2, weight_decay=0.1),
        lambda: R.Chain(
            *R.l2(0.1), R.Trace(0.9, dampening=0.2), R.ScaleByLearningRate(LR)
        ),
    ),
    "sgd_nesterov": (
        lambda: adam_tx.sgd(LR, 0.9, nesterov=True),
        lambda: R.Chain(R.Trace(0.9, nesterov=True), R.ScaleByLearningRate(LR)),
    ),
    "sgd_plain": (lambda: adam_tx.sgd(LR), lambda: R.ScaleByLearningRate(LR)),
}


@pytest.mark.parametrize("pair", ALIASES.values(), ids=ALIASES.keys())
def test_alias_is_its_composition(pair, mode):
    R.check_against_reference(*pair, mode)


def test_adamw_eager():
    R.check_against_reference(*ALIASES["adamw"], R.EAGER)


OPTAX = {
    "adam": (lambda: adam_tx.adam(LR), lambda: optax.adam(LR)),
    "adamw": (
        lambda: adam_tx.adamw(LR, weight_decay=0.1),
        lambda: optax.adamw(LR, weight_decay=0.1),
    ),
    "nadamw": (
        lambda: adam_tx.nadamw(LR, weight_decay=0.1),
        lambda: optax.nadamw(LR, weight_decay=0.1),
    ),
    "amsgrad": (lambda: adam_tx.amsgrad(LR), lambda: optax.amsgrad(LR)),
    "adabelief": (lambda: adam_tx.adabelief(LR), lambda: optax.adabelief(LR)),
    "adamax": (lambda: adam_tx.adamax(LR), lambda: optax.adamax(LR)),
    # A constant rate only: optax.rmsprop applies momentum after the learning
    # rate (its buffer sums lr_t g_t), adam_tx before it, as torch.optim.RMSprop
    # does; the two agree exactly when lr is constant.
    "rmsprop": (
        lambda: adam_tx.rmsprop(1e-2, momentum=0.9),
        lambda: optax.rmsprop(1e-2, momentum=0.9),
    ),
    "sgd": (lambda: adam_tx.sgd(LR, 0.9), lambda: optax.sgd(LR, 0.9)),
}


@pytest.mark.parametrize("pair", OPTAX.values(), ids=OPTAX.keys())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_parity_with_schedule(pair, dtype):
    R.check_against_transform(*pair, dtype, rtol32=R.OPTAX_ADAM_RTOL)


def test_adamw_state_layout_is_optax_chains():
    import jax

    p = {"w": jnp.ones(3)}
    ours = adam_tx.adamw(1e-3).init(p)
    assert isinstance(ours, tuple) and len(ours) == 3
    assert isinstance(ours[0], adam_tx.ScaleByAdamState)
    assert ours[0]._fields[0] == "count"
    assert jax.tree.structure(ours[0].mu) == jax.tree.structure(p)


# --------------------------------------------------------------------------
# optax's contract: positional order, defaults and state layout.


def test_sgd_state_is_optax_layout():
    p = {"w": jnp.ones(3)}
    plain, ref = adam_tx.sgd(0.1).init(p), optax.sgd(0.1).init(p)
    assert isinstance(plain[0], optax.EmptyState) and isinstance(ref[0], type(ref[0]))
    assert len(plain) == len(ref) == 2
    # momentum=0.0 keeps a (zero-decay) buffer, as optax does.
    zero = adam_tx.sgd(0.1, 0.0).init(p)
    assert isinstance(zero[0], adam_tx.TraceState)
    assert isinstance(optax.sgd(0.1, 0.0).init(p)[0], optax.TraceState)
    R.check_against_transform(
        lambda: adam_tx.sgd(LR, 0.0), lambda: optax.sgd(LR, 0.0), "float32"
    )


def test_sgd_accumulator_dtype():
    tx = adam_tx.sgd(0.1, 0.9, False, jnp.bfloat16)
    p = {"w": jnp.ones(3)}
    state = tx.init(p)
    assert state[0].trace["w"].dtype == jnp.bfloat16
    _, state = tx.update(p, state, p)
    assert state[0].trace["w"].dtype == jnp.bfloat16


@pytest.mark.parametrize("kw", [{"nesterov": True}, {"dampening": 0.5}])
def test_sgd_momentum_options_need_momentum(kw):
    with pytest.raises(ValueError, match="needs momentum"):
        adam_tx.sgd(1e-2, **kw)


def test_adamw_positional_arguments_are_optax_order():
    # optax.adamw(lr, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask)
    args = (1e-2, 0.8, 0.99, 1e-6, 0.0, jnp.bfloat16, 0.3, None)
    p = {"w": jnp.ones(3)}
    state = adam_tx.adamw(*args).init(p)
    assert state[0].mu["w"].dtype == jnp.bfloat16
    assert float(adam_tx.get_hyperparams(state)["weight_decay"]) == pytest.approx(0.3)
    R.check_against_transform(
        lambda: adam_tx.adamw(*args[:5], None, *args[6:]),
        lambda: optax.adamw(*args[:5], None, *args[6:]),
        "float32",
        rtol32=R.OPTAX_ADAM_RTOL,
    )


def test_rmsprop_positional_arguments_are_optax_order():
    # (lr, decay, eps, initial_scale, eps_in_sqrt, centered, momentum, nesterov,
    #  bias_correction): a constant rate, where the two chains agree.
    args = (1e-2, 0.8, 1e-6, 0.1, False, True, 0.5, True, True)
    R.check_against_transform(
        lambda: adam_tx.rmsprop(*args), lambda: optax.rmsprop(*args), "float32"
    )


def test_storage_options_are_declared_once_and_forwarded():
    sig = inspect.signature(adam_tx.adam)
    # mu_dtype keeps optax's positional place; the rest are keyword-only.
    assert list(sig.parameters).index("mu_dtype") == 5
    for name in adam_tx.alias.Storage._fields[1:]:
        assert sig.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    # A variant without optax's mu_dtype gets it as a keyword too.
    lamb = inspect.signature(adam_tx.lamb).parameters
    for name in adam_tx.alias.Storage._fields:
        assert lamb[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert not any(p.kind is p.VAR_KEYWORD for p in lamb.values())
    with pytest.raises(TypeError, match="nu_dtyp"):
        adam_tx.lamb(1e-3, nu_dtyp=jnp.bfloat16)
    tx = adam_tx.nadamw(1e-3, nu_dtype=jnp.bfloat16, state_format="stochastic", seed=3)
    state = tx.init({"w": jnp.ones(3)})
    assert state[0].nu["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(state[0].rng, jax.random.PRNGKey(3))
    with pytest.raises(TypeError, match="storage"):
        adam_tx.adam(1e-3, storage=adam_tx.alias.Storage())


def test_amsgrad_uncorrected_forms_are_refused():
    with pytest.raises(NotImplementedError, match="bias_correction_mu=False"):
        adam_tx.amsgrad(1e-3, bias_correction_mu=False)


def test_extras_default_to_none_so_inject_hyperparams_leaves_them_out():
    # optax.inject_hyperparams turns every numeric default into a hyperparameter.
    for name in ("sgd", "rmsprop", "adagrad", "adamax", "amsgrad"):
        sig = inspect.signature(getattr(adam_tx, name))
        numeric = [
            p.name
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
            and isinstance(p.default, (int, float))
            and not isinstance(p.default, bool)
        ]
        assert numeric == [], (name, numeric)
