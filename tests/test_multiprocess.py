"""Two processes on localhost train like one: jax.distributed + sharded state."""

from __future__ import annotations

import numpy as np
import pytest
import subprocesses


@pytest.mark.slow
def test_two_processes_match_a_single_process(tmp_path):
    """Each process feeds half of every batch; ZeRO-1 splits the moments.

    tests/scripts/multiprocess_training.py trains a Flax MLP for 20 steps; the
    final parameters of the 2-process run equal the 1-process run's up to the
    reordering of the gradient sum across processes.
    """
    port = subprocesses.free_port()
    procs = [
        subprocesses.start("multiprocess_training.py", "worker", i, 2, port, tmp_path)
        for i in range(2)
    ]
    procs.append(subprocesses.start("multiprocess_training.py", "single", tmp_path))
    subprocesses.finish(procs, timeout=300)
    multi, single = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
    assert sorted(multi) == sorted(single) and len(single) == 4
    for k in single:
        np.testing.assert_allclose(multi[k], single[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert not np.array_equal(single[k], 0), k
