"""The root cause names the rank that stopped making progress, not the first rank that waited for it: two
ranks in lockstep (tests/workers/lockstep.py), each frozen in turn with SIGSTOP; caught by the stall timeout
(both ranks fall silent) and by the collective timeout (the waiting rank gives up and exits 1)."""
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT

WORKER = os.path.join(ROOT, "tests", "workers", "lockstep.py")


def steps_written(path):
    try:
        with open(path) as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def run_and_freeze(tmp_path, frozen, *options):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "--devices", "2", "--backend", "cpu",
                             "--output-dir", str(out), "--grace-period", "1", "--plot", "off"] + list(options)
                            + ["--", sys.executable, WORKER], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = [str(out / str(rank) / "metrics.jsonl") for rank in (0, 1)]
        deadline = time.time() + 120
        while min(steps_written(path) for path in metrics) < 3:      # both ranks are stepping together
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.1)
        pid = int((out / str(frozen) / "pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


@pytest.mark.parametrize("frozen", [0, 1])
def test_a_stall_names_the_frozen_rank_not_the_waiting_one(tmp_path, frozen):
    code, err = run_and_freeze(tmp_path, frozen, "--stall-timeout", "2", "--collective-timeout", "0")
    assert code == 1
    assert "first failure: rank %d (device %d): its process is stopped" % (frozen, frozen) in err, err
    assert "rank(s) %d waited for it" % (1 - frozen) in err


@pytest.mark.parametrize("frozen", [0, 1])
def test_a_collective_timeout_names_the_frozen_rank_not_the_one_that_gave_up(tmp_path, frozen):
    code, err = run_and_freeze(tmp_path, frozen, "--stall-timeout", "60", "--collective-timeout", "1")
    assert code == 1
    assert "first failure: rank %d (device %d): its process is stopped" % (frozen, frozen) in err, err
    assert "rank %d failed waiting for it (exit code 1: collective timed out" % (1 - frozen) in err
