"""`-- CMD` workers get torchrun's environment: a script that meets its peers at MASTER_ADDR:MASTER_PORT as
torch.distributed's env:// init does (tests/workers/torchrun_check.py) runs under the launcher. torch is not
installed here (its wheel is hundreds of MB and download.pytorch.org is unreachable from this machine), so
the rendezvous is a real TCP exchange of the same shape instead of init_process_group("gloo")."""
import json
import os
import subprocess
import sys

from helpers import ROOT

from launcher import plan

WORKER = os.path.join(ROOT, "tests", "workers", "torchrun_check.py")


def test_three_ranks_meet_at_master_addr_and_port(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "launcher", "--devices", "3", "--backend", "cpu",
                           "--output-dir", str(out), "--plot", "off", "--", sys.executable, WORKER],
                          cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = [json.loads((out / str(rank) / "torchrun.json").read_text()) for rank in range(3)]
    assert [s["members"] for s in seen] == [[0, 1, 2]] * 3
    assert [s["RANK"] for s in seen] == ["0", "1", "2"] and {s["WORLD_SIZE"] for s in seen} == {"3"}
    assert {s["MASTER_ADDR"] for s in seen} == {"127.0.0.1"} and len({s["MASTER_PORT"] for s in seen}) == 1
    assert [s["GROUP_RANK"] for s in seen] == ["0"] * 3
    assert {s["TORCHELASTIC_RESTART_COUNT"] for s in seen} == {"0"}


def facts(**extra):
    base = {"environ": {}, "hostname": "h", "addresses": ["10.0.0.1"], "allowed_cpus": [0, 1, 2, 3],
            "numa_nodes": None, "ascend_count": 0, "ascend_visible": [], "gpu_visible": [],
            "ports_in_use": [], "python": "python", "pid": 1, "time": 1.0, "cwd": "/work"}
    base.update(extra)
    return base


def test_on_two_hosts_every_rank_agrees_on_node_0_as_master():
    args = {"backend": "cpu", "devices": "2", "command": ["python", "x.py"], "passthrough": [],
            "hosts": "10.0.0.1,10.0.0.2", "node_rank": 1, "output_dir": "out", "bind_cores": "on"}
    ranks = plan.make_plan(args, facts()).ranks
    assert [r.env["RANK"] for r in ranks] == ["2", "3"]
    assert [r.env["LOCAL_RANK"] for r in ranks] == ["0", "1"]
    assert {r.env["MASTER_ADDR"] for r in ranks} == {"10.0.0.1"} and ranks[0].env["GROUP_RANK"] == "1"
    assert ranks[0].env["WORLD_SIZE"] == "4" and ranks[0].env["LOCAL_WORLD_SIZE"] == "2"
    from contract.worker_env import from_env
    read = from_env(ranks[1].env)                     # a worker reads them through the one contract
    assert (read.master_addr, read.torch_rank, read.world_size) == ("10.0.0.1", 3, 4)


def test_the_trainer_gets_no_torchrun_variables():
    args = {"backend": "cpu", "devices": "2", "command": None, "passthrough": ["--model", "m"], "model": "m",
            "output_dir": "out", "bind_cores": "on"}
    assert "MASTER_ADDR" not in plan.make_plan(args, facts()).ranks[0].env
