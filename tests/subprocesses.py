"""Run test scripts in fresh Python processes, with a device count and a timeout.

JAX fixes its device list when it first initialises, so multi-device tests
(``--xla_force_host_platform_device_count``) and multi-process tests
(``jax.distributed``) run their JAX code in child processes. Every child is
killed when its time runs out: a test fails, it never hangs.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

SCRIPTS = pathlib.Path(__file__).resolve().parent / "scripts"
ROOT = SCRIPTS.parents[1]


def child_env(devices: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def start(script: str, *args: str, devices: int | None = None) -> subprocess.Popen:
    """Start ``tests/scripts/<script>`` with ``args``; output is captured."""
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / script), *map(str, args)],
        env=child_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for all ``procs`` (killing every one on timeout); return outputs.

    Raises ``AssertionError`` with the output of any child that failed.
    """
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            outputs.append(out)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        tails = [(p.communicate()[0] or "")[-3000:] for p in procs]
        raise AssertionError(
            f"child process timed out after {timeout}s; output:\n"
            + "\n---\n".join(tails)
        ) from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, f"{p.args} exited {p.returncode}:\n{out[-6000:]}"
    return outputs


def run(script: str, *args: str, devices: int | None = None, timeout: float = 110):
    """Run one script to completion; return its output."""
    return finish([start(script, *args, devices=devices)], timeout)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
