"""Ranks of the trainer as real processes, with the environment the launcher gives them (no launcher).

The worker is tests/helpers/trainer_parts.py run as a script: `python -m train`'s main with the tiny
stand-in model and data. Output goes to a file, never a pipe: a pipe nobody reads fills up and blocks the
worker mid-step.
"""
import itertools
import os
import subprocess
import sys
import time

from helpers import ROOT

WORKER = os.path.join(ROOT, "tests", "helpers", "trainer_parts.py")
_STARTED = itertools.count()


def rank_env(output, rank, size, peers):
    """The variables launcher/plan.py sets for one CPU rank whose files go under `output`."""
    rank_dir = os.path.join(str(output), str(rank))
    env = dict(os.environ, RANK_ID=str(rank), RANK_SIZE=str(size), JOB_ID="1", DEVICE_ID=str(rank),
               LAUNCH_BACKEND="cpu", LAUNCH_OUTPUT_DIR=str(output), LAUNCH_RANK_DIR=rank_dir,
               LAUNCH_CHECKPOINT_DIR=os.path.join(str(output), "checkpoints"),
               LAUNCH_METRICS_FILE=os.path.join(rank_dir, "metrics.jsonl"),
               LAUNCH_ERROR_FILE=os.path.join(rank_dir, "error.json"),
               LAUNCH_INTRA_OP_THREADS="1", LAUNCH_INTER_OP_THREADS="1", LAUNCH_COLLECTIVE_TIMEOUT="120",
               LAUNCH_RESTART="0")
    if peers:
        env["LAUNCH_PEERS"] = peers
    return env


def start_rank(output, rank, size, peers, argv):
    """One rank running the trainer's flags `argv`; its output is in proc.log_path (see finish)."""
    proc_log = os.path.join(str(output), "worker_%d_%d.out" % (rank, next(_STARTED)))
    with open(proc_log, "w") as log:
        proc = subprocess.Popen([sys.executable, WORKER] + list(argv), cwd=ROOT,
                                env=rank_env(output, rank, size, peers), stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = proc_log
    return proc


def finish(proc, timeout=300):
    """Wait for a rank from start_rank (killed at the timeout) and return its output."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(proc.log_path) as handle:
        return handle.read()


def wait_for(predicate, proc, timeout=240):
    """Poll `predicate` until it holds, `proc` ends or the timeout passes; returns its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(0.2)
    return False


def saved_steps(directory):
    """Steps of the checkpoints in a directory (model.ckpt-N.index files)."""
    names = os.listdir(str(directory)) if os.path.isdir(str(directory)) else []
    return [int(name[len("model.ckpt-"):-len(".index")]) for name in names
            if name.startswith("model.ckpt-") and name.endswith(".index")]
