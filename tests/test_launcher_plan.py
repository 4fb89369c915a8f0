"""The launch plan is a pure function: every decision checked without starting a process."""
import json
import os
from types import SimpleNamespace

import pytest

from contract.records import to_json
from launcher import cores, files, plan, ports, progress, report
from launcher.errors import LaunchError
from launcher.metrics import MetricsTail

PY = "/usr/bin/python3"


def facts(**extra):
    base = {"environ": {"HOME": "/root", "PATH": "/usr/bin"}, "hostname": "h0", "addresses": ["10.0.0.1"],
            "allowed_cpus": [0, 1, 2, 3], "numa_nodes": [], "ascend_count": 0, "ascend_visible": [],
            "gpu_visible": [], "ports_in_use": [], "python": PY, "pid": 100, "time": 1.0, "cwd": "/work"}
    base.update(extra)
    return base


def args(**extra):
    base = {"backend": "auto", "devices": "2", "model": "shufflenetv1", "output_dir": "out",
            "bind_cores": "on", "command": None, "passthrough": []}
    base.update(extra)
    return base


def test_cpu_plan_sets_the_contract_environment_on_every_rank():
    trainer = ["--model", "shufflenetv1", "--batch_size", "16", "--lr", "0.1"]
    result = plan.make_plan(args(batch_size=16, passthrough=trainer), facts())
    assert result.backend == "cpu" and result.world_size == 2 and len(result.ranks) == 2
    peers = result.ranks[0].env["LAUNCH_PEERS"].split(",")
    assert len(set(peers)) == 2 and all(p.startswith("127.0.0.1:") for p in peers)
    for index, spec in enumerate(result.ranks):
        env = spec.env
        assert env["RANK_ID"] == str(index) and env["RANK_SIZE"] == "2" and env["JOB_ID"].isdigit()
        assert env["LAUNCH_OUTPUT_DIR"] == "/work/out" and env["LAUNCH_RANK_DIR"] == "/work/out/%d" % index
        assert env["LAUNCH_METRICS_FILE"] == "/work/out/%d/metrics.jsonl" % index
        assert env["LAUNCH_CHECKPOINT_DIR"] == "/work/out/checkpoints"
        assert env["CUDA_VISIBLE_DEVICES"] == "" and env["LAUNCH_PEERS"] == ",".join(peers)
        assert env["LAUNCH_INTRA_OP_THREADS"] == "2" and spec.cores == [[0, 1], [2, 3]][index]
        assert spec.log_path == "/work/out/%d/train_%d.log" % (index, index)
        assert spec.argv == [PY, "-m", "train"] + trainer       # the user's options, as given
    assert result.stall_timeout == plan.TRAINER_STALL_TIMEOUT


def test_cpu_ranks_on_one_host_average_through_shared_memory_unless_told_not_to():
    shm = facts(shm_root="/dev/shm")
    result = plan.make_plan(args(), shm)
    assert result.shm_dir == "/dev/shm/launcher-%s-100" % result.job_id    # the job's own, per launcher
    assert [spec.env["LAUNCH_SHM_DIR"] for spec in result.ranks] == [result.shm_dir] * 2
    assert to_json(result)["shm_dir"] == result.shm_dir                    # in launch.json
    assert plan.make_plan(args(command=["python", "x.py"], model=None), shm).shm_dir == result.shm_dir
    for other in (plan.make_plan(args(shm_allreduce="off"), shm),        # the user's choice
                  plan.make_plan(args(devices="1"), shm),                # nothing to average
                  plan.make_plan(args(), facts()),                       # no /dev/shm
                  plan.make_plan(args(backend="gpu", devices="0,1"), facts(shm_root="/dev/shm",
                                                                           gpu_visible=[0, 1])),
                  plan.make_plan(args(hosts="h0,h1", node_rank=0), shm)):  # ranks on other hosts
        assert other.shm_dir is None and "LAUNCH_SHM_DIR" not in other.ranks[0].env


def test_custom_command_has_no_stall_timeout_and_refuses_stray_options():
    result = plan.make_plan(args(model=None, command=["python", "x.py"]), facts())
    assert result.ranks[0].argv == ["python", "x.py"] and result.stall_timeout == 0
    assert result.network == "x"
    with pytest.raises(LaunchError, match="after the command"):
        plan.make_plan(args(command=["python", "x.py"], passthrough=["--lr"]), facts())


def test_two_jobs_on_one_host_get_different_ports():
    first = plan.make_plan(args(devices="4"), facts())
    busy = [int(p.split(":")[1]) for p in first.peers]
    second = plan.make_plan(args(devices="4", job_id=first.job_id), facts(ports_in_use=busy))
    assert not set(busy) & set(int(p.split(":")[1]) for p in second.peers)


