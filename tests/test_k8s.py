"""`python -m launcher k8s`: the rendered Volcano Job must be valid YAML with the fields Kubernetes, Volcano
and Ascend's device plugin / HCCL-Controller need, and bad flags must give one line and exit 2."""
import functools
import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT

from launcher import k8s

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
    assert command[:4] == k8s.SHELL_PREFIX + [k8s.DEFAULT_SET_ENV]      # CANN's set_env.sh first
    command = command[4:]
    assert command[:3] == ["/usr/bin/python3.7", "-m", "launcher"]
    assert container["workingDir"] == "/job/code"

    def value(flag):
        return command[command.index(flag) + 1]

    assert value("--rank-table") == "/user/serverid/devindex/config/hccl.json"
    assert value("--job-id") == "job_42"
    # no flag picks the server: the launcher matches what the pod knows (downward API env) against the table
    assert "--server-id" not in command and "--node-rank" not in command
    env = {e["name"]: e for e in container["env"]}
    assert env["XDL_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
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
    options = cli.parse(command[7:])
    assert options["backend"] == "npu"
    assert options["rank_table"] == "/user/serverid/devindex/config/hccl.json"
    assert options["server_id"] is None and options["node_rank"] is None and options["job_id"] == "mnv3-2s"
    assert options["model"] == "shufflenetv1" and options["data_path"] == "/data/imagenet"
    assert options["batch_size"] == 32
    argv = BASE + ["--", "python3", "my_train.py", "--rank-table", "is the worker's own flag"]
    options = cli.parse(job_parts(render(argv, capsys))[3]["command"][7:])
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


def test_options_shape_node_selection_and_mounts(capsys):
    argv = BASE + MODEL + ["--servers", "4", "--devices-per-server", "2", "--node-selector",
                           "host-arch=huawei-arm", "--host-path", "/data/imagenet:/data/imagenet",
                           "--nfs", "nfs1:/export/out:/job/output"]
    configmap, job, pod, container = job_parts(render(argv, capsys))
    assert job["spec"]["minAvailable"] == 4 and job["spec"]["tasks"][0]["replicas"] == 4
    assert container["resources"]["limits"][NPU] == 2
    assert pod["spec"]["nodeSelector"] == {"host-arch": "huawei-arm"}
    configmap, job, pod, container = job_parts(render(argv + ["--node-selector", "host-arch=huawei-x86"],
                                                      capsys))
    assert pod["spec"]["nodeSelector"] == {"host-arch": "huawei-x86"}     # the user's value wins
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
    (["--chip", "910B", "--devices-per-server", "12"], "on an Ascend 910B server"),
    (["--set-env", "set_env.sh"], "absolute path of CANN's set_env.sh"),
    (["--arch", "mips"], "invalid choice"),
    (["--server-id", "x"], "set by the manifest"),
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


FIXTURES = os.path.join(ROOT, "tests", "fixtures", "k8s")
NODE_IPS = ("10.0.0.1", "10.0.0.2")
POD_IPS = ("172.16.3.6", "172.16.3.7")
UIDS = ("0c5a6f0e-1111-4a57-9d1b-2b1a51e0f001", "0c5a6f0e-2222-4a57-9d1b-2b1a51e0f002")


def pod_env(container, pod):
    """The container's env as the kubelet resolves it: values, and downward-API fieldRefs from ``pod``."""
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        path = item["valueFrom"]["fieldRef"]["fieldPath"]
        if path.startswith("metadata.annotations["):
            value = pod["annotations"].get(path[len("metadata.annotations['"):-2], "")
        else:
            value = pod[path]
        env[item["name"]] = value
    return env


def run_pod(container, pod, table_file, tmp_path, wait=None):
    """Start the rendered pod command (bash, CANN's set_env.sh, the launcher) as the kubelet would in
    ``pod``, with the table at ``table_file`` and a stand-in set_env.sh; returns the Popen (the launcher is in
    a dry run because the training flags hold --dry-run)."""
    env = pod_env(container, pod)
    command = [kubelet_expand(arg, env) for arg in container["command"]]
    set_env = tmp_path / "set_env.sh"
    set_env.write_text("export CANN_SET_ENV_SOURCED=yes\n")
    assert command[3] == k8s.DEFAULT_SET_ENV
    command[3] = str(set_env)
    command = [str(table_file) if arg == k8s.TABLE_PATH else arg for arg in command]
    command = [sys.executable if arg == "python3" else arg for arg in command]
    if wait is not None:      # a launcher flag: before the worker command's "--"
        cut = command.index("--") if "--" in command else len(command)
        command[cut:cut] = ["--table-wait", str(wait)]
    child_env = dict(os.environ, PYTHONPATH=ROOT, **env)
    child_env.pop("RANK_TABLE_FILE", None)
    return subprocess.Popen(command, cwd=str(tmp_path), env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def the_plan(tmp_path):
    plans = glob.glob(str(tmp_path / "output" / "**" / "launch.json"), recursive=True)
    assert len(plans) == 1, plans
    with open(plans[0]) as handle:
        return json.load(handle)


def the_pod(index, devices=None):
    devices = devices or list(range(8))
    return {"status.hostIP": NODE_IPS[index], "status.podIP": POD_IPS[index], "metadata.uid": UIDS[index],
            "metadata.name": "mnv3-2s-worker-%d" % index,
            "annotations": {NPU: ",".join("Ascend910-%d" % d for d in devices)}}


def controller_table(generation, devices=None, uids=UIDS):
    """A completed hccl.json as each generation writes it for 2 pods (one per node), from its source:
    hccl-controller (ascend-hccl-controller ranktable/v2: server_id = node IP, nothing else per server);
    hccl-controller -json v1 (ranktable/v1: group_list, pod_name, no rank_id: HCCL numbers ranks in
    instance order, here pod 1 first); Ascend Operator before mind-cluster 03770c70 (server_id = node IP
    from the device plugin, host_ip, container_ip = pod IP); Ascend Operator since 03770c70 (server_id = pod
    UID, host_ip = node IP)."""
    devices = devices or list(range(8))
    servers = []
    for index in range(2):
        entry = {"device": [{"device_id": str(d), "device_ip": "192.168.%d.%d" % (d, index + 1),
                             "rank_id": str(index * len(devices) + n)} for n, d in enumerate(devices)],
                 "server_id": NODE_IPS[index]}
        if generation in ("operator", "operator-uid"):
            entry["host_ip"] = NODE_IPS[index]
            entry["container_ip"] = POD_IPS[index]
        if generation == "operator-uid":
            entry["server_id"] = uids[index]
        servers.append(entry)
    if generation == "hccl-controller-v1":     # -json v1: template 2, one instance per pod, in cache order
        instances = [{"devices": [{k: d[k] for k in ("device_id", "device_ip")} for d in server["device"]],
                      "pod_name": "mnv3-2s-worker-%d" % index, "server_id": server["server_id"]}
                     for index, server in reversed(list(enumerate(servers)))]
        return {"status": "completed", "group_count": "1",
                "group_list": [{"group_name": "mnv3-2s", "device_count": str(2 * len(devices)),
                                "instance_count": "2", "instance_list": instances}]}
    return {"status": "completed", "server_list": servers, "server_count": "2", "version": "1.0"}


def complete_while_waiting(proc, table_file, table, waits_because):
    """A pod is waiting for its table: its first line says why (`waits_because`); then the completed
    table is written and the pod must finish its start (dry run) with 0."""
    try:
        first = proc.stderr.readline()
        assert waits_because in first, first
        table_file.write_text(json.dumps(table))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


@pytest.mark.parametrize("generation", ["hccl-controller", "hccl-controller-v1", "operator", "operator-uid"])
def test_the_pod_command_finds_its_server_in_each_generations_table(generation, tmp_path, capsys):
    """The rendered pod command, run as the kubelet would on the second pod, against each generation's
    table: it waits while the ConfigMap says "initializing", then plans that server's ranks (8-15) with
    logical ids."""
    configmap, job, pod, container = job_parts(render(BASE + ["--dry-run", "--", "true"], capsys))
    table_file = tmp_path / "hccl.json"
    table_file.write_text(configmap["data"]["hccl.json"])          # what the pod sees first
    # the scheduler's mount path is waited for by default; this copy of it is the test's own path, so the
    # wait is asked for explicitly
    proc = run_pod(container, the_pod(1), table_file, tmp_path, wait=60)
    # the controller completes the table while the pod waits
    complete_while_waiting(proc, table_file, controller_table(generation), "initializing")
    plan = the_plan(tmp_path)
    first_in_table = generation == "hccl-controller-v1"
    assert plan["world_size"] == 16 and plan["node_rank"] == (0 if first_in_table else 1)
    assert plan["job_id"] == "mnv3-2s"
    assert [spec["rank"] for spec in plan["ranks"]] == list(range(0, 8) if first_in_table else range(8, 16))
    assert [spec["env"]["ASCEND_DEVICE_ID"] for spec in plan["ranks"]] == [str(d) for d in range(8)]
    assert plan["ranks"][0]["env"]["JOB_ID"] == "mnv3-2s"


def test_a_pod_given_physical_4_to_7_starts_logical_0_to_3(tmp_path, capsys):
    configmap, job, pod, container = job_parts(render(BASE + ["--devices-per-server", "4", "--dry-run", "--",
                                                              "true"], capsys))
    table_file = tmp_path / "hccl.json"
    table_file.write_text(json.dumps(controller_table("operator-uid", devices=[4, 5, 6, 7])))
    proc = run_pod(container, the_pod(0, devices=[4, 5, 6, 7]), table_file, tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    plan = the_plan(tmp_path)
    assert [spec["rank"] for spec in plan["ranks"]] == [0, 1, 2, 3]
    assert [spec["env"]["DEVICE_ID"] for spec in plan["ranks"]] == ["4", "5", "6", "7"]   # physical
    assert [spec["env"]["ASCEND_DEVICE_ID"] for spec in plan["ranks"]] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("generation", ["operator", "operator-uid"])
def test_after_a_restart_the_previous_runs_table_is_not_acted_on(generation, tmp_path, capsys):
    """A RestartJob makes new pods (new UIDs, new pod IPs) while the ConfigMap may still hold the previous
    run's completed table: the pod waits for one written for it, and gives up with the reason if none
    comes."""
    configmap, job, pod, container = job_parts(render(BASE + ["--dry-run", "--", "true"], capsys))
    old_uids = ("0c5a6f0e-aaaa-4a57-9d1b-2b1a51e0f001", "0c5a6f0e-bbbb-4a57-9d1b-2b1a51e0f002")
    old = controller_table(generation, uids=old_uids)
    for index, server in enumerate(old["server_list"]):
        server["container_ip"] = "172.16.9.%d" % index
    table_file = tmp_path / "hccl.json"
    table_file.write_text(json.dumps(old))
    proc = run_pod(container, the_pod(1), table_file, tmp_path, wait=60)
    complete_while_waiting(proc, table_file, controller_table(generation), "previous run's table")
    assert [spec["rank"] for spec in the_plan(tmp_path)["ranks"]] == list(range(8, 16))
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "hccl.json").write_text(json.dumps(old))
    proc = run_pod(container, the_pod(1), stale / "hccl.json", stale, wait=0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.strip().count("\n") == 0 and "previous run's table" in err
    assert not (stale / "output").exists()


@functools.lru_cache(maxsize=None)
def _volcano_job_validator():
    """The CRD's schema, read once per process (the YAML is 1.3 MB); validators never change it."""
    import jsonschema
    with open(os.path.join(FIXTURES, "batch.volcano.sh_jobs.yaml")) as handle:
        crd = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    schema = versions["v1alpha1"]["schema"]["openAPIV3Schema"]
    return jsonschema.validators.validator_for(schema)(schema)


@functools.lru_cache(maxsize=None)
def _pod_validator():
    import jsonschema
    with open(os.path.join(FIXTURES, "pod-v1.37.0-strict.json")) as handle:
        return jsonschema.Draft202012Validator(json.load(handle))


@pytest.mark.parametrize("extra", [
    [],
    ["--chip", "910B", "--devices-per-server", "16", "--arch", "x86", "--host-path", "/data:/data",
     "--nfs", "nfs1:/export:/out"],
])
def test_rendered_job_validates_against_the_real_volcano_crd_and_pod_schemas(extra, capsys):
    import jsonschema

    configmap, job, pod, container = job_parts(render(BASE + MODEL + extra, capsys))
    _volcano_job_validator().validate(job)
    full_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": dict(pod["metadata"], name="mnv3-2s-worker-0"),
                "spec": pod["spec"]}
    _pod_validator().validate(full_pod)
    bad = json.loads(json.dumps(full_pod))
    bad["spec"]["containers"][0]["volumeMount"] = bad["spec"]["containers"][0].pop("volumeMounts")
    with pytest.raises(jsonschema.ValidationError):          # the strict schema catches a misspelt field
        _pod_validator().validate(bad)
    broken = json.loads(json.dumps(job))
    broken["spec"]["tasks"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        _volcano_job_validator().validate(broken)


def test_labels_selectors_resources_and_mounts_match_huaweis_sample(capsys):
    """Compared with Ascend/mindxdl-deploy's a800_tensorflow_vcjob.yaml (tests/fixtures/k8s): what that sample
    needs from the cluster (labels, selector keys, NPU resource, downward-API env, mounts) is in ours too."""
    with open(os.path.join(FIXTURES, "a800_tensorflow_vcjob.yaml")) as handle:
        sample_cm, sample_job = list(yaml.safe_load_all(handle))
    sample_pod = sample_job["spec"]["tasks"][0]["template"]
    sample_container = sample_pod["spec"]["containers"][0]
    configmap, job, pod, container = job_parts(render(BASE + MODEL, capsys))
    assert configmap["metadata"]["labels"] == sample_cm["metadata"]["labels"]
    assert job["metadata"]["labels"]["ring-controller.atlas"] == sample_job["metadata"]["labels"][
        "ring-controller.atlas"]
    assert pod["metadata"]["labels"]["ring-controller.atlas"] == sample_pod["metadata"]["labels"][
        "ring-controller.atlas"]
    assert set(sample_pod["spec"]["nodeSelector"]) <= set(pod["spec"]["nodeSelector"])
    assert pod["spec"]["nodeSelector"]["host-arch"] == sample_pod["spec"]["nodeSelector"]["host-arch"]
    assert set(sample_container["resources"]["limits"]) == set(container["resources"]["limits"])
    ours = {e["name"]: e.get("valueFrom") for e in container["env"]}
    for item in sample_container["env"]:
        if item["name"] in ("XDL_IP", "ASCEND_VISIBLE_DEVICES"):
            assert ours[item["name"]] == item["valueFrom"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    sample_volumes = {v["name"]: v for v in sample_pod["spec"]["volumes"]}
    for mount in sample_container["volumeMounts"]:
        source = sample_volumes[mount["name"]]
        if "hostPath" in source or "configMap" in source:
            assert mount["mountPath"] in mounted, mount
            if "hostPath" in source:
                assert mounted[mount["mountPath"]]["hostPath"] == source["hostPath"]
    assert "/usr/local/Ascend/add-ons" in mounted


def test_910b_and_arch_choices(capsys):
    configmap, job, pod, container = job_parts(render(
        BASE + MODEL + ["--chip", "910B", "--devices-per-server", "16", "--image", "repo/train:1.0-x86_64"],
        capsys))
    assert pod["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910b"
    assert configmap["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910b"
    assert pod["spec"]["nodeSelector"] == {"host-arch": "huawei-x86", "accelerator-type": "module-910b-16"}
    assert container["resources"]["requests"][NPU] == 16
    configmap, job, pod, container = job_parts(render(BASE + MODEL + ["--image", "r/t:arm64", "--arch", "x86",
                                                                      "--set-env", "/opt/cann/set_env.sh"],
                                                      capsys))
    assert pod["spec"]["nodeSelector"] == {"host-arch": "huawei-x86"}
    assert container["command"][3] == "/opt/cann/set_env.sh"


def test_a_missing_set_env_script_is_one_line_naming_the_flag(tmp_path, capsys):
    container = job_parts(render(BASE + ["--dry-run", "--", "true"], capsys))[3]
    command = [arg.replace("$$", "$") for arg in container["command"]]
    command[3] = str(tmp_path / "no_set_env.sh")
    proc = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no_set_env.sh not found" in proc.stderr and "--set-env" in proc.stderr
