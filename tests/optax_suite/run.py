"""Run optax 0.2.8's own tests against adam_tx: ``python tests/optax_suite/run.py``.

Extra arguments go to pytest (``-k adam``, ``-x``, ``--optax-suite-report
report.json``). The run is a process of its own: the substitutions of
``plugin.py`` never reach the rest of our suite, which runs this script in a
subprocess (``tests/test_optax_suite.py``). Exit status 0 means every case
passed or failed as ``differences.EXPECTED_FAILURES`` says.
"""

from __future__ import annotations

import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    # optax's sharding tests expect 8 host devices, set before jax starts.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (
            flags + " --xla_force_host_platform_device_count=8"
        ).strip()
    sys.path.insert(0, str(HERE))
    import plugin
    import pytest

    args = [
        "-c",
        str(HERE / "pytest.ini"),
        "--rootdir",
        str(plugin.optax_dir()),
        *plugin.module_paths(),
        *argv,
    ]
    return pytest.main(args, plugins=[plugin.Plugin()])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
