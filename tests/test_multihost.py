"""Two hosts on one machine: two network namespaces joined by a veth pair, the launcher running in each.

Why: multi-host CPU/GPU training (--nnodes/--node-rank/--hosts, deterministic ports, LAUNCH_PEERS, collective
timeouts, teardown) can only be trusted when the ranks really talk over a network between separate hosts.
Namespaces give each launcher its own interfaces and loopback, so nothing can pass through 127.0.0.1.
Needs root (creating namespaces); the namespaces are always deleted, even when a test fails.
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
from helpers import ROOT

# Addresses exist only inside the two namespaces this module creates (a point-to-point /30).
ADDRESSES = ("10.213.47.1", "10.213.47.2")
PREFIX = 30
COLLECTIVE_TIMEOUT = 20.0
START_DEADLINE = 180.0      # TF import + graph build of both ranks on a loaded 2-core machine
# The trainer's main (python -m train's) with the tiny stand-in model and data of
# tests/helpers/trainer_parts.py: the same allreduce of gradients crosses the network, and the ranks start in
# seconds instead of building MobileNetV3 (the registry's models through the launcher: test_modelzoo_scripts).
WORKER = os.path.join(ROOT, "tests", "helpers", "trainer_parts.py")
TRAINER = ["--", sys.executable, WORKER, "--model", "tiny", "--data-path", "tiny:2:64:8", "--batch-size", "4",
           "--image-size", "32", "--no-eval", "--no-export", "--log-every", "1"]

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def skip_reason():
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns); run as root"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` command to create network namespaces"
    return None


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True, timeout=30)


def kill_namespace_processes(namespace):
    """Our own leftovers only: the processes inside a namespace this test created."""
    found = subprocess.run(["ip", "netns", "pids", namespace], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=30).stdout.split()
    for pid in found:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def remove_leftovers():
    """Namespaces of earlier runs of this test whose pytest died before its teardown (named lmh<pid>a/b)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    for line in listed.splitlines():
        match = re.match(r"^(lmh(\d+)[ab])\b", line)
        if match and not psutil.pid_exists(int(match.group(2))):
            kill_namespace_processes(match.group(1))
            subprocess.run(["ip", "netns", "del", match.group(1)], capture_output=True, timeout=30)


@pytest.fixture
def two_hosts():
    """Two namespaces `lmh<pid>a/b` with 10.213.47.1/.2 on a veth pair; yields their names."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    remove_leftovers()
    tag = "lmh%d" % os.getpid()
    namespaces = (tag + "a", tag + "b")
    veths = (tag + "x", tag + "y")      # interface names are at most 15 characters
    created = []
    try:
        for namespace in namespaces:
            ip("netns", "add", namespace)
            created.append(namespace)
        ip("link", "add", veths[0], "type", "veth", "peer", "name", veths[1])
        for namespace, veth, address in zip(namespaces, veths, ADDRESSES):
            ip("link", "set", veth, "netns", namespace)
            ip("-n", namespace, "addr", "add", "%s/%d" % (address, PREFIX), "dev", veth)
            ip("-n", namespace, "link", "set", veth, "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        yield namespaces
    finally:
        for namespace in created:
            kill_namespace_processes(namespace)
            # deleting a namespace also removes the veth end inside it
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        # the pair is only still here if moving it into a namespace failed
        subprocess.run(["ip", "link", "del", veths[0]], capture_output=True, timeout=30)


# How the hosts learn each other: a rendezvous at node 0 (--master-addr only), or every address up front.
RENDEZVOUS = ["--master-addr", ADDRESSES[0], "--master-port", "29400"]
HOST_LIST = ["--hosts", ",".join(ADDRESSES)]


def launch(namespace, node_rank, output_dir, worker_args, log_dir, placement):
    """`python -m launcher` for one host inside its namespace; returns (process, stdout path, stderr path).

    ``worker_args`` are the trainer's flags, or ``["--", CMD...]`` for a custom worker (TRAINER is one)."""
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-m", "launcher", "--backend", "cpu",
            "--devices", "1", "--nnodes", "2", "--node-rank", str(node_rank)] + list(placement) + [
            "--job-id", "twohost", "--collective-timeout", "%g" % COLLECTIVE_TIMEOUT,
            "--grace-period", "3", "--progress-interval", "5", "--plot", "off", "--output-dir", output_dir,
            ] + list(worker_args)
    out_path = os.path.join(log_dir, "launcher%d.out" % node_rank)
    err_path = os.path.join(log_dir, "launcher%d.err" % node_rank)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=err)
    return process, out_path, err_path


def read(path):
    with open(path) as handle:
        return handle.read()


def end_record(output_dir):
    ends = [json.loads(line) for path in rank_files(output_dir, "metrics.jsonl")
            for line in read(path).splitlines() if '"end"' in line]
    assert len(ends) == 1, "one worker per host, one end record: %s" % ends
    return ends[0]


