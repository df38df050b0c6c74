"""The aliases equal their compositions of reference pieces, and optax's."""

import jax.numpy as jnp
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


def test_sgd_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="momentum"):
        adam_tx.sgd(1e-2, nesterov=True)
