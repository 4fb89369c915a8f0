"""`python -m rank_table` through real subprocesses: outputs, goldens, and one-line errors with exit 2."""
import json
import os
import stat
import subprocess
import sys

import pytest
from helpers import RANK_TABLE_FIXTURES as FIXTURES
from helpers import ROOT as REPO

SERVER_A = os.path.join(FIXTURES, "hccn_server_a.conf")
SERVER_B = os.path.join(FIXTURES, "hccn_server_b.conf")
CHIP_910A = ["--chip", "910A"]


def run(args, tmp_path, env=None, bin_dir=None):
    """Run the CLI in ``tmp_path`` with a PATH that holds only the system tools (plus ``bin_dir``)."""
    full_env = {"PATH": os.pathsep.join(([str(bin_dir)] if bin_dir else []) + ["/usr/bin", "/bin"]),
                "PYTHONPATH": REPO, "LC_ALL": "C.UTF-8"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "rank_table"] + list(args), cwd=str(tmp_path), env=full_env,
                          capture_output=True, text=True, timeout=60)


def golden_text(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read() + "\n"


def read(path):
    with open(str(path)) as handle:
        return handle.read()


def executable(path, text):
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def assert_one_line_error(proc, words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rank_table: error: "), proc.stderr
    assert words in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_build_writes_what_hccl_tools_writes(tmp_path):
    proc = run(["--devices", "0-7", "--server-ip", "10.155.111.118", "--hccn-conf", SERVER_A, *CHIP_910A,
                "-o", "hccl_8p.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read(tmp_path / "hccl_8p.json") == golden_text("golden_8p.json")
    assert "rank 7: server 10.155.111.118 device 7 ip 192.168.103.100" in proc.stdout
    assert "chip: 910A (--chip)" in proc.stdout


def test_default_name_is_hccl_tools_name(tmp_path):
    proc = run(["--devices", "4-7", "--server-ip", "10.155.111.118", "--hccn-conf", SERVER_A, *CHIP_910A],
               tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read(tmp_path / "hccl_4p_4567_10.155.111.118.json") == golden_text("golden_4p_4567.json")


def test_two_servers_and_merge_equal_merge_hccl(tmp_path):
    proc = run(["--devices", "0-3", "--chip", "910A", "--server", "10.155.111.118=" + SERVER_A,
                "--server", "10.155.111.119=" + SERVER_B, "-o", "two.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read(tmp_path / "two.json") == golden_text("golden_2servers_4p.json")
    for server_ip, conf in (("10.155.111.118", SERVER_A), ("10.155.111.119", SERVER_B)):
        assert run(["--devices", "0-3", "--chip", "910A", "--server-ip", server_ip, "--hccn-conf", conf,
                    "-o", server_ip + ".json"], tmp_path).returncode == 0
    proc = run(["merge", "10.155.111.118.json", "10.155.111.119.json", "-o", "merged.json", "--chip", "910A"],
               tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read(tmp_path / "merged.json") == golden_text("golden_2servers_4p.json")


@pytest.mark.parametrize("args, words", [
    (["--devices", "0-2"], "use 1, 2, 4 or 8 devices"),
    (["--devices", "3-4"], "span both halves"),
    (["--devices", "0,0"], "listed twice"),
    (["--devices", "5-3"], "reversed"),
    (["--devices", "-1"], "negative"),
    (["--devices", "zero"], "not a device id"),
    (["--devices", "8"], "does not exist"),
    (["--devices", "0-3", "--visible-devices", "6,7"], "logical device 2 is not visible"),
    (["--devices", "0-1", "--server", "a=" + SERVER_A], "--server replaces --server-ip and --hccn-conf"),
    (["--devices", "0-7", "--bogus"], "unrecognized arguments: --bogus"),
    (["--devices", "0-7", "--chip", "310"], "invalid choice"),
    (["--devices", "0", "--device-count", "0"], "--device-count must be at least 1"),
])
def test_build_refusals(tmp_path, args, words):
    proc = run(args + ["--server-ip", "1.2.3.4", "--hccn-conf", SERVER_A, "--chip", "910A", "-o", "t.json"]
               if "--chip" not in args else args + ["--server-ip", "1.2.3.4", "--hccn-conf", SERVER_A],
               tmp_path)
    assert_one_line_error(proc, words)
    assert not (tmp_path / "t.json").exists()


def test_missing_ip_and_missing_file_name_the_file(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.168.100.101\n")
    proc = run(["--devices", "0-1", "--server-ip", "1.2.3.4", "--hccn-conf", str(conf), *CHIP_910A], tmp_path)
    assert_one_line_error(proc, "device 1 has no IP: %s has no address_1 line" % conf)
    proc = run(["--devices", "0", "--server-ip", "1.2.3.4", "--hccn-conf", "nope.conf", *CHIP_910A], tmp_path)
    assert_one_line_error(proc, "cannot read nope.conf")
    proc = run(["--devices", "0", "--server", "nothing", "--chip", "910A"], tmp_path)
    assert_one_line_error(proc, "write SERVER_ID=HCCN_CONF")


def test_existing_different_file_is_kept(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("my notes\n")
    args = ["--devices", "0", "--server-ip", "1.2.3.4", "--hccn-conf", SERVER_A, *CHIP_910A, "-o", "t.json"]
    assert_one_line_error(run(args, tmp_path), "pass --force")
    assert read(target) == "my notes\n"
    assert run(args + ["--force"], tmp_path).returncode == 0
    assert json.loads(read(target))["server_list"][0]["device"][0]["device_id"] == "0"


def test_visible_devices_map_logical_to_physical(tmp_path):
    proc = run(["--devices", "0-3", "--server-ip", "1.2.3.4", "--hccn-conf", SERVER_A, "--chip", "910A",
                "-o", "t.json"], tmp_path, env={"ASCEND_RT_VISIBLE_DEVICES": "4,5,6,7"})
    assert proc.returncode == 0, proc.stderr
    assert "logical 0-3 = physical 4-7" in proc.stdout
    assert "rank 0: server 1.2.3.4 device 4 (logical 0) ip 192.168.100.100" in proc.stdout
    devices = json.loads(read(tmp_path / "t.json"))["server_list"][0]["device"]
    assert [d["device_id"] for d in devices] == ["4", "5", "6", "7"]


def test_hccn_tool_and_npu_smi_are_used_when_present(tmp_path):
    bin_dir = tmp_path / "bin"
    executable(bin_dir / "hccn_tool", "#!/bin/sh\n[ \"$3 $4\" = '-ip -g' ] || exit 1\n"
                                      "printf 'ipaddr:10.20.0.%s\\nnetmask:255.255.255.0\\n' \"$2\"\n")
    npu_smi_output = os.path.join(FIXTURES, "npu_smi_info_910b3.txt")
    executable(bin_dir / "npu-smi", "#!/bin/sh\ncat '%s'\n" % npu_smi_output)
    proc = run(["--devices", "0-2", "--server-ip", "1.2.3.4", "-o", "t.json"], tmp_path, bin_dir=bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert "chip: 910B (detected" in proc.stdout
    devices = json.loads(read(tmp_path / "t.json"))["server_list"][0]["device"]
    assert [d["device_ip"] for d in devices] == ["10.20.0.0", "10.20.0.1", "10.20.0.2"]
    proc = run(["--devices", "0-2", "--server-ip", "1.2.3.4", "--chip", "910A", "-o", "u.json"], tmp_path,
               bin_dir=bin_dir)
    assert_one_line_error(proc, "use 1, 2, 4 or 8 devices")


def test_validate_reports_and_refuses(tmp_path):
    proc = run(["validate", os.path.join(FIXTURES, "golden_2servers_4p.json"), "--chip", "910A"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "OK, template 1 (version 1.0), 2 server(s), 8 ranks" in proc.stdout
    assert "server 10.155.111.119: devices 0,1,2,3 -> ranks 4,5,6,7" in proc.stdout
    proc = run(["validate", "--chip", "910A"], tmp_path,
               env={"RANK_TABLE_FILE": os.path.join(FIXTURES, "template2_8p.json")})
    assert proc.returncode == 0 and "template 2 (group_list)" in proc.stdout
    data = json.loads(golden_text("golden_8p.json"))
    data["server_list"][0]["device"][3]["rank_id"] = 3
    (tmp_path / "int.json").write_text(json.dumps(data))
    assert_one_line_error(run(["validate", "int.json", "--chip", "910A"], tmp_path),
                          "rank_id is 3 (int); HCCL expects every value as a string")
    data["version"] = "2.0"
    (tmp_path / "v20.json").write_text(json.dumps(data))
    assert_one_line_error(run(["validate", "v20.json", "--chip", "910A"], tmp_path), "version \"2.0\"")


def test_validate_waits_for_initializing_then_gives_up(tmp_path):
    (tmp_path / "hccl.json").write_text(json.dumps({"status": "initializing", "version": "1.0"}))
    proc = run(["validate", "hccl.json", "--wait", "0.6", "--poll", "0.2", "--chip", "910A"], tmp_path)
    assert_one_line_error(proc, "status is \"initializing\"")
    assert "gave up after waiting" in proc.stderr
    assert "waiting for hccl.json" in proc.stdout


def test_rank_table_never_imports_tensorflow(tmp_path):
    code = ("import sys, rank_table, rank_table.cli, rank_table.validate, rank_table.build, "
            "rank_table.devices, rank_table.device_ips; "
            "print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('tensorflow', 'tfcompat', 'tf_keras', 'keras')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "[]"
