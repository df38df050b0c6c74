"""scale_by_belief (AdaBelief) against the float64 formulas and optax."""

import optax
import pytest
import reference as R

import adam_tx


@pytest.mark.parametrize(
    "kw", [{}, {"b1": 0.8, "b2": 0.99, "eps": 1e-8, "eps_root": 1e-12}]
)
def test_matches_reference(kw, mode):
    R.check_against_reference(
        lambda: adam_tx.scale_by_belief(**kw), lambda: R.AdaBelief(**kw), mode
    )


def test_eager():
    R.check_against_reference(adam_tx.scale_by_belief, R.AdaBelief, R.EAGER)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_parity(dtype):
    R.check_against_transform(
        lambda: adam_tx.adabelief(1e-2),
        lambda: optax.adabelief(1e-2),
        dtype,
        rtol32=R.OPTAX_ADAM_RTOL,
    )
