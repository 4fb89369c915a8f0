"""The collective backend between real worker processes (tests/backends_worker.py) on loopback ports."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "backends_worker.py")
TIMEOUT = 8  # seconds; every collective fails after this
pytestmark = pytest.mark.slow


def free_ports(count):
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class Job:
    """Worker processes of one job; all are killed at the end of the test."""

    def __init__(self, out):
        self.out = str(out)
        self.procs = {}

    def start(self, size, steps, ranks=None, timeout=TIMEOUT, extra=(), ports=None):
        peers = ",".join("127.0.0.1:%d" % port for port in ports or free_ports(size))
        for rank in range(size) if ranks is None else ranks:
            env = dict(os.environ, RANK_ID=str(rank), RANK_SIZE=str(size), LAUNCH_BACKEND="cpu",
                       LAUNCH_PEERS=peers, LAUNCH_COLLECTIVE_TIMEOUT=str(timeout),
                       LAUNCH_INTRA_OP_THREADS="1", LAUNCH_INTER_OP_THREADS="1", JOB_ID="1")
            log = open(os.path.join(self.out, "log_%d" % rank), "w")
            self.procs[rank] = subprocess.Popen(
                [sys.executable, WORKER, "--out", self.out, "--steps", str(steps), "--bucket-bytes", "4096"]
                + list(extra),
                env=env, stdout=log, stderr=subprocess.STDOUT)
            log.close()

    def log(self, rank):
        with open(os.path.join(self.out, "log_%d" % rank)) as handle:
            return handle.read()

    def wait_for_step(self, rank, limit=60):
        path = os.path.join(self.out, "progress_%d" % rank)
        deadline = time.time() + limit
        while time.time() < deadline:
            if os.path.exists(path):
                return
            for proc in self.procs.values():
                assert proc.poll() is None, "a worker ended early:\n" + self.log(rank)
            time.sleep(0.2)
        raise AssertionError("rank %d never finished a step:\n%s" % (rank, self.log(rank)))

    def kill_all(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()  # SIGKILL also ends a stopped process
            proc.wait()


@pytest.fixture
def job(tmp_path):
    running = Job(tmp_path)
    yield running
    running.kill_all()


@pytest.mark.parametrize("extra", [(), ("--allreduce-dtype", "float16"), ("--allreduce-dtype", "bfloat16")],
                         ids=["float32", "float16-wire", "bfloat16-wire"])
def test_two_ranks_end_with_bit_identical_weights(job, extra):
    job.start(size=2, steps=30, extra=extra)
    for rank, proc in job.procs.items():
        assert proc.wait(timeout=90) == 0, job.log(rank)
    first = np.load(os.path.join(job.out, "weights_0.npz"))
    second = np.load(os.path.join(job.out, "weights_1.npz"))
    assert sorted(first.files) == ["b1", "b2", "total", "w1", "w2"]
    for name in first.files:
        assert first[name].tobytes() == second[name].tobytes(), name
    assert float(first["total"]) == 3.0  # allreduce_sum of rank+1 over two ranks
    assert not np.allclose(first["w1"], 0)


@pytest.mark.parametrize("how, extra", [(signal.SIGKILL, ()), (signal.SIGSTOP, ()),
                                        (signal.SIGSTOP, ("--session-timeout",))],
                         ids=["killed", "frozen", "frozen-session-timeout-as-on-tf1.15"])
def test_a_lost_peer_makes_the_survivor_fail_within_the_timeout(job, how, extra):
    job.start(size=2, steps=10 ** 7, extra=extra)
    job.wait_for_step(1)
    started = time.time()
    os.kill(job.procs[1].pid, how)
    code = job.procs[0].wait(timeout=TIMEOUT + 30)
    elapsed = time.time() - started
    assert code == 3, job.log(0)
    assert "collective failed" in job.log(0)
    assert elapsed < TIMEOUT + 20  # generous for a loaded machine; without a timeout it would hang forever


def test_an_unreachable_peer_is_one_clear_error(job):
    job.start(size=2, steps=1, ranks=[0], timeout=2)
    assert job.procs[0].wait(timeout=60) == 2
    text = job.log(0)
    assert "unreachable" in text and "rank 1 at 127.0.0.1:" in text and "Traceback" not in text


def test_a_taken_port_is_one_clear_error(job):
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen(1)
    try:
        job.start(size=2, steps=1, ranks=[0], timeout=2, ports=[taken.getsockname()[1]] + free_ports(1))
        assert job.procs[0].wait(timeout=60) == 2
    finally:
        taken.close()
    text = job.log(0)
    assert "cannot start its collective server" in text and "Traceback" not in text
