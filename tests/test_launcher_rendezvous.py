"""CPU/GPU on several hosts without --hosts: the nodes meet at --master-addr/--master-port and agree on every
node's address (launcher/rendezvous.py). Real launcher processes and real sockets, on 127.0.0.1 only."""
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import free_port_run, project_env

from launcher import plan, ports, rendezvous
from launcher.errors import LaunchError

LOCAL = "127.0.0.1"
# free_port_run(4): a master port with the workers' ports after it all free
# The worker: writes the LAUNCH_PEERS it got to peers_<rank>.txt and exits 0.
WORKER = ("import os; open('peers_%s.txt' % os.environ['RANK_ID'], 'w')"
          ".write(os.environ['LAUNCH_PEERS'] + ' ' + os.environ['RANK_SIZE'])")


def start_node(tmp_path, port, node_rank, nnodes=2, timeout=30, extra=()):
    env = project_env()
    argv = [sys.executable, "-m", "launcher", "--nnodes", str(nnodes), "--node-rank", str(node_rank),
            "--master-addr", LOCAL, "--master-port", str(port), "--rendezvous-timeout", str(timeout),
            "--devices", "1", "--backend", "cpu", "--plot", "off"] + list(extra) + \
        ["--", sys.executable, "-c", WORKER]
    return subprocess.Popen(argv, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc, timeout=60):
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def read_peers(tmp_path, rank):
    return (tmp_path / ("peers_%d.txt" % rank)).read_text()


# ---- pure helpers --------------------------------------------------------------------------------------

def message(rank, addr="h", workers=2, **flags):
    base = {"backend": "cpu", "nnodes": 2, "model": None}
    base.update(flags)
    return rendezvous.join_message(rank, addr, workers, base)


def test_messages_round_trip_and_bad_ones_are_refused():
    sent = message(1, "10.0.0.2")
    line = rendezvous.encode(sent)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert rendezvous.decode(line.rstrip(b"\n")) == sent
    with pytest.raises(ValueError):
        rendezvous.decode(b"[1, 2]")
    with pytest.raises(ValueError):
        rendezvous.decode(b"GET / HTTP/1.0")
    for bad in ({"node_rank": "1"}, {"node_rank": True}, {"addr": ""}, {"workers": 0}, {"flags": None}):
        broken = dict(sent, **bad)
        with pytest.raises(ValueError):
            rendezvous.check_join_message(broken)
    rendezvous.check_join_message(sent)


def test_the_agreement_check_names_what_differs():
    joined = {0: message(0, "a")}
    assert rendezvous.agreement_error({}, message(1), 2) is None
    assert rendezvous.agreement_error(joined, message(1, "b"), 2) is None
    assert "joined twice" in rendezvous.agreement_error(joined, message(0, "c"), 2)
    assert "--node-rank or --nnodes" in rendezvous.agreement_error(joined, message(2), 2)
    error = rendezvous.agreement_error(joined, message(1, workers=4), 2)
    assert "runs 4 worker(s) but node 0 runs 2" in error
    error = rendezvous.agreement_error(joined, message(1, model="resnet50"), 2)
    assert "--model resnet50" in error and "no --model" in error
    joined[1] = message(1, "b")
    assert rendezvous.success_answer(joined, 2) == {"ok": True, "addrs": ["a", "b"]}
    answer = rendezvous.timeout_answer({0: message(0)}, 3, 5, "x:1")
    assert "node rank(s) 1,2 never joined" in answer["error"]
    with pytest.raises(rendezvous.RendezvousError) as caught:
        rendezvous.result_of(answer)
    assert caught.value.exit_code == 1
    with pytest.raises(rendezvous.RendezvousError) as caught:
        rendezvous.result_of(rendezvous.failure_answer("bad flags"))
    assert caught.value.exit_code == 2 and str(caught.value) == "bad flags"


def test_flags_and_options_every_node_must_share():
    options = {"nnodes": 2, "node_rank": 1, "master_addr": LOCAL, "model": "m", "passthrough": ["--lr", "1"]}
    flags = rendezvous.flags_of(options, "cpu")
    assert flags["master_port"] == rendezvous.DEFAULT_PORT and flags["passthrough"] == ["--lr", "1"]
    assert rendezvous.needed(options) and not rendezvous.needed(dict(options, hosts="a,b"))
    assert not rendezvous.needed(dict(options, nnodes=1))
    for broken, text in ((dict(options, node_rank=None), "--node-rank"), (dict(options, master_addr=None),
                         "--master-addr"), (dict(options, node_rank=2), "outside 0-1")):
        with pytest.raises(LaunchError, match=text):
            rendezvous.check_options(broken)


