"""scale_by_adamax against the float64 formulas and optax."""

import optax
import pytest
import reference as R

import adam_tx


@pytest.mark.parametrize("kw", [{}, {"b1": 0.5, "b2": 0.9, "eps": 1e-3}])
def test_matches_reference(kw, mode):
    R.check_against_reference(
        lambda: adam_tx.scale_by_adamax(**kw), lambda: R.Adamax(**kw), mode
    )


def test_eager():
    R.check_against_reference(adam_tx.scale_by_adamax, R.Adamax, R.EAGER)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_parity(dtype):
    # No 1 - b2^t here (the infinity norm is not bias-corrected): float32
    # agrees to a few ulps.
    R.check_against_transform(
        lambda: adam_tx.adamax(1e-2), lambda: optax.adamax(1e-2), dtype
    )