def test_hosts_derive_the_same_peers_and_job_id_on_every_node():
    plans = [plan.make_plan(args(hosts="a,b", node_rank=node), facts()) for node in (0, 1)]
    assert plans[0].peers == plans[1].peers and plans[0].job_id == plans[1].job_id
    assert [s.rank for s in plans[1].ranks] == [2, 3] and plans[1].world_size == 4
    assert plans[1].ranks[0].env["LAUNCH_PEERS"].split(",")[2].startswith("b:")
    assert plans[1].node_dir == "/work/out/node1"
    found = plan.make_plan(args(hosts="w-{node}.svc", nnodes=2), facts(hostname="w-1.svc"))
    assert found.node_rank == 1 and found.peers[0].startswith("w-0.svc:")
    fixed = plan.make_plan(args(hosts="a,b", node_rank=0, master_addr="a", master_port=29500), facts())
    assert fixed.peers == ["a:29500", "a:29501", "b:29500", "b:29501"]


@pytest.mark.parametrize("extra, message", [
    ({"nnodes": 2}, "--hosts"),
    ({"hosts": "a,b"}, "--node-rank"),
    ({"hosts": "a,b", "nnodes": 3, "node_rank": 0}, "agree"),
    ({"hosts": "a,b", "node_rank": 0, "master_addr": "b"}, "master"),
    ({"devices": "1-x"}, "bad --devices"),
    ({"devices": "0,1,1"}, "device 1 is listed twice"),   # one device-spec rule (rank_table.devices)
    ({"backend": "gpu"}, "no CUDA device"),
])
def test_bad_layouts_are_one_line_errors(extra, message):
    with pytest.raises(LaunchError, match=message):
        plan.make_plan(args(**extra), facts())


def test_gpu_plan_gives_each_rank_one_physical_device():
    result = plan.make_plan(args(devices="0-1"), facts(gpu_visible=[2, 3]))
    assert result.backend == "gpu"
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in result.ranks] == ["2", "3"]
    assert [s.env["DEVICE_ID"] for s in result.ranks] == ["2", "3"]
    every = plan.make_plan(args(devices=None), facts(gpu_visible=[0, 1, 2]))
    assert [s.device for s in every.ranks] == ["0", "1", "2"]
    assert len(plan.make_plan(args(devices=None), facts()).ranks) == 1


def two_server_table():
    from rank_table import build
    return build.build_table([("10.0.0.1", [(4, "192.168.1.4"), (5, "192.168.1.5")]),
                              ("10.0.0.2", [(4, "192.168.2.4"), (5, "192.168.2.5")])])


def test_npu_plan_uses_the_tables_global_ranks_on_the_second_server(tmp_path):
    from rank_table import validate
    path = str(tmp_path / "hccl.json")
    with open(path, "w") as handle:
        json.dump(two_server_table(), handle)
    table = validate.load_table(path)
    environ = {"POD_NAME": "p", "CM_CHIEF_IP": "1.2.3.4", "PATH": "/usr/bin"}
    plans = []
    for node in (0, 1):
        server = validate.find_local_server(table, node_rank=node)
        plans.append(plan.make_plan(args(devices=None), facts(environ=environ, ascend_count=8,
                                                              ascend_visible=[4, 5, 6, 7]), table, server))
    second = plans[1]
    assert second.backend == "npu" and second.world_size == 4 and second.nnodes == 2
    assert plans[0].job_id == second.job_id
    envs = [s.env for s in second.ranks]
    assert [e["RANK_ID"] for e in envs] == ["2", "3"] and [e["DEVICE_ID"] for e in envs] == ["4", "5"]
    assert [e["ASCEND_DEVICE_ID"] for e in envs] == ["0", "1"] and envs[0]["DEVICE_INDEX"] == "2"
    assert envs[0]["RANK_TABLE_FILE"] == "/work/out/node1/rank_table.json" and envs[0]["RANK_SIZE"] == "4"
    assert "LAUNCH_PEERS" not in envs[0]
    assert set(second.dropped_env) == {"POD_NAME", "CM_CHIEF_IP"} and len(second.warnings) == 2


def test_npu_without_a_table_builds_one_from_the_device_ips(tmp_path):
    from launcher import ascend
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.168.100.101\naddress_1=192.168.101.101\n")
    the_facts = facts(ascend_count=8, ascend_visible=list(range(8)), environ={"PATH": str(tmp_path)})
    the_args = args(backend="npu", devices="0-1", command=["true"], model=None, server_id="10.0.0.9")
    table, server, source = ascend.resolve(the_args, the_facts, hccn_conf=str(conf))
    assert source is None and table["server_list"][0]["server_id"] == "10.0.0.9"
    result = plan.make_plan(the_args, the_facts, table, server)
    assert [s.env["RANK_ID"] for s in result.ranks] == ["0", "1"] and result.world_size == 2
    assert result.rank_table == "/work/out/rank_table.json"
    with pytest.raises(LaunchError, match="1, 2, 4 or 8|span both halves|hccn"):
        ascend.resolve(args(backend="npu", devices="0-2"), the_facts, hccn_conf=str(conf))


