"""The shared-memory allreduce (train/shm_allreduce.py) between real processes: every rank gets the same
bytes, the sum in rank order; a dead peer fails the others at once and a silent one after the timeout,
each naming the rank; a full /dev/shm is one line. No TensorFlow here (test_backends_collective trains
through it)."""
import errno
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import ROOT

from train import failures
from train.shm_allreduce import MARK, SharedMemoryAllreduce, TransportError

SHM_WORKER = os.path.join(ROOT, "tests", "workers", "shm_worker.py")
sys.path.insert(0, os.path.dirname(SHM_WORKER))
import shm_worker  # noqa: E402  (its cases and inputs, to compute what every rank must get)


def start(reap, rank, size, directory, timeout, mode, out):
    """One rank of shm_worker.py; conftest's `reap` ends it if the test does not."""
    proc = subprocess.Popen([sys.executable, SHM_WORKER, str(rank), str(size), str(directory), str(timeout),
                             mode, str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    reap.append(proc)
    return proc


def finish(procs, timeout=60):
    return [proc.communicate(timeout=timeout)[0] for proc in procs]


def test_three_ranks_get_the_same_bytes_the_sum_in_rank_order(tmp_path, reap):
    procs = [start(reap, rank, 3, tmp_path / "shm", 30, "sums", tmp_path) for rank in range(3)]
    outputs = finish(procs)
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    got = [np.load(str(tmp_path / ("rank_%d.npz" % rank))) for rank in range(3)]
    for count, dtype in shm_worker.CASES:
        parts = [shm_worker.inputs(rank, count, dtype) for rank in range(3)]
        expected = (parts[0] + parts[1]) + parts[2]
        for key, want in (("sum_%s_%d" % (dtype, count), expected),
                          ("mean_%s_%d" % (dtype, count), expected / np.dtype(dtype).type(3))):
            assert got[0][key].dtype == np.dtype(dtype) and got[0][key].shape == (count,)
            assert got[0][key].tobytes() == want.tobytes(), key
            assert got[1][key].tobytes() == got[0][key].tobytes() == got[2][key].tobytes(), key
    assert got[2]["shape"].shape == (3, 4) and float(got[2]["shape"][0, 0]) == 3.0
    assert sorted(os.listdir(str(tmp_path / "shm"))) == ["region"]  # each rank removed its socket


@pytest.mark.parametrize("mode", ["die", "hang"])
def test_a_lost_peer_fails_the_survivor_naming_it(tmp_path, reap, mode):
    timeout = 2.0
    procs = [start(reap, 0, 2, tmp_path / "shm", timeout, "survive", tmp_path),
             start(reap, 1, 2, tmp_path / "shm", timeout, mode, tmp_path)]
    outputs = finish(procs[:1])                 # the hanging rank 1 is reap's to end
    assert procs[0].returncode == 3, outputs
    elapsed, message = (tmp_path / "survivor.txt").read_text().split("\n", 1)
    assert message.startswith(MARK) and "rank 1" in message
    if mode == "die":
        assert "lost contact with rank 1" in message
        assert float(elapsed) < timeout                  # at once, not at the timeout
    else:
        assert "within the 2s collective timeout (timed out)" in message
        assert timeout - 0.5 < float(elapsed) < timeout + 10
    line = failures.lost_peer_line("UnknownError", "Graph execution error: ... TransportError: " + message, 0,
                                   ["127.0.0.1:5000", "127.0.0.1:5001"], timeout)
    assert line.startswith("lost contact with rank 1 (127.0.0.1:5001) during a collective")
    assert ("no reply within the 2s collective timeout" in line) == (mode == "hang")


def test_ranks_whose_code_went_different_ways_fail_instead_of_summing_unrelated_arrays(tmp_path, reap):
    procs = [start(reap, rank, 2, tmp_path / "shm", 30, "diverge", tmp_path) for rank in range(2)]
    outputs = finish(procs)
    assert [p.returncode for p in procs] == [3, 3], outputs
    assert "rank 1 is at another allreduce (its number 1 of 4004 bytes, this rank's number 1 of 4000 bytes)" \
        in (tmp_path / "diverged_0.txt").read_text()
    assert "rank 0 is at another allreduce" in (tmp_path / "diverged_1.txt").read_text()


def test_a_rank_that_never_comes_is_one_error_within_the_timeout(tmp_path):
    ends = SharedMemoryAllreduce(0, 2, str(tmp_path / "shm"), 0.5)
    started = time.time()
    with pytest.raises(TransportError, match="rank 1 never connected within the 0.5s collective timeout"):
        ends.allreduce(np.ones(4, np.float32))
    assert time.time() - started < 5
    ends.close()
    alone = SharedMemoryAllreduce(1, 2, str(tmp_path / "shm"), 0.5)
    with pytest.raises(TransportError, match="rank 0 was not reachable"):
        alone.allreduce(np.ones(4, np.float32))
    alone.close()


def test_a_full_shared_memory_is_one_line(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    ends = SharedMemoryAllreduce(0, 1, str(tmp_path), 10)
    ends.reserve(8 * 2 ** 20)
    with pytest.raises(TransportError) as caught:
        ends.allreduce(np.ones(4, np.float32))
    text = str(caught.value)
    assert "cannot reserve 8.4 MB in %s (No space left on device)" % tmp_path in text
    assert "--shm-allreduce off" in text and "\n" not in text
