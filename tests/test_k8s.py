"""`python -m launcher k8s`: the rendered Volcano Job must be valid YAML with the fields Kubernetes, Volcano
and Ascend's device plugin / HCCL-Controller need, and bad flags must give one line and exit 2."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from launcher import k8s

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NPU = "huawei.com/Ascend910"
K8S_CLI = [sys.executable, "-m", "launcher", "k8s"]
MODEL = ["--model", "shufflenetv1"]
BASE = ["--name", "mnv3-2s", "--image", "registry.example.com/ascend/train:1.0", "--namespace", "vcjob",
        "--servers", "2", "--devices-per-server", "8"]


def render(argv, capsys):
    assert k8s.main(argv) == 0
    out = capsys.readouterr().out
    return list(yaml.safe_load_all(out))


def job_parts(docs):
    kinds = {doc["kind"]: doc for doc in docs}
    assert sorted(kinds) == ["ConfigMap", "Job"]
    job = kinds["Job"]
    pod = job["spec"]["tasks"][0]["template"]
    return kinds["ConfigMap"], job, pod, pod["spec"]["containers"][0]


def test_manifest_has_the_fields_kubernetes_and_volcano_require(capsys):
    docs = render(BASE + ["--model", "mobilenetv3_small", "--data-path", "/data/imagenet"], capsys)
    configmap, job, pod, container = job_parts(docs)
    for doc in docs:
        assert isinstance(doc["apiVersion"], str) and isinstance(doc["kind"], str)
        assert DNS1123.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
        assert doc["metadata"]["namespace"] == "vcjob"
        assert doc["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    assert job["apiVersion"] == "batch.volcano.sh/v1alpha1"
    assert configmap["apiVersion"] == "v1"
    assert job["metadata"]["name"] == "mnv3-2s"
    spec = job["spec"]
    assert spec["schedulerName"] == "volcano"
    assert len(spec["tasks"]) == 1
    task = spec["tasks"][0]
    assert DNS1123.match(task["name"])
    assert task["replicas"] == 2 and spec["minAvailable"] == 2
    assert pod["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    assert pod["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert len(pod["spec"]["containers"]) == 1
    assert DNS1123.match(container["name"])
    assert container["image"] == "registry.example.com/ascend/train:1.0"
    assert isinstance(container["command"], list) and all(isinstance(a, str) for a in container["command"])
    resources = container["resources"]
    assert resources["requests"][NPU] == 8 and resources["limits"][NPU] == 8


def test_rank_table_configmap_is_mounted_where_ascend_writes_it(capsys):
    configmap, job, pod, container = job_parts(render(BASE + MODEL, capsys))
    assert configmap["metadata"]["name"] == "rings-config-mnv3-2s"
    assert json.loads(configmap["data"]["hccl.json"])["status"] == "initializing"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert len(volumes) == len(pod["spec"]["volumes"]), "volume names must be unique"
    mounts = container["volumeMounts"]
    assert all(m["name"] in volumes for m in mounts), "every volumeMount needs a volume of that name"
    assert all(DNS1123.match(name) for name in volumes)
    table_mount = [m for m in mounts if m["mountPath"] == "/user/serverid/devindex/config"]
    assert len(table_mount) == 1
    assert volumes[table_mount[0]["name"]]["configMap"]["name"] == configmap["metadata"]["name"]


def test_each_pod_runs_the_launcher_on_the_scheduler_table_with_the_training_flags(capsys):
    argv = BASE + ["--job-id", "job_42", "--python", "/usr/bin/python3.7", "--workdir", "/job/code",
                   "--model", "shufflenetv1", "--batch-size", "64", "--lr=0.1", "--network", "cost $5"]
    configmap, job, pod, container = job_parts(render(argv, capsys))
    command = container["command"]
    assert command[:3] == ["/usr/bin/python3.7", "-m", "launcher"]
    assert container["workingDir"] == "/job/code"

    def value(flag):
        return command[command.index(flag) + 1]

    assert value("--rank-table") == "/user/serverid/devindex/config/hccl.json"
    assert value("--job-id") == "job_42"
    # Kubernetes expands $(VAR) only for variables the container defines: the server id is the node address.
    assert value("--server-id") == "$(XDL_IP)"
    env = {e["name"]: e for e in container["env"]}
    assert env["XDL_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # training flags in order; a user's '$' is escaped so that Kubernetes leaves it alone
    training = ["--model", "shufflenetv1", "--batch-size", "64", "--lr=0.1", "--network", "cost $$5"]
    assert command[-len(training):] == training
    assert command.index("--model") > command.index("--job-id")
    assert value("--backend") == "npu"


def test_the_pod_command_is_one_the_launcher_accepts(capsys):
    """The launcher's own parser reads the rendered command as meant (flags exist, values land right)."""
    from launcher import cli

    argv = BASE + ["--model", "shufflenetv1", "--data-path", "/data/imagenet", "--batch-size", "32"]
    command = job_parts(render(argv, capsys))[3]["command"]
    options = cli.parse(command[3:])
    assert options["backend"] == "npu"
    assert options["rank_table"] == "/user/serverid/devindex/config/hccl.json"
    assert options["server_id"] == "$(XDL_IP)" and options["job_id"] == "mnv3-2s"
    assert options["model"] == "shufflenetv1" and options["data_path"] == "/data/imagenet"
    assert options["batch_size"] == 32
    argv = BASE + ["--", "python3", "my_train.py", "--rank-table", "is the worker's own flag"]
    options = cli.parse(job_parts(render(argv, capsys))[3]["command"][3:])
    assert options["command"] == ["python3", "my_train.py", "--rank-table", "is the worker's own flag"]
    # trainer options beside a worker command would be refused by the launcher in the pod: refused now
    assert k8s.main(BASE + ["--model", "shufflenetv1", "--", "python3", "my_train.py"]) == 2
    assert "with -- CMD, put the worker's options after the command" in capsys.readouterr().err


