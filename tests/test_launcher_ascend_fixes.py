"""launcher/ascend.py: a table the scheduler has not written yet is waited for (--table-wait); the 910A half
rules apply to PHYSICAL device ids; a host with no detectable chip gets the 910A rules unless --chip says."""
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, project_env

from launcher import ascend
from launcher.errors import LaunchError

HCCN_A = os.path.join(ROOT, "tests", "fixtures", "rank_table", "hccn_server_a.conf")
ONE_SERVER = [("10.0.0.1", [(0, "192.168.1.1"), (1, "192.168.1.2")])]


def launcher(tmp_path, *argv):
    env = project_env()
    return subprocess.Popen([sys.executable, "-m", "launcher"] + list(argv), cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc):
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out.decode(), err.decode()


def table_text():
    from rank_table import build
    return json.dumps(build.build_table(ONE_SERVER))


def test_a_table_that_appears_later_is_waited_for_with_table_wait(tmp_path):
    proc = launcher(tmp_path, "--backend", "npu", "--rank-table", "later.json", "--table-wait", "60",
                    "--dry-run", "--", "true")
    first = proc.stderr.readline().decode()
    assert "waiting for later.json" in first and "does not exist" in first
    (tmp_path / "later.json").write_text(table_text())
    code, _, err = finish(proc)
    assert code == 0, err
    assert json.loads((tmp_path / "output" / "launch.json").read_text())["world_size"] == 2


def test_a_missing_table_without_a_wait_or_after_it_is_one_line_and_exit_2(tmp_path):
    code, _, err = finish(launcher(tmp_path, "--backend", "npu", "--rank-table", "none.json", "--dry-run",
                                   "--", "true"))
    assert code == 2 and err.count("\n") == 1
    assert "rank table none.json (from --rank-table) does not exist" in err and "--table-wait" in err
    code, _, err = finish(launcher(tmp_path, "--backend", "npu", "--rank-table", "none.json", "--table-wait",
                                   "1", "--dry-run", "--", "true"))
    last = err.splitlines()[-1]
    assert code == 2 and "does not exist" in last and "gave up after waiting" in last
    assert "Traceback" not in err
    assert not (tmp_path / "output").exists()


def facts(visible):
    return {"environ": {"PATH": "/usr/bin"}, "hostname": "h0", "addresses": ["10.0.0.9"],
            "ascend_count": 8, "ascend_visible": visible}


def args(devices, chip=None):
    return {"backend": "npu", "devices": devices, "server_id": "10.0.0.9", "chip": chip,
            "hccn_conf": HCCN_A, "command": ["true"]}


def no_chip():
    return None


def built_devices(devices, visible, chip=None):
    table, _, _ = ascend.resolve(args(devices, chip), facts(visible), detect_chip=no_chip)
    return [int(d["device_id"]) for d in table["server_list"][0]["device"]]


def test_the_910a_half_rules_apply_to_physical_ids():
    # ASCEND_RT_VISIBLE_DEVICES=2-7: logical 2-5 spans the halves, physical 4-7 does not -> legal.
    assert built_devices("2-5", [2, 3, 4, 5, 6, 7]) == [4, 5, 6, 7]
    # ASCEND_RT_VISIBLE_DEVICES=3-7: logical 0-1 is one half, physical 3-4 spans both -> refused,
    # and the message shows logical -> physical.
    with pytest.raises(LaunchError) as caught:
        built_devices("0-1", [3, 4, 5, 6, 7])
    message = str(caught.value)
    assert "span both halves" in message and "logical" in message and "physical 3-4" in message
    assert "\n" not in message
    assert built_devices("0-1", list(range(8))) == [0, 1]


def test_no_detectable_chip_means_910a_rules_unless_chip_is_given():
    with pytest.raises(LaunchError, match="cannot run HCCL on 910A"):
        built_devices("0-2", list(range(8)))
    with pytest.raises(LaunchError, match="span both halves"):
        built_devices("3-4", list(range(8)))
    assert built_devices("0-2", list(range(8)), chip="910B") == [0, 1, 2]
    assert built_devices("3-4", list(range(8)), chip="910B") == [3, 4]
    assert ascend.choose_chip(None, "910B") == "910B" and ascend.choose_chip("910A", "910B") == "910A"


def test_chip_and_hccn_conf_flags_reach_the_built_table(tmp_path):
    code, _, err = finish(launcher(tmp_path, "--backend", "npu", "--devices", "0-2", "--hccn-conf", HCCN_A,
                                   "--server-id", "10.0.0.9", "--dry-run", "--", "true"))
    assert code == 2 and "910A" in err and "--chip 910B" in err and err.count("\n") == 1
    code, out, err = finish(launcher(tmp_path, "--backend", "npu", "--devices", "0-2", "--chip", "910B",
                                     "--hccn-conf", HCCN_A, "--server-id", "10.0.0.9", "--dry-run", "--",
                                     "true"))
    assert code == 0, err
    table = json.loads((tmp_path / "output" / "rank_table.json").read_text())
    assert [d["device_ip"] for d in table["server_list"][0]["device"]] == \
        ["192.168.100.101", "192.168.101.101", "192.168.102.101"]