def rank_files(output_dir, name):
    return sorted(glob.glob(os.path.join(output_dir, "**", name), recursive=True))


def train_steps(output_dir):
    """The last step this host's worker logged (0 before training)."""
    steps = [0]
    for path in rank_files(output_dir, "metrics.jsonl"):
        for line in read(path).splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "train":
                steps.append(record["step"])
    return max(steps)


def finish(processes, timeout):
    """Wait for every launcher; kill what is left at the deadline. Returns the exit codes (None = hung)."""
    deadline = time.time() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(0.1, deadline - time.time())))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            codes.append(None)
    return codes


def explain(logs):
    return "\n".join("--- %s\n%s" % (path, read(path)[-3000:]) for path in logs)


def test_two_hosts_train_together_and_end_with_identical_weights(two_hosts, tmp_path):
    """--nnodes 2 --node-rank R --master-addr <node 0>: the hosts meet, then train over the collective."""
    outputs = [str(tmp_path / ("host%d" % i)) for i in range(2)]
    started = [launch(ns, i, outputs[i], TRAINER + ["--max-steps", "4"], str(tmp_path), RENDEZVOUS)
               for i, ns in enumerate(two_hosts)]
    codes = finish([p for p, _, _ in started], START_DEADLINE + 60)
    logs = [path for _, out, err in started for path in (out, err)]
    assert codes == [0, 0], explain(logs)
    assert "rendezvous done: nodes at %s, %s" % ADDRESSES in read(started[1][2]), explain(logs)
    ends = [end_record(output) for output in outputs]
    assert sorted(e["rank"] for e in ends) == [0, 1]
    assert all(e["status"] == "ok" and e["step"] == 4 for e in ends)
    # the trainer's checksum of every weight: equal exactly when the two replicas are bit-identical
    assert ends[0]["weights_checksum"] == ends[1]["weights_checksum"], "replicas diverged"
    # both hosts agreed on the peers without talking first, and the peers are the namespaces' addresses
    plans = [json.loads(read(rank_files(output, "launch.json")[0])) for output in outputs]
    peers = [plan["ranks"][0]["env"]["LAUNCH_PEERS"].split(",") for plan in plans]
    assert peers[0] == peers[1]
    assert [peer.rsplit(":", 1)[0] for peer in peers[0]] == list(ADDRESSES)
    assert [(plan["node_rank"], plan["ranks"][0]["rank"], plan["world_size"]) for plan in plans] == \
        [(0, 0, 2), (1, 1, 2)]


def test_killing_one_hosts_worker_fails_both_launchers_with_the_root_cause(two_hosts, tmp_path):
    """--hosts h1,h2 (no rendezvous); SIGKILL to host 2's worker mid-training."""
    outputs = [str(tmp_path / ("host%d" % i)) for i in range(2)]
    started = [launch(ns, i, outputs[i], TRAINER + ["--max-steps", "100000"], str(tmp_path), HOST_LIST)
               for i, ns in enumerate(two_hosts)]
    processes = [p for p, _, _ in started]
    logs = [path for _, out, err in started for path in (out, err)]
    try:
        deadline = time.time() + START_DEADLINE
        while min(train_steps(o) for o in outputs) < 2:
            assert all(p.poll() is None for p in processes), "a launcher ended early\n" + explain(logs)
            assert time.time() < deadline, "training did not start in time\n" + explain(logs)
            time.sleep(0.5)
        workers = psutil.Process(processes[1].pid).children(recursive=True)
        victims = [c for c in workers if c.cmdline()[1:2] == [WORKER]]
        assert len(victims) == 1, [c.cmdline() for c in workers]
        victims[0].send_signal(signal.SIGKILL)
        killed_at = time.time()
        codes = finish(processes, COLLECTIVE_TIMEOUT + 60)
        took = time.time() - killed_at
    finally:
        finish(processes, 0.1)
    assert None not in codes, "a launcher hung after its peer died\n" + explain(logs)
    assert codes[0] != 0 and codes[1] != 0, explain(logs)
    # within the collective timeout, plus the launchers' teardown grace and slack for a loaded machine
    assert took < COLLECTIVE_TIMEOUT + 15, "took %.1f s\n%s" % (took, explain(logs))
    # the host whose worker was killed says so
    killed_side = read(started[1][2])
    assert "rank 1" in killed_side and "SIGKILL" in killed_side, explain(logs)
    # the surviving host's report blames its collective with the lost peer (rank 1 = task 1 at host 2)
    survivor = read(started[0][2])
    assert "job failed" in survivor and "rank 0" in survivor, explain(logs)
    assert any(name in survivor for name in ("task:1", "rank 1", ADDRESSES[1])), explain(logs)
    assert any(why in survivor for why in ("Connection reset", "unreachable", "Unavailable", "timed out")), \
        explain(logs)
