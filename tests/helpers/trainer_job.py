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

from contract.worker_env import WorkerEnv
from helpers import ROOT

WORKER = os.path.join(ROOT, "tests", "helpers", "trainer_parts.py")
_STARTED = itertools.count()


def rank_env(output, rank, size, peers, shm_dir=None):
    """os.environ plus what the launcher sets (contract.worker_env) for one CPU rank whose files go under
    `output`; `peers` is the comma-separated host:port list, or None for a one-rank job; `shm_dir`: the
    gradients go through the shared-memory allreduce there (the launcher's default on one host)."""
    rank_dir = os.path.join(str(output), str(rank))
    settings = WorkerEnv(rank=rank, size=size, job_id="1", device_id=str(rank), backend="cpu",
                         output_dir=str(output), rank_dir=rank_dir,
                         checkpoint_dir=os.path.join(str(output), "checkpoints"),
                         metrics_file=os.path.join(rank_dir, "metrics.jsonl"),
                         error_file=os.path.join(rank_dir, "error.json"),
                         intra_threads=1, inter_threads=1, collective_timeout=120.0, restart=0,
                         peers=peers.split(",") if peers else None, shm_dir=shm_dir)
    return dict(os.environ, **settings.to_env())


def start_rank(output, rank, size, peers, argv, shm_dir=None):
    """One rank running the trainer's flags `argv`; its output is in proc.log_path (see finish)."""
    proc_log = os.path.join(str(output), "worker_%d_%d.out" % (rank, next(_STARTED)))
    with open(proc_log, "w") as log:
        proc = subprocess.Popen([sys.executable, WORKER] + list(argv), cwd=ROOT,
                                env=rank_env(output, rank, size, peers, shm_dir), stdout=log,
                                stderr=subprocess.STDOUT)
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
