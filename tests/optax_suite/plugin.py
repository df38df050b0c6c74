"""A pytest plugin that runs optax's own tests against adam_tx.

Before the optax test modules are collected, every optax function that adam_tx
also defines (:func:`substitutions`) is replaced, in every ``optax`` module
that holds it, by adam_tx's: ``optax.adam``, ``optax._src.alias.adam``,
``optax.transforms._clipping.clip_by_global_norm``, ``optax.chain``... so the
optax tests, and the optax code they call (``optax.lamb`` chains
``scale_by_adam``, ``inject_hyperparams`` wraps ``adam``), reach adam_tx.
Nothing is copied from optax: its test modules are imported from the installed
package. The replacements live in the process that runs this plugin (a
separate pytest run, see ``run.py``), and are undone when it ends.

Each case is recorded as reaching adam_tx when it calls a substituted function
or runs the ``init`` or ``update`` of an adam_tx transform. The cases (and
unittest subtests, ``"<case> [<msg>]"``) listed in
``differences.EXPECTED_FAILURES`` are strict expected failures: one that does
not fail fails the run, so a fixed case shows up. Case ids are relative to the
installed optax package (``run.py`` makes it the rootdir). ``--optax-suite-report PATH``
writes the counts (and the cases that reached adam_tx) as JSON.
"""

from __future__ import annotations

import collections
import functools
import importlib
import inspect
import json
import pathlib
import sys
from typing import Any

import pytest

HERE = pathlib.Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import differences  # noqa: E402

# optax's test modules that exercise what adam_tx defines, relative to the
# installed optax package.
MODULES = (
    "_src/alias_test.py",
    "_src/transform_test.py",
    "_src/float64_test.py",
    "_src/sharding_test.py",
    "transforms/_clipping_test.py",
    "transforms/_adding_test.py",
    "transforms/_combining_test.py",
    "transforms/_masking_test.py",
    "schedules/_inject_test.py",
    "schedules/_schedule_test.py",
    "schedules/_join_test.py",
    "tree_utils/_state_utils_test.py",
)

# Cases left out to keep the run short (prefixes of case ids), with why.
LEFT_OUT = {
    "_src/alias_test.py::LBFGSTest": (
        "optax's L-BFGS reaches adam_tx only through chain and "
        "scale_by_learning_rate, which AliasTest covers; it took 40% of the run"
    ),
}


def optax_dir() -> pathlib.Path:
    import optax

    return pathlib.Path(optax.__file__).parent


def module_paths() -> list[str]:
    return [str(optax_dir() / m) for m in MODULES]


def substitutions() -> dict[str, tuple[Any, Any]]:
    """``{name: (optax's function, adam_tx's)}`` for every function both define.

    Classes (the state NamedTuples) are left alone: optax's own transforms
    build optax's states. Names whose meaning differs are left out with the
    reason in ``differences.NOT_SUBSTITUTED``.
    """
    import optax

    import adam_tx
    import adam_tx.schedules

    ours = {n: getattr(adam_tx, n) for n in adam_tx.__all__}
    ours.update(
        (n, f)
        for n, f in vars(adam_tx.schedules).items()
        if inspect.isfunction(f) and f.__module__ == adam_tx.schedules.__name__
    )
    out = {}
    for name, fn in ours.items():
        theirs = getattr(optax, name, getattr(optax.schedules, name, None))
        if theirs is None or theirs is fn or name in differences.NOT_SUBSTITUTED:
            continue
        is_function = isinstance(theirs, functools.partial) or inspect.isfunction(
            theirs
        )
        if is_function and callable(fn) and not inspect.isclass(fn):
            out[name] = (theirs, fn)
    return out


