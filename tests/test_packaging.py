"""Packaging: the library imports and steps without its extras, the command
names the extra it misses, the metadata says what ships, and the public
functions of the command's modules are typed."""

import inspect
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

from adam_tx import charlm, cli, recipes
from adam_tx._app import bench as _bench
from adam_tx._app import commands as _commands
from adam_tx._app import compare as _compare
from adam_tx._app import outdir as _outdir
from adam_tx._app import runs as _runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = ("flax", "orbax", "tqdm", "matplotlib")


def _without_extras(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the extras cannot be imported."""
    block = f"import sys\nfor name in {EXTRAS!r}:\n    sys.modules[name] = None\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-c", block + code],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_the_library_imports_and_takes_an_adamw_step_without_extras():
    proc = _without_extras(
        "import adam_tx, jax.numpy as jnp\n"
        "tx = adam_tx.chain(adam_tx.clip_by_global_norm(1.0), adam_tx.adamw(0.1))\n"
        "p = jnp.ones(3)\n"
        "u, s = tx.update(jnp.full(3, 2.0), tx.init(p), p)\n"
        "print(adam_tx.apply_updates(p, u).tolist())\n"
        "import adam_tx.checkpoint, adam_tx.cli\n"
        "adam_tx.cli.build_parser()\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert [round(float(x), 4) for x in proc.stdout.strip()[1:-1].split(",")] == [
        0.9,
        0.9,
        0.9,
    ]


@pytest.mark.parametrize("command", ["demo", "lr-find", "compare"])
def test_a_missing_demo_extra_is_a_one_line_error(command, tmp_path):
    code = (
        "from adam_tx.cli import main\n"
        f"sys.exit(main([{command!r}, '--out', {str(tmp_path / 'x')!r}]))\n"
    )
    proc = _without_extras(code)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"adam-tx {command} needs the demo extra: pip install 'adam_tx[demo]'\n"
    )
    assert not (tmp_path / "x").exists()


def test_help_needs_no_extra():
    proc = _without_extras("from adam_tx.cli import main\nmain(['demo', '--help'])")
    assert proc.returncode == 0, proc.stderr
    assert "--lr" in proc.stdout


def _names(requirements):
    return {r.split("[")[0].split(">")[0].split("=")[0].strip() for r in requirements}


def test_core_dependencies_are_jax_optax_numpy_and_the_rest_are_extras():
    project = PYPROJECT["project"]
    assert _names(project["dependencies"]) == {"jax", "optax", "numpy"}
    extras = project["optional-dependencies"]
    assert _names(extras["demo"]) == {"flax", "tqdm", "matplotlib"}
    assert _names(extras["checkpoint"]) == {"orbax-checkpoint"}
    test = _names(extras["test"])
    assert _names(extras["demo"]) | _names(extras["checkpoint"]) <= test
    assert _names(extras["docs"]) <= test
    assert {"pytest", "pytest-xdist", "hypothesis", "chex", "ruff", "equinox"} <= test


def test_license_py_typed_and_project_files():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"  # SPDX string, not the old table
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["adam_tx"]
    assert project["scripts"]["adam-tx"] == "adam_tx.cli:main"
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert (ROOT / "adam_tx" / "py.typed").is_file()
    assert "## 0.1.0" in (ROOT / "CHANGELOG.md").read_text()
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    for topic in ("pytest", "ruff", "mkdocs build", "adam-tx bench", ".ci/run"):
        assert topic in contributing


def test_readme_commands_install_the_extras_they_use():
    readme = (ROOT / "README.md").read_text()
    assert 'python -m pip install -e ".[demo]" && adam-tx demo' in readme
    assert 'python -m pip install -e ".[test]" && python -m pytest -n 2' in readme


def _public_functions(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            for attr, fn in vars(obj).items():
                public = not attr.startswith("_") or attr in ("__init__", "__call__")
                if public and inspect.isfunction(fn):
                    yield f"{name}.{attr}", fn


@pytest.mark.parametrize(
    "module", [cli, _runs, _commands, _compare, _outdir, _bench, charlm, recipes]
)
def test_public_functions_carry_type_hints(module):
    untyped = []
    for name, fn in _public_functions(module):
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
        missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
        if missing or sig.return_annotation is inspect.Signature.empty:
            untyped.append(f"{name}({', '.join(missing)})")
    assert not untyped, f"{module.__name__}: {untyped}"