def test_core_split_is_even_and_numa_aware():
    assert cores.split_cores(range(8), 2, [[0, 1, 2, 3], [4, 5, 6, 7]]) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert cores.split_cores(range(8), 4, [[0, 2, 4, 6], [1, 3, 5, 7]]) == [[0, 2], [4, 6], [1, 3], [5, 7]]
    assert cores.split_cores([0, 1, 2], 2) == [[0], [1, 2]]
    assert cores.split_cores([5], 3) == [[5], [5], [5]]
    assert cores.format_cores([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def test_port_blocks_skip_busy_ports_and_honour_master_port():
    base = ports.choose_base_port("job", 4)
    moved = ports.choose_base_port("job", 4, in_use=[base + 2])
    assert moved >= base + 4 or moved < base
    assert ports.choose_base_port("job", 4, in_use=[base + 2], single_host=False) == base
    with pytest.raises(LaunchError, match="--master-port"):
        ports.choose_base_port("job", 4, master_port=80)


def test_rotate_keeps_every_previous_file(tmp_path):
    path = str(tmp_path / "train_0.log")
    for text in ("one", "two", "three"):
        files.rotate(path)
        with open(path, "w") as handle:
            handle.write(text)
    assert open(path).read() == "three" and open(path + ".1").read() == "two"
    assert open(path + ".2").read() == "one"


def metrics_tail(tmp_path, rank, lines):
    path = str(tmp_path / ("m%d.jsonl" % rank))
    with open(path, "w") as handle:
        for record in lines:
            handle.write(json.dumps(dict(record, rank=rank)) + "\n")
        handle.write('{"event": "train", "st')          # a torn last line is not read
    tail = MetricsTail(path)
    tail.poll()
    return tail


def test_summary_and_progress_come_from_every_rank(tmp_path):
    tails = []
    for rank in (0, 1):
        records = [{"event": "train", "step": s, "total_steps": 10, "loss": 2.0 + rank, "accuracy": 0.25,
                    "images_per_sec": [50.0, 100.0, 100.0][s - 1] + rank, "time": float(s), "batch_size": 8}
                   for s in (1, 2, 3)]
        if rank == 1:
            records.append({"event": "eval", "step": 3, "top1": 0.75, "count": 10, "time": 4.0})
        tails.append(metrics_tail(tmp_path, rank, records))
    line = progress.progress_line(tails, 0.0, 5.0)
    assert line.endswith("elapsed")      # rank 1's eval record is no phase record
    tails[1].records.append({"event": "phase", "phase": "eval"})
    assert "| ETA 0:00:07 | eval 1 | 0:00:05 elapsed" in progress.progress_line(tails, 0.0, 5.0)
    assert "step 3/10" in line and "201.0 img/s (2/2 ranks)" in line and "loss 2.5000" in line
    assert "ETA 0:00:07" in line
    spec = [SimpleNamespace(rank=r, device=str(r)) for r in (0, 1)]
    stats = [report.rank_stats(spec[r], tails[r].records, 0.0, 9.0) for r in (0, 1)]
    the_plan = SimpleNamespace(world_size=2, network="net", case="perf", batch_size=None, job_id="1",
                               backend="cpu", nnodes=1, node_rank=0, trainer=None, tensorboard_dir=None)
    summary = report.summarize(the_plan, stats, 12.4, 0)
    fields = summary["modelzoo"]
    assert fields["ActualFPS"] == 201.0 and fields["CaseName"] == "net_bs8_2p_perf"
    assert fields["TrainAccuracy"] == 0.75 and fields["ActualLoss"] == 2.5 and fields["E2ETrainingTime"] == 12
    assert fields["TrainingTime"] == round(16 * 1000.0 / 201.0, 2)
    text = report.modelzoo_text(summary).splitlines()
    assert [line.split(" = ")[0] for line in text] == list(report.MODELZOO_KEYS)
    assert "Final Performance images/sec : 201.0" in report.final_result_text(summary)


def test_run_script_reruns_one_rank_with_the_same_environment(tmp_path):
    result = plan.make_plan(args(environ={"TF_CONFIG": "{}"}), facts(cwd=str(tmp_path),
                                                                      environ={"TF_CONFIG": "{}"}))
    text = files.render_run_script(result, result.ranks[1])
    assert "export RANK_ID=1\n" in text and "unset TF_CONFIG" in text and "taskset -c 2-3" in text
    assert text.rstrip().endswith('"$@"') and os.path.basename(PY) in text