class Substitution:
    """Replaces optax's functions by adam_tx's in every loaded optax module."""

    def __init__(self) -> None:
        self.undo: list[tuple[Any, str, Any]] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.current: str | None = None
        self.reached: dict[str, set[str]] = collections.defaultdict(set)

    def record(self, what: str) -> None:
        self.reached[self.current or "<collection>"].add(what)

    def _counted(self, name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.record(name)
            return fn(*args, **kwargs)

        counted.__signature__ = inspect.signature(fn)
        del counted.__wrapped__
        return counted

    def _instrument_adam_tx(self) -> None:
        """Record a case as reaching adam_tx also when it only runs the
        ``init`` or ``update`` of a transform built earlier (at import)."""
        from adam_tx._engine import fusion

        record = self.record
        placed_init = fusion.placed_init
        run_program = fusion.run_program

        def recording_placed_init(init):
            placed = placed_init(init)

            def recorded(params):
                record("<init>")
                return placed(params)

            return recorded

        def recording_run_program(*args):
            record("<update>")
            return run_program(*args)

        for attr, new, old in (
            ("placed_init", recording_placed_init, placed_init),
            ("run_program", recording_run_program, run_program),
        ):
            self.undo.append((fusion, attr, old))
            setattr(fusion, attr, new)

    def apply(self) -> None:
        # Load every optax module the selected tests import, so that each one
        # holding a substituted function is patched before collection.
        for module in list(sys.modules):
            if module == "optax" or module.startswith("optax."):
                importlib.import_module(module)
        for sub in (
            "optax._src.alias",
            "optax._src.transform",
            "optax._src.combine",
            "optax._src.linear_algebra",
            "optax.transforms",
            "optax.schedules",
            "optax.tree_utils",
            "optax.contrib",
        ):
            importlib.import_module(sub)
        self._instrument_adam_tx()
        subs = substitutions()
        replacement = {id(o): self._counted(n, f) for n, (o, f) in subs.items()}
        for module in [m for n, m in sys.modules.items() if n.split(".")[0] == "optax"]:
            for attr, value in list(vars(module).items()):
                new = replacement.get(id(value))
                if new is not None:
                    self.undo.append((module, attr, value))
                    setattr(module, attr, new)

    def restore(self) -> None:
        for module, attr, value in reversed(self.undo):
            setattr(module, attr, value)
        self.undo.clear()


def case_id(report: pytest.TestReport) -> str:
    """The case a report is about: its node id, and ``[msg]`` for a subtest."""
    context = getattr(report, "context", None)
    msg = getattr(context, "msg", None)
    return report.nodeid if msg is None else f"{report.nodeid} [{msg}]"


class Plugin:
    """Substitutes adam_tx into optax, records outcomes, applies the
    expected failures (cases and subtests, strict: one that does not fail
    fails the run)."""

    def __init__(self) -> None:
        self.sub = Substitution()
        self.outcomes: dict[str, str] = {}
        self.report_path: str | None = None
        self.xfailed: set[str] = set()
        self.seconds: collections.Counter[str] = collections.Counter()

    def pytest_addoption(self, parser: pytest.Parser) -> None:
        parser.addoption("--optax-suite-report", default=None)

    def pytest_configure(self, config: pytest.Config) -> None:
        self.report_path = config.getoption("--optax-suite-report")
        self.sub.apply()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.sub.restore()

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        left_out = [i for i in items if i.nodeid.startswith(tuple(LEFT_OUT))]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [i for i in items if i not in left_out]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        self.sub.current = item.nodeid
        try:
            return (yield)
        finally:
            self.sub.current = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Before the terminal and the session count it: an expected failure is
        # turned into an xfail the way pytest's own xfail marks are.
        case = case_id(report)
        self.seconds[report.nodeid] += report.duration
        reason = differences.EXPECTED_FAILURES.get(case)
        if report.failed and reason is not None:
            report.outcome = "skipped"
            report.wasxfail = reason
            self.xfailed.add(case)
            self.outcomes[case] = "xfailed"
        elif report.failed:
            self.outcomes[case] = "failed"
        elif report.skipped and report.when != "teardown":
            self.outcomes.setdefault(case, "skipped")
        elif report.when == "call":
            self.outcomes.setdefault(case, "passed")

    def not_failing(self) -> list[str]:
        """Expected failures that ran and did not fail (or never ran)."""
        return sorted(set(differences.EXPECTED_FAILURES) - self.xfailed)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # pytest's own count of failures (``session.testsfailed``) may see a
        # subtest's report before this plugin turns it into an xfail: its
        # hook is also ``tryfirst`` and registered later. What failed is
        # ``self.outcomes``, so the exit status follows it.
        failed = [c for c, v in self.outcomes.items() if v == "failed"]
        if (
            session.exitstatus == pytest.ExitCode.TESTS_FAILED
            and not failed
            and session.testsfailed <= len(self.xfailed)
        ):
            session.exitstatus = pytest.ExitCode.OK
        if self.not_failing() and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        reached = {c for c in self.sub.reached if c != "<collection>"}
        cases = collections.Counter(
            v for c, v in self.outcomes.items() if " [" not in c
        )
        subtests = collections.Counter(v for c, v in self.outcomes.items() if " [" in c)
        write = terminalreporter.write_line
        write(
            f"optax suite: {sum(cases.values())} cases, {len(reached)} reached "
            f"adam_tx: {dict(sorted(cases.items()))}; subtests: "
            f"{dict(sorted(subtests.items()))}"
        )
        for case in self.not_failing():
            write(f"EXPECTED FAILURE DID NOT FAIL (fixed? remove it): {case}")
        if self.report_path:
            pathlib.Path(self.report_path).write_text(
                json.dumps(
                    {
                        "outcomes": self.outcomes,
                        "reached": {c: sorted(n) for c, n in self.sub.reached.items()},
                        "expected_but_not_failing": self.not_failing(),
                        "seconds": dict(self.seconds),
                    },
                    indent=1,
                    sort_keys=True,
                )
            )
