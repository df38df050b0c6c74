"""Tests for adam_tx.schedules: NumPy references, optax and torch parity, checks."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import math
import pathlib
import sys

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
try:
    from adam_tx import schedules
except ImportError:  # adam_tx/__init__.py not written yet: namespace package
    schedules = importlib.import_module("adam_tx.schedules")

GOLDEN = ROOT / "tests" / "golden"
_golden = np.load(GOLDEN / "schedules.npz")
CONFIGS = json.loads(str(_golden["configs"]))

# float32 results vs float64 truth, and float64 results vs float64 truth.
RTOL32 = 1e-6
RTOL64 = 1e-12


def _make_schedules_module():
    spec = importlib.util.spec_from_file_location(
        "make_schedules", GOLDEN / "make_schedules.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# float64 NumPy references, written from the formulas.


def ref_linear(t, init, end, steps, begin=0):
    s = np.clip(t - begin, 0, steps)
    return init + (end - init) * s / steps


def ref_cosine(t, init, steps, alpha=0.0, exponent=1.0):
    s = np.minimum(t, steps)
    w = 0.5 * (1 + np.cos(np.pi * s / steps))
    return init * ((1 - alpha) * w**exponent + alpha)


def ref_warmup_cosine(t, init, peak, warmup, decay, end=0.0, exponent=1.0):
    d = decay - warmup
    s = np.clip(t - warmup, 0, d)
    cos = end + (peak - end) * (0.5 * (1 + np.cos(np.pi * s / d))) ** exponent
    if warmup == 0:
        return cos
    return np.where(t < warmup, init + (peak - init) * t / warmup, cos)


def ref_step(t, init, factor, step_size=None, milestones=None):
    if step_size is not None:
        k = t // step_size
    else:
        k = np.sum(t[:, None] >= np.asarray(milestones)[None, :], axis=1)
    return init * factor ** k.astype(np.float64)


def ref_exponential(t, init, rate, steps=1, begin=0, staircase=False, end=None):
    p = np.maximum(t - begin, 0) / steps
    if staircase:
        p = np.floor(p)
    v = init * rate**p
    if end is not None:
        v = np.maximum(v, end) if rate < 1 else np.minimum(v, end)
    return v


def _ref_cycle_one(t, total, values, pct_start, strategy, three_phase):
    """torch OneCycleLR.get_lr, one step, float64."""
    ends = [pct_start * total - 1]
    if three_phase:
        ends.append(2 * pct_start * total - 2)
    ends.append(total - 1)
    t = min(t, total - 1)
    start = 0.0
    for i, (end, (a, b)) in enumerate(zip(ends, values)):
        if t <= end or i == len(ends) - 1:
            pct = (t - start) / (end - start)
            if strategy == "cos":
                return b + (a - b) / 2 * (1 + math.cos(math.pi * pct))
            return (b - a) * pct + a
        start = end
    raise AssertionError("unreachable")


def ref_one_cycle(
    t,
    total,
    max_value,
    pct_start=0.3,
    anneal_strategy="cos",
    div_factor=25.0,
    final_div_factor=1e4,
    three_phase=False,
):
    initial = max_value / div_factor
    low, high, final = initial, max_value, initial / final_div_factor
    values = (
        [(low, high), (high, low), (low, final)]
        if three_phase
        else [
            (low, high),
            (high, final),
        ]
    )
    return np.array(
        [
            _ref_cycle_one(
                int(s), total, values, pct_start, anneal_strategy, three_phase
            )
            for s in t
        ]
    )


def ref_one_cycle_momentum(
    t,
    total,
    base_momentum=0.85,
    max_momentum=0.95,
    pct_start=0.3,
    anneal_strategy="cos",
    three_phase=False,
):
    lo, hi = max_momentum, base_momentum
    values = [(lo, hi), (hi, lo), (lo, lo)] if three_phase else [(lo, hi), (hi, lo)]
    return np.array(
        [
            _ref_cycle_one(
                int(s), total, values, pct_start, anneal_strategy, three_phase
            )
            for s in t
        ]
    )


S = schedules
# (id, schedule factory, reference of a float64 step array, number of steps)
CASES = [
    ("constant", lambda: S.constant(0.3), lambda t: np.full(t.shape, 0.3), 5),
    ("linear", lambda: S.linear(0.1, 0.9, 7), lambda t: ref_linear(t, 0.1, 0.9, 7), 12),
    (
        "linear_begin_down",
        lambda: S.linear(1.0, 0.2, 5, transition_begin=3),
        lambda t: ref_linear(t, 1.0, 0.2, 5, 3),
        12,
    ),
    ("cosine", lambda: S.cosine_decay(0.5, 20), lambda t: ref_cosine(t, 0.5, 20), 25),
    (
        "cosine_alpha_exponent",
        lambda: S.cosine_decay(2.0, 13, alpha=0.1, exponent=2.5),
        lambda t: ref_cosine(t, 2.0, 13, 0.1, 2.5),
        18,
    ),
    (
        "warmup_cosine",
        lambda: S.warmup_cosine_decay(0.0, 1e-3, 5, 30, end_value=1e-5),
        lambda t: ref_warmup_cosine(t, 0.0, 1e-3, 5, 30, 1e-5),
        35,
    ),
    (
        "warmup_cosine_nowarmup",
        lambda: S.warmup_cosine_decay(0.1, 0.4, 0, 10, exponent=0.5),
        lambda t: ref_warmup_cosine(t, 0.1, 0.4, 0, 10, 0.0, 0.5),
        12,
    ),
    (
        "step_size",
        lambda: S.step_decay(0.3, step_size=4, factor=0.5),
        lambda t: ref_step(t, 0.3, 0.5, step_size=4),
        20,
    ),
    (
        "milestones",
        lambda: S.step_decay(1.0, milestones=[2, 5, 11], factor=0.2),
        lambda t: ref_step(t, 1.0, 0.2, milestones=[2, 5, 11]),
        15,
    ),
    (
        "exponential",
        lambda: S.exponential_decay(0.05, 1, 0.97),
        lambda t: ref_exponential(t, 0.05, 0.97),
        40,
    ),
    (
        "exponential_staircase_clip",
        lambda: S.exponential_decay(
            1.0, 3, 0.5, transition_begin=2, staircase=True, end_value=0.1
        ),
        lambda t: ref_exponential(t, 1.0, 0.5, 3, 2, True, 0.1),
        20,
    ),
    (
        "exponential_growth_clip",
        lambda: S.exponential_decay(0.01, 2, 1.5, end_value=0.05),
        lambda t: ref_exponential(t, 0.01, 1.5, 2, 0, False, 0.05),
        15,
    ),
    (
        "one_cycle_cos",
        lambda: S.one_cycle(50, 0.02),
        lambda t: ref_one_cycle(t, 50, 0.02),
        55,  # past total_steps: clamped
    ),
    (
        "one_cycle_linear_3phase",
        lambda: S.one_cycle(
            41, 1.0, pct_start=0.4, anneal_strategy="linear", three_phase=True
        ),
        lambda t: ref_one_cycle(
            t, 41, 1.0, pct_start=0.4, anneal_strategy="linear", three_phase=True
        ),
        45,
    ),
    (
        "one_cycle_momentum_cos_3phase",
        lambda: S.one_cycle_momentum(37, pct_start=0.27, three_phase=True),
        lambda t: ref_one_cycle_momentum(t, 37, pct_start=0.27, three_phase=True),
        40,
    ),
    (
        "one_cycle_momentum_linear",
        lambda: S.one_cycle_momentum(
            23, base_momentum=0.7, max_momentum=0.99, anneal_strategy="linear"
        ),
        lambda t: ref_one_cycle_momentum(t, 23, 0.7, 0.99, anneal_strategy="linear"),
        26,
    ),
    (
        "join",
        lambda: S.join(
            [S.linear(0.0, 1.0, 4), S.constant(1.0), S.cosine_decay(1.0, 6)], [4, 7]
        ),
        lambda t: np.where(
            t < 4,
            ref_linear(t, 0.0, 1.0, 4),
            np.where(t < 7, 1.0, ref_cosine(t - 7, 1.0, 6)),
        ),
        16,
    ),
]
CASE_IDS = [c[0] for c in CASES]


def _all_steps(schedule, n):
    """Every step 0..n-1 through vmap, i.e. with a traced int32 count.

    Eager vmap over a fixed 128 steps instead of jit: XLA then compiles each
    primitive once for the whole file, where compiling every schedule would
    dominate the run time. Each reference case also runs once under jax.jit.
    """
    assert n <= _STEPS
    return np.asarray(jax.vmap(schedule)(jnp.arange(_STEPS, dtype=jnp.int32)))[:n]


_STEPS = 128


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_numpy_reference_float32(case):
    _, make, ref, n = case
    schedule = make()
    want = ref(np.arange(n, dtype=np.float64))
    got = _all_steps(schedule, n)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL32, atol=0)
    # Eager with Python ints, and a jitted scalar with a traced int32 count.
    jitted = jax.jit(schedule)
    for t in sorted({0, 1, n // 2, n - 1}):
        eager = schedule(t)
        assert eager.shape == () and eager.dtype == jnp.float32
        np.testing.assert_allclose(float(eager), want[t], rtol=RTOL32)
        traced = jitted(jnp.int32(t))
        assert traced.dtype == jnp.float32
        np.testing.assert_allclose(float(traced), want[t], rtol=RTOL32)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_numpy_reference_float64(case):
    _, make, ref, n = case
    want = ref(np.arange(n, dtype=np.float64))
    with jax.enable_x64(True):
        got = _all_steps(make(), n)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=RTOL64, atol=1e-15)


# --------------------------------------------------------------------------
# optax parity (optax computes the same formulas with cancellation near the
# end of a cosine, hence the small atol in float32).

OPTAX_CASES = [
    (
        lambda: S.linear(0.2, 0.7, 9, transition_begin=4),
        lambda: optax.linear_schedule(0.2, 0.7, 9, transition_begin=4),
    ),
    (
        lambda: S.cosine_decay(0.3, 25, alpha=0.05, exponent=1.7),
        lambda: optax.cosine_decay_schedule(0.3, 25, alpha=0.05, exponent=1.7),
    ),
    (
        lambda: S.warmup_cosine_decay(1e-4, 3e-3, 10, 60, end_value=3e-5),
        lambda: optax.warmup_cosine_decay_schedule(1e-4, 3e-3, 10, 60, 3e-5),
    ),
    (
        lambda: S.exponential_decay(0.4, 5, 0.8, 3, True, 0.1),
        lambda: optax.exponential_decay(
            0.4, 5, 0.8, transition_begin=3, staircase=True, end_value=0.1
        ),
    ),
    (
        lambda: S.exponential_decay(0.4, 3, 0.9),
        lambda: optax.exponential_decay(0.4, 3, 0.9),
    ),
    (
        lambda: S.join([S.constant(0.1), S.linear(0.1, 0.0, 10)], [5]),
        lambda: optax.join_schedules(
            [optax.constant_schedule(0.1), optax.linear_schedule(0.1, 0.0, 10)], [5]
        ),
    ),
]


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("pair", OPTAX_CASES, ids=range(len(OPTAX_CASES)))
def test_optax_parity(pair, x64):
    ours, theirs = pair
    n = 70
    with jax.enable_x64(x64):
        got = _all_steps(ours(), n)
        want = np.asarray([theirs()(jnp.asarray(t)) for t in range(n)], np.float64)
    scale = np.max(np.abs(want))
    if x64:
        np.testing.assert_allclose(got, want, rtol=RTOL64, atol=1e-15 * scale)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7 * scale)


# --------------------------------------------------------------------------
# Horizons and counts beyond int32: optax returns values there, and so must we.

BIG = 10**10
BIG_CASES = {
    "linear": (
        lambda: S.linear(1.0, 0.0, BIG),
        lambda t: ref_linear(t, 1.0, 0.0, BIG),
    ),
    "linear_late_begin": (
        lambda: S.linear(1.0, 0.0, 1000, transition_begin=2**31 - 1000),
        lambda t: ref_linear(t, 1.0, 0.0, 1000, 2**31 - 1000),
    ),
    "cosine": (
        lambda: S.cosine_decay(1.0, BIG, alpha=0.1),
        lambda t: ref_cosine(t, 1.0, BIG, 0.1),
    ),
    "warmup_cosine": (
        lambda: S.warmup_cosine_decay(0.0, 1.0, 10, BIG),
        lambda t: ref_warmup_cosine(t, 0.0, 1.0, 10, BIG),
    ),
    "exponential": (
        lambda: S.exponential_decay(1.0, BIG, 0.5),
        lambda t: ref_exponential(t, 1.0, 0.5, BIG),
    ),
    "exponential_staircase_begin": (
        lambda: S.exponential_decay(1.0, BIG, 0.5, BIG, True),
        lambda t: ref_exponential(t, 1.0, 0.5, BIG, BIG, True),
    ),
    "step": (
        lambda: S.step_decay(1.0, step_size=BIG, factor=0.5),
        lambda t: ref_step(t, 1.0, 0.5, step_size=BIG),
    ),
    "milestones": (
        lambda: S.step_decay(1.0, milestones=[2**31 - 2, BIG], factor=0.5),
        lambda t: ref_step(t, 1.0, 0.5, milestones=[2**31 - 2, BIG]),
    ),
    "join": (
        lambda: S.join([S.constant(1.0), S.linear(1.0, 0.0, BIG)], [BIG]),
        lambda t: np.where(t < BIG, 1.0, ref_linear(t - BIG, 1.0, 0.0, BIG)),
    ),
}
# Counts near the int32 limit (as int32 arrays, what optimizer states hold) and
# beyond it (Python ints, which a schedule may be called with directly).
INT32_COUNTS = [0, 2**31 - 1001, 2**31 - 3, 2**31 - 2, 2**31 - 1]
PYTHON_COUNTS = [*INT32_COUNTS, BIG - 1, BIG, 5 * BIG // 2, 3 * BIG]


@pytest.mark.parametrize("name", BIG_CASES)
def test_horizons_and_counts_beyond_int32(name):
    make, ref = BIG_CASES[name]
    schedule = make()
    want = ref(np.asarray(PYTHON_COUNTS, np.float64))
    got = [float(schedule(t)) for t in PYTHON_COUNTS]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    jitted = jax.jit(schedule)
    got = [float(jitted(jnp.asarray(t, jnp.int32))) for t in INT32_COUNTS]
    np.testing.assert_allclose(got, want[: len(INT32_COUNTS)], rtol=1e-6, atol=1e-7)


def test_staircase_is_exact_at_large_counts():
    # The period boundary at 3 * (2**29 + 1) - 1 -> 3 * (2**29 + 1): float32
    # cannot tell those counts apart; integer arithmetic can.
    period = 2**29 + 1
    s = jax.jit(S.exponential_decay(1.0, period, 0.5, staircase=True))
    assert float(s(jnp.int32(3 * period - 1))) == 0.25
    assert float(s(jnp.int32(3 * period))) == 0.125


def test_one_cycle_beyond_int32():
    s = S.one_cycle(BIG, 1.0)
    peak = int(0.3 * BIG) - 1
    assert float(s(peak)) == pytest.approx(1.0, rel=1e-6)
    assert float(s(BIG - 1)) == pytest.approx(1.0 / 25 / 1e4, rel=1e-5)
    assert float(jax.jit(s)(jnp.int32(2**31 - 1))) == pytest.approx(
        float(s(2**31 - 1)), rel=1e-6
    )


def test_exponential_decay_takes_optax_argument_order():
    with pytest.raises(TypeError, match="decay_rate"):
        S.exponential_decay(0.1, 0.97)  # adam_tx's old (init, rate) order
    with pytest.raises(TypeError, match=r"exponential_decay\(0\.1, 1, 0\.97\)"):
        S.exponential_decay(0.1, 0.97, 100)  # (init, rate, steps)
    ours = S.exponential_decay(1.0, 10, 0.5, 5, True, 0.2)
    theirs = optax.exponential_decay(1.0, 10, 0.5, 5, True, 0.2)
    for t in (0, 5, 14, 15, 25, 100):
        assert float(ours(t)) == pytest.approx(float(theirs(t)), rel=1e-6)


# --------------------------------------------------------------------------
# torch parity: golden vectors recorded by tests/golden/make_schedules.py.


def _ours(config, key):
    name, kwargs = config["ours"] if key == "lr" else config["ours_momentum"]
    return getattr(schedules, name)(**kwargs)


@functools.cache
def _ours_values(name, key, x64):
    """Our values for a golden configuration, shared by the golden and live tests."""
    config = next(c for c in CONFIGS if c["name"] == name)
    with jax.enable_x64(x64):
        return _all_steps(_ours(config, key), config["steps"])


GOLDEN_KEYS = [
    (c, key) for c in CONFIGS for key in ("lr", "b1") if f"{c['name']}/{key}" in _golden
]
GOLDEN_IDS = [f"{c['name']}-{key}" for c, key in GOLDEN_KEYS]


def test_golden_covers_every_torch_scheduler():
    torch_classes = {c["torch"] for c in CONFIGS}
    assert torch_classes == {
        "OneCycleLR",
        "CosineAnnealingLR",
        "StepLR",
        "MultiStepLR",
        "LinearLR",
        "ExponentialLR",
    }
    cycles = {
        (
            c["kwargs"].get("anneal_strategy", "cos"),
            c["kwargs"].get("three_phase", False),
        )
        for c in CONFIGS
        if c["torch"] == "OneCycleLR"
    }
    assert cycles == {
        ("cos", False),
        ("cos", True),
        ("linear", False),
        ("linear", True),
    }
    assert len(GOLDEN_KEYS) == len(CONFIGS) + len(cycles) + 1  # b1 for each cycle


@pytest.mark.parametrize(("config", "key"), GOLDEN_KEYS, ids=GOLDEN_IDS)
def test_torch_golden(config, key):
    want = _golden[f"{config['name']}/{key}"]
    assert want.dtype == np.float64 and len(want) == config["steps"]
    got32 = _ours_values(config["name"], key, False)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=RTOL32, atol=0)
    got64 = _ours_values(config["name"], key, True)
    assert got64.dtype == np.float64
    np.testing.assert_allclose(got64, want, rtol=RTOL64, atol=0)


def test_torch_live():
    pytest.importorskip("torch")
    maker = _make_schedules_module()
    assert [c["name"] for c in maker.CONFIGS] == [c["name"] for c in CONFIGS]
    for config in maker.CONFIGS:
        live = maker.torch_values(config)
        for key, want in live.items():
            # The stored vectors are still what torch produces.
            np.testing.assert_allclose(
                _golden[f"{config['name']}/{key}"], want, rtol=1e-15, atol=0
            )
            got32 = _ours_values(config["name"], key, False)
            np.testing.assert_allclose(got32, want, rtol=RTOL32, atol=0)
            got64 = _ours_values(config["name"], key, True)
            np.testing.assert_allclose(got64, want, rtol=RTOL64, atol=0)


def test_torch_cosine_annealing_rises_after_t_max_ours_stays_flat():
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = _all_steps(S.cosine_decay(1.0, 4, alpha=0.1), 9)
    np.testing.assert_allclose(ours[:5], lrs[:5], rtol=RTOL32)
    assert lrs[8] == pytest.approx(1.0)  # torch: back to the base rate at 2*T_max
    np.testing.assert_allclose(ours[4:], 0.1, rtol=RTOL32)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    total=st.integers(1, 120),
    pct_start=st.floats(0.01, 0.99),
    anneal=st.sampled_from(["cos", "linear"]),
    three_phase=st.booleans(),
)
def test_one_cycle_random_configs(total, pct_start, anneal, three_phase):
    if three_phase:
        pct_start = pct_start / 2
    hypothesis.assume(pct_start * total != 1.0)
    t = np.arange(total + 2, dtype=np.float64)
    kw = dict(pct_start=pct_start, anneal_strategy=anneal, three_phase=three_phase)
    got = _all_steps(S.one_cycle(total, 0.1, **kw), len(t))
    np.testing.assert_allclose(got, ref_one_cycle(t, total, 0.1, **kw), rtol=RTOL32)
    got = _all_steps(S.one_cycle_momentum(total, **kw), len(t))
    want = ref_one_cycle_momentum(t, total, **kw)
    np.testing.assert_allclose(got, want, rtol=RTOL32)


# --------------------------------------------------------------------------
# Construction-time checks: the message names the argument and the value.

BAD = [
    (lambda: S.constant(-1.0), r"value=-1\.0 .*\[0\.0, inf\)"),
    (lambda: S.constant(float("nan")), r"value=nan"),
    (lambda: S.linear(0.1, 0.0, 0), r"transition_steps=0 .*>= 1"),
    (lambda: S.linear(0.1, 0.0, 5, transition_begin=-2), r"transition_begin=-2"),
    (lambda: S.linear(0.1, 0.0, 2.5), r"transition_steps must be an integer, got 2\.5"),
    (lambda: S.cosine_decay(1.0, -3), r"decay_steps=-3"),
    (lambda: S.cosine_decay(1.0, 10, alpha=-0.1), r"alpha=-0\.1"),
    (lambda: S.cosine_decay(1.0, 10, exponent=0.0), r"exponent=0\.0 .*\(0\.0, inf\)"),
    (lambda: S.cosine_decay(-1.0, 10), r"init_value=-1\.0"),
    (lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 10), r"decay_steps=10 .*warmup"),
    (lambda: S.warmup_cosine_decay(0.0, 1.0, -1, 10), r"warmup_steps=-1"),
    (lambda: S.step_decay(1.0), r"exactly one of step_size and milestones"),
    (
        lambda: S.step_decay(1.0, step_size=2, milestones=[3]),
        r"step_size=2, milestones=\[3\]",
    ),
    (lambda: S.step_decay(1.0, step_size=0), r"step_size=0"),
    (lambda: S.step_decay(1.0, milestones=[5, 3]), r"milestones=\[5, 3\] .*increasing"),
    (lambda: S.step_decay(1.0, milestones=[0, 3]), r"milestones\[0\]=0"),
    (lambda: S.step_decay(1.0, step_size=3, factor=0.0), r"factor=0\.0"),
    (lambda: S.exponential_decay(1.0, 1, -0.5), r"decay_rate=-0\.5"),
    (lambda: S.exponential_decay(1.0, 1, 0.0), r"decay_rate=0\.0"),
    (lambda: S.exponential_decay(1.0, 0, 0.5), r"transition_steps=0"),
    (lambda: S.exponential_decay(1.0, 5, 0.5, -1), r"transition_begin=-1"),
    (lambda: S.exponential_decay(1.0, 1, 0.5, end_value=-1.0), r"end_value=-1\.0"),
    (lambda: S.one_cycle(0, 1.0), r"total_steps=0"),
    (lambda: S.one_cycle(10, 0.0), r"max_value=0\.0"),
    (lambda: S.one_cycle(10, 1.0, pct_start=1.0), r"pct_start=1\.0 .*\(0\.0, 1\.0\)"),
    (lambda: S.one_cycle(10, 1.0, pct_start=0.0), r"pct_start=0\.0"),
    (lambda: S.one_cycle(10, 1.0, pct_start=0.1), r"pct_start=0\.1 .*total_steps=10"),
    (
        lambda: S.one_cycle(10, 1.0, pct_start=0.6, three_phase=True),
        r"pct_start=0\.6 .*three_phase",
    ),
    (
        lambda: S.one_cycle(10, 1.0, anneal_strategy="cosine"),
        r"anneal_strategy='cosine' .*\('cos', 'linear'\)",
    ),
    (lambda: S.one_cycle(10, 1.0, div_factor=-25.0), r"div_factor=-25\.0"),
    (lambda: S.one_cycle(10, 1.0, final_div_factor=0), r"final_div_factor=0"),
    (lambda: S.one_cycle_momentum(10, base_momentum=1.0), r"base_momentum=1\.0"),
    (lambda: S.one_cycle_momentum(10, max_momentum=-0.1), r"max_momentum=-0\.1"),
    (lambda: S.one_cycle_momentum(10, anneal_strategy="lin"), r"anneal_strategy='lin'"),
    (lambda: S.join([], []), r"schedules=\[\]"),
    (lambda: S.join([S.constant(1.0)] * 3, [4]), r"boundaries=\[4\] .*length 1.*2"),
    (
        lambda: S.join([S.constant(1.0)] * 3, [4, 4]),
        r"boundaries=\[4, 4\] .*increasing",
    ),
    (lambda: S.join([S.constant(1.0)] * 2, [-1]), r"boundaries\[0\]=-1"),
]


@pytest.mark.parametrize(("build", "match"), BAD, ids=range(len(BAD)))
def test_bad_arguments_raise(build, match):
    # TypeError for a value of the wrong type (2.5 steps), ValueError for one
    # out of range.
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_join_rejects_non_callable():
    with pytest.raises(TypeError, match="schedules\\[1\\]"):
        S.join([S.constant(1.0), 0.5], [3])


def test_one_cycle_clamps_after_total_steps():
    s = S.one_cycle(20, 0.1)
    last = float(s(19))
    assert last == pytest.approx(0.1 / 25 / 1e4, rel=RTOL32)
    assert [float(s(t)) for t in (20, 100, 10**6)] == [last] * 3


def test_one_cycle_momentum_is_inverse_of_lr():
    """Momentum is lowest exactly where the learning rate peaks."""
    lr = _all_steps(S.one_cycle(30, 1.0, pct_start=0.4), 30)
    mom = _all_steps(S.one_cycle_momentum(30, pct_start=0.4), 30)
    assert np.argmax(lr) == np.argmin(mom) == 11
    np.testing.assert_allclose(mom[[0, 11, 29]], [0.95, 0.85, 0.95], rtol=RTOL32)
