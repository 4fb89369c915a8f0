"""What several test modules share: the repository's paths, free loopback ports, metrics records and the
environment for a subprocess of the project.

Why a package and not test_*.py files: pytest collects test_* files, and these hold no tests. tests/ is
on sys.path (pytest puts the directory of tests/conftest.py there), so tests say `from helpers import ROOT`.
"""
import json
import os
import socket

from bench.ports import free_ports  # the one picker for the tests and the benchmarks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(ROOT, "tests")
RANK_TABLE_FIXTURES = os.path.join(TESTS, "fixtures", "rank_table")
LOCAL = "127.0.0.1"


def free_port_run(span, host=LOCAL):
    """A port P with P..P+span-1 all free on `host` right now (a master port and the workers' after it)."""
    for _ in range(50):
        port = free_ports(1, host)[0]
        if port + span > 65535:
            continue
        held = []
        try:
            for offset in range(span):
                sock = socket.socket()
                held.append(sock)
                sock.bind((host, port + offset))
            return port
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no run of %d free ports on %s" % (span, host))


def records(path, event=None):
    """The JSON lines of a metrics.jsonl file, only those of one `event` when given."""
    with open(str(path)) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [row for row in rows if event is None or row["event"] == event]


def project_env(**extra):
    """os.environ for a subprocess that imports the project: the repository on PYTHONPATH, and none of the
    variables of a scheduler (a rank table, a pod name) that the machine running the tests may have set."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    for name in ("RANK_TABLE_FILE", "POD_NAME"):
        env.pop(name, None)
    env.update(extra)
    return env