def test_a_double_dash_before_flags_only_separates_before_a_word_it_starts_the_worker_command(capsys):
    def tail(argv):
        command = job_parts(render(BASE + argv, capsys))[3]["command"]
        return command[command.index("--job-id") + 2:]

    assert tail(["--", "--model", "shufflenetv1", "--data-path", "/d"]) == \
        ["--model", "shufflenetv1", "--data-path", "/d"]
    assert tail(["--", "--tee", "0", "--", "python3", "w.py"]) == \
        ["--tee", "0", "--", "python3", "w.py"]
    assert tail(["--tee", "all", "--", "python3", "w.py"]) == ["--tee", "all", "--", "python3", "w.py"]


def test_find_server_by_pod_address_leaves_the_match_to_the_launcher(capsys):
    from launcher import cli

    command = job_parts(render(BASE + MODEL + ["--find-server", "address"], capsys))[3]["command"]
    options = cli.parse(command[3:])
    assert options["server_id"] is None and options["node_rank"] is None
    assert options["rank_table"] == "/user/serverid/devindex/config/hccl.json"


def test_options_shape_node_selection_and_mounts(capsys):
    argv = BASE + MODEL + ["--servers", "4", "--devices-per-server", "2", "--node-selector",
                           "host-arch=huawei-arm", "--host-path", "/data/imagenet:/data/imagenet",
                           "--nfs", "nfs1:/export/out:/job/output"]
    configmap, job, pod, container = job_parts(render(argv, capsys))
    assert job["spec"]["minAvailable"] == 4 and job["spec"]["tasks"][0]["replicas"] == 4
    assert container["resources"]["limits"][NPU] == 2
    assert pod["spec"]["nodeSelector"] == {"host-arch": "huawei-arm"}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    by_path = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert by_path["/data/imagenet"]["hostPath"]["path"] == "/data/imagenet"
    assert by_path["/job/output"]["nfs"] == {"server": "nfs1", "path": "/export/out"}
    anti = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert anti["labelSelector"]["matchExpressions"][0]["values"] == ["mnv3-2s"]


def test_output_file_is_written_and_named(tmp_path, capsys):
    target = tmp_path / "job.yaml"
    assert k8s.main(BASE + MODEL + ["-o", str(target)]) == 0
    err = capsys.readouterr().err
    assert "kubectl apply -f %s" % target in err
    docs = list(yaml.safe_load_all(target.read_text()))
    assert job_parts(docs)[1]["metadata"]["name"] == "mnv3-2s"


