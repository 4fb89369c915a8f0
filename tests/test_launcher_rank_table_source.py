"""Rank tables: one the user gives (--rank-table, RANK_TABLE_FILE) that is not valid JSON, or valid and wrong,
or still "initializing", fails at once; only the scheduler's table is waited for. Each error says where the
table came from and how to use another; --hccn-conf wins over a stale RANK_TABLE_FILE and says so; a table
built here never has a loopback server_id."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from helpers import ROOT

from launcher import ascend
from launcher.errors import LaunchError
from rank_table import build, host_ip, validate
from rank_table.errors import RankTableError

ONE_SERVER = [("10.0.0.1", [(0, "192.168.1.1"), (1, "192.168.1.2")])]


def launch(tmp_path, *argv, environ=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("RANK_TABLE_FILE", None)
    env.update(environ or {})
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "launcher", "--backend", "npu"] + list(argv) +
                          ["--dry-run", "--", "true"], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=60)
    return proc.returncode, proc.stderr, time.time() - started


def table(**changes):
    return dict(build.build_table(ONE_SERVER), **changes)


TRAILING_COMMA = json.dumps(table())[:-1] + ",}"


@pytest.mark.parametrize("text, words", [
    (TRAILING_COMMA, "is not valid JSON"),
    (json.dumps(table(status="initializing")), 'status is "initializing"'),
    (json.dumps(table(server_count="3")), "server_count"),
])
def test_a_table_the_user_gives_fails_at_once_naming_its_source(tmp_path, text, words):
    (tmp_path / "t.json").write_text(text)
    code, err, seconds = launch(tmp_path, "--rank-table", "t.json")
    assert code == 2 and err.count("launcher: error:") == 1 and words in err, err
    assert "rank table t.json (from --rank-table)" in err and "give another --rank-table FILE" in err
    assert seconds < 30                 # no wait (the default wait for a scheduler's table is 600 s)
    code, err, _ = launch(tmp_path, environ={"RANK_TABLE_FILE": str(tmp_path / "t.json")})
    assert code == 2 and words in err and "(from RANK_TABLE_FILE)" in err and "unset RANK_TABLE_FILE" in err


def test_hccn_conf_wins_over_a_stale_rank_table_file_and_says_so(tmp_path):
    (tmp_path / "stale.json").write_text(TRAILING_COMMA)
    (tmp_path / "hccn.conf").write_text("address_0=192.168.100.101\naddress_1=192.168.100.102\n")
    code, err, _ = launch(tmp_path, "--devices", "0-1", "--hccn-conf", "hccn.conf", "--server-id", "10.0.0.9",
                          "--chip", "910B", environ={"RANK_TABLE_FILE": str(tmp_path / "stale.json")})
    assert code == 0, err
    assert "--hccn-conf given: building the rank table for --devices; RANK_TABLE_FILE=%s is ignored" \
        % (tmp_path / "stale.json") in err
    built = json.load(open(str(tmp_path / "output" / "rank_table.json")))
    ips = [d["device_ip"] for d in built["server_list"][0]["device"]]
    assert ips == ["192.168.100.101", "192.168.100.102"]


def test_only_the_schedulers_table_is_waited_for(tmp_path, monkeypatch):
    path = str(tmp_path / "hccl.json")
    monkeypatch.setattr(validate, "SCHEDULER_TABLE_PATHS", (path,))
    with open(path, "w") as handle:
        json.dump(table(status="initializing"), handle)

    def complete_later():
        time.sleep(1.5)
        with open(path + ".tmp", "w") as handle:
            json.dump(table(), handle)
        os.rename(path + ".tmp", path)
    writer = threading.Thread(target=complete_later)
    writer.start()
    facts = {"environ": {}, "hostname": "h", "addresses": ["10.0.0.1"], "ascend_count": 8,
             "ascend_visible": list(range(8))}
    found, server, source = ascend.resolve({"backend": "npu"}, facts, detect_chip=lambda: "910B")
    writer.join()
    assert source == path and server.server_id == "10.0.0.1"
    assert ascend.table_wait({}, ascend.FROM_SCHEDULER) == ascend.DEFAULT_TABLE_WAIT
    assert ascend.table_wait({}, ascend.FROM_FLAG) == 0 and ascend.table_wait({}, ascend.FROM_ENV) == 0
    with pytest.raises(LaunchError, match="the scheduler's mount path"):
        with open(path, "w") as handle:
            handle.write(TRAILING_COMMA)
        ascend.resolve({"backend": "npu", "table_wait": 0.5}, facts, detect_chip=lambda: "910B")


def test_a_loopback_host_name_never_becomes_the_server_id():
    assert host_ip.choose_server_ip("10.0.0.7", ["10.0.0.7", "127.0.0.1"]) == "10.0.0.7"
    assert host_ip.choose_server_ip("127.0.1.1", ["127.0.0.1", "::1", "10.0.0.7"]) == "10.0.0.7"
    assert host_ip.choose_server_ip("127.0.1.1", ["10.0.0.7", "172.17.0.1"], "172.17.0.1") == "172.17.0.1"
    with pytest.raises(RankTableError, match="resolves to loopback 127.0.1.1 and it has several addresses "
                                             r"\(10.0.0.7, 172.17.0.1\); pass --server-ip"):
        host_ip.choose_server_ip("127.0.1.1", ["10.0.0.7", "172.17.0.1"], None)
    with pytest.raises(RankTableError, match="no other IPv4 address; pass --server-id"):
        host_ip.choose_server_ip("127.0.0.1", ["127.0.0.1"], None, flag="--server-id")


def test_the_rank_table_command_never_writes_a_loopback_server_id(tmp_path, monkeypatch, capsys):
    """A host whose name resolves to 127.0.1.1 (Debian's /etc/hosts) with one real address."""
    import socket

    from rank_table import cli as rank_table_cli
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "127.0.1.1")
    monkeypatch.setattr(validate, "local_addresses", lambda: {"127.0.0.1", "::1", "10.9.8.7"})
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.168.1.1\naddress_1=192.168.1.2\n")
    out = str(tmp_path / "table.json")
    assert rank_table_cli.main(["--devices", "0-1", "--hccn-conf", str(conf), "--no-hccn-tool", "--chip",
                                "910B", "-o", out]) == 0
    assert json.load(open(out))["server_list"][0]["server_id"] == "10.9.8.7"
    monkeypatch.setattr(validate, "local_addresses", lambda: {"127.0.0.1", "10.9.8.7", "172.17.0.1"})
    monkeypatch.setattr(host_ip, "default_route_address", lambda: None)
    assert rank_table_cli.main(["--devices", "0-1", "--hccn-conf", str(conf), "--no-hccn-tool", "--chip",
                                "910B", "-o", str(tmp_path / "other.json")]) == 2
    assert "resolves to loopback 127.0.1.1 and it has several addresses" in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / "other.json"))


def test_every_rank_table_flag_in_its_messages_is_translated_for_the_launcher():
    """Each flag the rank_table package names in a message either exists in the launcher or is rewritten by
    ascend.in_launcher_words (so no launcher error names --device-count, --wait, --server-ip ...)."""
    import re

    from launcher import cli
    here = os.path.join(ROOT, "rank_table")
    launcher_flags = set(name for name in cli.build_parser()._option_string_actions if name.startswith("--"))
    for name in sorted(os.listdir(here)):
        if not name.endswith(".py") or name in ("cli.py", "__main__.py"):
            continue
        text = open(os.path.join(here, name)).read()
        for literal in re.findall(r'"([^"\n]*--[a-z][^"\n]*)"', text):
            shown = ascend.in_launcher_words(literal)
            if "what=" in literal or literal in ("--visible-devices", "--server-ip") or \
                    "pass --force" in literal:
                # a flag name the caller passes in (the launcher passes its own); build.write_table's
                # refusal (the launcher moves an old table aside before writing, never sees it)
                continue
            for flag in re.findall(r"--[a-z][a-z0-9-]*", shown):
                assert flag in launcher_flags, (name, literal, shown)
