"""docs/variants.md's table "What is checked, per variant" says what the tests
enforce: its passes and copies are tests/catalog.py's (which
tests/test_conformance.py checks in the compiled step), and its bytes per
parameter are what ``adam_tx.state_report`` measures now.
"""

from __future__ import annotations

import pathlib

import catalog
import jax.numpy as jnp
import pytest

import adam_tx
from adam_tx import variants

DOC = pathlib.Path(__file__).parent.parent / "docs" / "variants.md"
HEADING = "### What is checked, per variant"
# The storage options behind each bytes-per-parameter column.
FORMATS = {
    "fp32": {},
    "bf16": dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "int8": dict(state_format="int8"),
    "int4": dict(state_format="int4"),
}
# The table's figures are rounded to two decimals; the scalars of the state
# (count, hyperparameters) shift them by under 0.001 between leaf sizes.
ROUNDING = 0.005


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table() -> dict[str, dict[str, str]]:
    """The table's rows by alias (backticks stripped), each a column -> cell dict."""
    lines = DOC.read_text().splitlines()
    start = lines.index(HEADING) + 1
    while not lines[start].startswith("|"):
        start += 1
    header = _cells(lines[start])
    assert set(_cells(lines[start + 1])) == {"---"}, "no separator under the header"
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        row = dict(zip(header, _cells(line), strict=True))
        rows[row["Alias"].strip("`")] = row
    return rows


ROWS = table()


def test_table_covers_every_variant_alias():
    """Every full-step variant the catalog checks has a row, plus AdamW."""
    full = {e.name for e in catalog.CATALOG if e.passes is not None}
    want = (full & set(variants.__all__)) | {"adamw"}
    assert set(ROWS) == want


@pytest.mark.parametrize("alias", sorted(ROWS))
def test_passes_and_copies_are_the_catalogs(alias):
    entry = catalog.BY_NAME[alias]
    assert int(ROWS[alias]["Passes"]) == entry.passes, alias
    assert int(ROWS[alias]["Copies"]) == entry.copies, alias


@pytest.mark.parametrize("alias", sorted(ROWS))
def test_bytes_per_param_are_measured(alias):
    """One float32 (256, 256) leaf: large enough that int8 / int4 are blockwise."""
    entry = catalog.BY_NAME[alias]
    params = {"w": jnp.zeros((256, 256), jnp.float32)}
    for column, kw in FORMATS.items():
        tx = entry.make(**kw)
        measured = adam_tx.state_report(tx.init(params), params).bytes_per_param
        stated = float(ROWS[alias][column])
        assert abs(measured - stated) <= ROUNDING, (alias, column, measured, stated)