@pytest.mark.parametrize("argv, words", [
    (["--name", "My_Job"], "DNS-1123"),
    (["--name=-job"], "DNS-1123"),
    (["--name", "a" * 60], "too long"),
    (["--namespace", "Prod"], "DNS-1123"),
    (["--devices-per-server", "3"], "1, 2, 4, 8"),
    (["--devices-per-server", "16"], "1, 2, 4, 8"),
    (["--servers", "0"], "at least 1"),
    (["--image", "bad image"], "--image"),
    (["--job-id", "job 1"], "--job-id"),
    (["--host-path", "relative:/data"], "HOST_PATH:CONTAINER_PATH"),
    (["--host-path", "/a:/user/serverid/devindex/config"], "used twice"),
    (["--nfs", "nfs1:/export"], "SERVER:EXPORT:CONTAINER_PATH"),
    (["--node-selector", "arch"], "KEY=VALUE"),
    (["--devices", "0-7"], "--devices-per-server"),
    (["--rank-table=/x.json"], "set by the manifest"),
    (["--node-rank", "1"], "set by the manifest"),
    (["--servers", "two"], "invalid int"),
    ([], "no --model"),
    (["--model", "resnet50"], "unknown model 'resnet50'"),
    (MODEL + ["--batch-size", "many"], "would reject these flags"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, tmp_path, capsys):
    target = tmp_path / "job.yaml"
    target.write_text("kept\n")
    assert k8s.main(BASE + argv + ["-o", str(target)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("launcher k8s: error:"), captured.err
    assert words in lines[0]
    assert captured.out == ""
    assert target.read_text() == "kept\n", "a failed render must not touch an existing file"


def test_missing_required_flag_is_one_line(capsys):
    assert k8s.main(["--image", "x:1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--name" in lines[0]


def test_command_line_entry_point(tmp_path):
    """The real program: renders to a file, and a mistake is one line with exit code 2, no traceback."""
    target = tmp_path / "job.yaml"
    ok = subprocess.run(K8S_CLI + BASE + MODEL + ["-o", str(target)],
                        cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert job_parts(list(yaml.safe_load_all(target.read_text())))[1]["kind"] == "Job"
    bad = subprocess.run(K8S_CLI + BASE + ["--devices-per-server", "5"],
                         cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


def kubelet_expand(arg, env):
    """Kubernetes' expansion of a container command: $(VAR) from the container env, $$ -> $."""
    out, i = [], 0
    while i < len(arg):
        if arg.startswith("$$", i):
            out.append("$")
            i += 2
        elif arg.startswith("$(", i) and ")" in arg[i:]:
            end = arg.index(")", i)
            name = arg[i + 2:end]
            out.append(env[name] if name in env else arg[i:end + 1])
            i = end + 1
        else:
            out.append(arg[i])
            i += 1
    return "".join(out)


def test_a_pod_waits_for_the_scheduler_table_and_plans_only_its_servers_ranks(tmp_path, capsys):
    """The rendered pod command, expanded as the kubelet would on node 10.0.0.2, against the ConfigMap's
    content: the launcher waits while it is "initializing", then plans that server's ranks with the
    table's global rank ids (dry run: nothing is started)."""
    from rank_table import build

    configmap, job, pod, container = job_parts(render(BASE + ["--dry-run", "--", "true"], capsys))
    table_file = tmp_path / "hccl.json"
    table_file.write_text(configmap["data"]["hccl.json"])          # what the pod sees first
    env = {"XDL_IP": "10.0.0.2", "POD_IP": "172.16.3.7"}
    command = [kubelet_expand(arg, env) for arg in container["command"]]
    # the scheduler's mount path is waited for by default; this copy of it is a path of the test's, so the
    # wait is asked for explicitly
    command = [str(table_file) if arg == k8s.TABLE_PATH else arg for arg in command]
    command[3:3] = ["--table-wait", "60"]
    assert command[:3] == ["python3", "-m", "launcher"] and "10.0.0.2" in command
    child_env = dict(os.environ, PYTHONPATH=ROOT)
    child_env.pop("RANK_TABLE_FILE", None)
    proc = subprocess.Popen([sys.executable] + command[1:], cwd=str(tmp_path), env=child_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        assert "initializing" in first, first
        servers = [("10.0.0.%d" % s, [(d, "192.168.%d.%d" % (d, s)) for d in range(8)]) for s in (1, 2)]
        table_file.write_text(json.dumps(build.build_table(servers)))   # HCCL-Controller completes it
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, first + err
    plans = glob.glob(str(tmp_path / "output" / "**" / "launch.json"), recursive=True)
    assert len(plans) == 1, plans
    plan = json.loads(open(plans[0]).read())
    assert plan["world_size"] == 16 and plan["node_rank"] == 1 and plan["job_id"] == "mnv3-2s"
    assert [spec["rank"] for spec in plan["ranks"]] == list(range(8, 16))
    assert plan["ranks"][0]["env"]["JOB_ID"] == "mnv3-2s"
