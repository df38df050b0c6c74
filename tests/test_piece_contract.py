"""``Piece`` is built by keyword and checks its invariants when built.

The numerical half of the contract (``scales_by`` tells the truth,
``guarded_leaf(ok=True)`` is ``leaf``) is checked for every transform in the
catalog by ``tests/test_conformance.py``; this module checks what can be
checked by looking at a piece.
"""

from __future__ import annotations

import pytest

from adam_tx._engine import fusion

BASE = dict(
    name="p",
    init=lambda params: (),
    prepare=lambda state, params, reduced: None,
    leaf=lambda ctx, x, entries, p, info: (x, (), ()),
    finish=lambda state, ctx, fields, partials: state,
)
reduce = lambda x: (x.sum(),)


def test_a_valid_piece_is_built_and_replaced():
    piece = fusion.Piece(**BASE, reduce_input=reduce, squares_factor=lambda: 1.0)
    other = piece.replace(name="q")
    assert other.name == "q" and other.reduce_input is reduce
    assert piece.name == "p"


def test_positional_construction_is_refused():
    with pytest.raises(TypeError):
        fusion.Piece(*BASE.values())  # keyword-only: no silent field shift


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (dict(name=""), TypeError, "non-empty str"),
        (dict(leaf=None), TypeError, "leaf must be callable"),
        (dict(finish=3), TypeError, "finish must be callable"),
        (dict(scales_by=1.0), TypeError, "scales_by must be callable or None"),
        (dict(fields=["mu"]), TypeError, "tuple of state field names"),
        (dict(fields=("mu", "")), TypeError, "tuple of state field names"),
        (dict(fields=("mu", "mu")), ValueError, "repeat"),
        (dict(needs_params=1), TypeError, "needs_params must be a bool"),
        (dict(reduce_params=True, needs_params=True), ValueError, "reduce_input"),
        (dict(reduce_when=lambda s: True), ValueError, "reduce_when is set"),
        (dict(squares_factor=lambda: 1.0), ValueError, "squares_factor is set"),
        (dict(reduce_in_pass=reduce), ValueError, "reduce_in_pass is set"),
        (dict(reduce_input=reduce, reduce_params=True), ValueError, "needs_params"),
        (
            dict(
                reduce_input=reduce,
                reduce_params=True,
                needs_params=True,
                squares_factor=lambda: 1.0,
            ),
            ValueError,
            "cannot also read the parameters",
        ),
        (
            dict(fields=("mu",), scales_by=lambda ctx: 1.0),
            ValueError,
            "stateless scaling",
        ),
    ],
)
def test_invariants_are_checked_when_built(changes, error, match):
    with pytest.raises(error, match=match):
        fusion.Piece(**{**BASE, **changes})
    valid = fusion.Piece(**BASE)
    with pytest.raises(error, match=match):
        valid.replace(**changes)  # a replaced piece is checked again