def test_ports_after_a_rendezvous_never_collide_even_on_one_host():
    assert ports.peer_list(["a", "b"], 2, 100) == ["a:100", "a:101", "b:100", "b:101"]
    assert ports.peer_list(["a", "a", "b"], 2, 100) == ["a:100", "a:101", "a:102", "a:103", "b:100", "b:101"]
    assert ports.peer_list(["::1"], 1, 100) == ["[::1]:100"]
    assert ports.ranks_on_busiest_host(["a", "a", "b"], 2) == 4
    assert ports.rendezvous_base(29500, 4) == 29501
    with pytest.raises(LaunchError, match="--master-port"):
        ports.rendezvous_base(65534, 4)
    facts = {"environ": {}, "hostname": "h", "addresses": [], "allowed_cpus": [0], "numa_nodes": [],
             "python": "py", "pid": 1, "time": 1.0, "cwd": "/w",
             "rendezvous": {"hosts": [LOCAL, LOCAL], "port": 29500}}
    args = {"backend": "cpu", "devices": "2", "nnodes": 2, "node_rank": 1, "master_addr": LOCAL,
            "command": ["true"], "passthrough": []}
    result = plan.make_plan(args, facts)
    assert result.peers == ["127.0.0.1:29501", "127.0.0.1:29502", "127.0.0.1:29503", "127.0.0.1:29504"]
    assert [s.rank for s in result.ranks] == [2, 3] and result.node_dir == "/w/output/node1"


# ---- real sockets in this process ---------------------------------------------------------------------

def test_the_master_drops_silent_and_foreign_connections_and_lets_a_closed_node_join_again():
    port = free_port_run(1)
    master = rendezvous.Master(LOCAL, port, 2, 20).start()
    silent = socket.create_connection((LOCAL, port))
    foreign = socket.create_connection((LOCAL, port))
    foreign.sendall(b"GET / HTTP/1.0\r\n\r\n")
    gone = socket.create_connection((LOCAL, port))       # node 1 joins, then dies before the end
    gone.sendall(rendezvous.encode(message(1, "old", workers=1)))
    time.sleep(0.3)
    gone.close()
    results = {}

    def node(rank, addr):
        results[rank] = rendezvous.join(LOCAL, port, rank, 1, message(rank)["flags"], 20, node_addr=addr)

    threads = [threading.Thread(target=node, args=(rank, addr)) for rank, addr in ((1, "new"), (0, "zero"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    master.stop()
    silent.close()
    foreign.close()
    assert results == {0: ["zero", "new"], 1: ["zero", "new"]} and master.error is None


# ---- real launcher processes ---------------------------------------------------------------------------

def test_two_launchers_agree_on_the_peers_and_node_1_may_start_first(tmp_path):
    port = free_port_run(4)
    second = start_node(tmp_path, port, 1)
    time.sleep(3)                       # node 1 retries while the master is not there yet
    first = start_node(tmp_path, port, 0)
    (code0, err0), (code1, err1) = finish(first), finish(second)
    assert code0 == 0 and code1 == 0, err0 + err1
    expected = "127.0.0.1:%d,127.0.0.1:%d 2" % (port + 1, port + 2)
    assert read_peers(tmp_path, 0) == read_peers(tmp_path, 1) == expected
    assert (tmp_path / "output" / "node0" / "launch.json").exists()
    assert (tmp_path / "output" / "node1" / "launch.json").exists()


def test_a_node_that_never_arrives_is_named_within_the_timeout(tmp_path):
    started = time.monotonic()
    code, err = finish(start_node(tmp_path, free_port_run(4), 0, timeout=2))
    assert code == 1 and time.monotonic() - started < 30
    last = err.strip().splitlines()[-1]
    assert "node rank(s) 1 never joined" in last and "Traceback" not in err
    code, err = finish(start_node(tmp_path, free_port_run(4), 1, timeout=2))
    assert code == 1 and "could not reach the master" in err.strip().splitlines()[-1]
    assert not (tmp_path / "output").exists()


def test_a_duplicate_node_rank_and_mismatched_flags_are_refused(tmp_path):
    port = free_port_run(4)
    nodes = [start_node(tmp_path, port, 1, nnodes=3), start_node(tmp_path, port, 1, nnodes=3)]
    time.sleep(1)
    nodes.append(start_node(tmp_path, port, 0, nnodes=3))
    for proc in nodes:
        code, err = finish(proc)
        assert code == 2 and "node rank 1 joined twice" in err.strip().splitlines()[-1], err
    port = free_port_run(4)
    nodes = [start_node(tmp_path, port, 1, extra=["--collective-timeout", "60"]),
             start_node(tmp_path, port, 0)]
    for proc in nodes:
        code, err = finish(proc)
        assert code == 2 and "--collective-timeout 60" in err and "same flags" in err, err
    assert not list(tmp_path.glob("peers_*"))


def test_a_master_port_in_use_is_one_line_naming_the_fix():
    holder = socket.socket()
    holder.bind((LOCAL, 0))
    holder.listen(1)
    try:
        with pytest.raises(rendezvous.RendezvousError) as caught:
            rendezvous.Master(LOCAL, holder.getsockname()[1], 2, 5)
    finally:
        holder.close()
    text = str(caught.value)
    assert caught.value.exit_code == 2 and "in use" in text and "--master-port" in text


def test_two_joins_of_one_rank_at_once_both_hear_why_and_no_reset():
    """Both joins are waiting before the master reads either: the second read is refused, and the first
    (joined, or not read yet) hears the same reason; neither sees its connection reset."""
    port = free_port_run(1)
    master = rendezvous.Master("127.0.0.1", port, 3, timeout=20)
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        for client in clients:
            client.sendall(rendezvous.encode(rendezvous.join_message(1, "127.0.0.1", 1, {})))
        master.start()
        for client in clients:
            answer = rendezvous.decode(client.makefile("rb").readline())
            assert not answer["ok"] and "node rank 1 joined twice" in answer["error"]
    finally:
        for client in clients:
            client.close()
        master.stop()
