"""Every deliberate difference between adam_tx and optax 0.2.8 that a test sees.

One place, read by ``tests/test_optax_suite.py`` (signatures) and by the optax
suite plugin (expected failures); ``docs/coming-from-optax.md`` explains each
in prose. A reason starting with ``pending:`` is not deliberate: it is a bug
waiting on a change outside the files that list it, and is kept here (as a
strict expected failure) so that the fix shows up.
"""

from __future__ import annotations

# optax names adam_tx defines with another meaning: not substituted when the
# optax suite runs, and not compared by signature.
NOT_SUBSTITUTED = {
    "bias_correction": (
        "optax.bias_correction(moment, decay, count) is a function on a moment "
        "tree; adam_tx.bias_correction(decay) is a transform that divides the "
        "updates by 1 - decay^t"
    ),
}

# {name: {mismatch: reason}}, a mismatch as tests/test_optax_suite.py spells
# it: "default:<param>", "kind:<param>", "position:<param>", "missing:<param>".
SIGNATURES: dict[str, dict[str, str]] = {
    "adagrad": {
        "default:initial_accumulator_value": (
            "torch parity: torch.optim.Adagrad starts the sum at 0 (optax 0.1)"
        ),
        "default:eps": (
            "torch parity: torch.optim.Adagrad's eps is 1e-10, outside the root "
            "(optax: 1e-7 inside)"
        ),
    },
    "scale_by_amsgrad": {
        "missing:bias_correction_mu": (
            "pending: adam_tx/amsgrad.py has no uncorrected AMSGrad (optax "
            "bias_correction_mu); the amsgrad alias accepts only True"
        ),
        "missing:bias_correction_nu": (
            "pending: adam_tx/amsgrad.py has no uncorrected AMSGrad (optax "
            "bias_correction_nu); the amsgrad alias accepts only True"
        ),
    },
}

# Reasons shared by several cases.
_STATE = (
    "deliberate: adam_tx states are its own NamedTuples, each with a step count "
    "and a dict of the hyperparameters in force (ScaleByAdamState(count, mu, nu, "
    "hyperparams, rng)); optax's constant-rate scale keeps EmptyState where "
    "adam_tx keeps ScaleByLearningRateState, and adagrad's state is "
    "ScaleByAdagradState, not ScaleByRssState"
)
_EXPONENTIAL = (
    "deliberate: exponential_decay refuses transition_steps <= 0 and "
    "decay_rate == 0 with a ValueError naming the argument; optax logs and "
    "returns a constant schedule"
)
_INJECTED_NOT_HELD = (
    "deliberate: a plain adam_tx optimizer holds its constant rates in its "
    "state (set_hyperparams, get_hyperparams); under optax.inject_hyperparams "
    "the wrapper holds them and the inner state does not, so that the state "
    "has one structure from init on (a jit cache hit, a lax.scan carry) and "
    "tree_get finds each rate once. optax compares the injected inner state "
    "after a step with the plain one"
)
# The optax alias cases whose injected inner state is adam_tx's (the others
# are optax optimizers adam_tx does not define).
_INJECT_CASES = (*range(0, 4), *range(5, 27), 28, 29, 30, 32)

# {optax suite case id: reason}: strict expected failures of the optax suite.
# A unittest subtest is "<case id> [<subtest message>]".
EXPECTED_FAILURES: dict[str, str] = {
    "schedules/_schedule_test.py::ExponentialTest::test_nonvalid_decay_rate0": (
        _EXPONENTIAL
    ),
    "schedules/_schedule_test.py::ExponentialTest::test_nonvalid_decay_rate1": (
        _EXPONENTIAL
    ),
    "schedules/_schedule_test.py::ExponentialTest::"
    "test_nonvalid_transition_steps0": _EXPONENTIAL,
    "schedules/_schedule_test.py::ExponentialTest::"
    "test_nonvalid_transition_steps1": _EXPONENTIAL,
    "transforms/_clipping_test.py::ClippingTest::test_clip_by_block_rms": (
        "upstream: fails without adam_tx too (optax 0.2.8 on jax 0.10.2: float32 "
        "block rms 0.9999999 != 1.0 to 7 places); clip_by_block_rms is optax's"
    ),
    "transforms/_combining_test.py::ExtraArgsTest::test_extra_args": (
        "deliberate: adam_tx refuses integer parameter leaves at init (a "
        "gradient step cannot move them); the test initialises adam on "
        "{'a': 1, 'b': 2}"
    ),
    "tree_utils/_state_utils_test.py::StateUtilsTest::test_adam": _STATE,
    "tree_utils/_state_utils_test.py::StateUtilsTest::"
    "test_map_non_params_to_none": _STATE,
    "tree_utils/_state_utils_test.py::StateUtilsTest::test_map_params_to_none": (
        _STATE
    ),
    "tree_utils/_state_utils_test.py::StateUtilsTest::test_tree_get_all_with_path "
    "[Test with multiple values in state]": (
        "deliberate: a constant learning rate is held in the state (so that "
        "set_hyperparams changes it without recompiling): tree_get_all_with_path "
        "also finds plain adam(learning_rate=1.0)'s"
    ),
    "tree_utils/_state_utils_test.py::StateUtilsTest::test_tree_set "
    "[Test modifying several values at once]": _STATE,
    "tree_utils/_state_utils_test.py::StateUtilsTest::test_tree_set "
    "[Test setting a specific state]": _STATE,
    "tree_utils/_state_utils_test.py::StateUtilsTest::test_tree_set "
    "[Test setting a state]": _STATE,
}

EXPECTED_FAILURES.update(
    (
        "_src/alias_test.py::AliasTest::test_optimizers_can_be_wrapped_in_"
        f"inject_hyperparams{i} [Equality of new optimizer states.]",
        _INJECTED_NOT_HELD,
    )
    for i in _INJECT_CASES
)
