"""The launcher's command line: each user mistake is one line and exit code 2; --help and --dry-run start
without TensorFlow; --list-models; the Ascend plan from real rank-table files (multi-server, mismatch)."""
import json
import os
import subprocess
import sys

import pytest
from helpers import project_env


def run(tmp_path, *argv, extra_env=None):
    env = project_env(**(extra_env or {}))
    proc = subprocess.run([sys.executable] + list(argv), cwd=str(tmp_path), env=env, capture_output=True,
                          timeout=60)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def write_table(path, servers):
    from rank_table import build
    with open(str(path), "w") as handle:
        json.dump(build.build_table(servers), handle)


TWO_SERVERS = [("10.0.0.1", [(0, "192.168.1.1"), (1, "192.168.1.2")]),
               ("10.0.0.2", [(0, "192.168.2.1"), (1, "192.168.2.2")])]


@pytest.mark.parametrize("argv, message", [
    (["--devices", "0-x", "--", "true"], "bad --devices '0-x'"),
    (["--devices", "2", "--model", "nosuch"], "unknown model 'nosuch'"),
    (["--devices", "2", "--model", "shufflenetv1", "--data-path", "missing_dir"], "missing_dir"),
    (["--devices", "2", "--model", "shufflenetv1", "--learning_rate", "abc"], "trainer option: argument"),
    (["--devices", "2", "--model", "shufflenetv1", "--no-such-trainer-flag"],
     "unknown option --no-such-trainer-flag"),
    (["--devices", "1", "--output-dir", "blocker/out", "--", "true"], "choose another --output-dir"),
    (["--backend", "npu", "--rank-table", "t1.json", "--devices", "0-3", "--", "true"], "--devices"),
    (["--backend", "npu", "--rank-table", "nothere.json", "--", "true"], "does not exist"),
    (["--backend", "tpu", "--", "true"], "invalid choice"),
    (["--devices", "1", "--"], "nothing after --"),
    (["--devices", "1", "--", "./no_such_program"], "cannot start ./no_such_program"),
    (["--devices", "2", "--nnodes", "2", "--", "true"], "--hosts"),
])
def test_each_mistake_is_one_line_and_exit_2(tmp_path, argv, message):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    write_table(tmp_path / "t1.json", TWO_SERVERS[:1])
    code, _, err = run(tmp_path, "-m", "launcher", *argv)
    errors = [line for line in err.splitlines() if line.startswith("launcher: error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_help_and_dry_run_never_import_tensorflow(tmp_path):
    code, out, err = run(tmp_path, "-X", "importtime", "-m", "launcher", "--help")
    assert code == 0 and "--stall-timeout" in out and "tensorflow" not in err
    code, out, err = run(tmp_path, "-X", "importtime", "-m", "launcher", "--devices", "2", "--model",
                         "shufflenetv1", "--data-path", "synthetic", "--batch-size", "8", "--dry-run",
                         "--lr", "0.1")
    assert code == 0, err
    assert "-m train --model shufflenetv1 --data-path synthetic --batch-size 8 --lr 0.1" in out
    imported = [line.split("|")[-1].strip() for line in err.splitlines() if line.startswith("import time:")]
    assert imported and not [name for name in imported if name.split(".")[0] in ("tensorflow", "tf_keras")]


def test_list_models_names_the_registry(tmp_path):
    code, out, _ = run(tmp_path, "-m", "launcher", "--list-models")
    assert code == 0 and "shufflenetv1" in out and "mobilenetv3_small" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    # parameter counts and multiply-adds at 224x224, from the registry's TensorFlow-free counter
    assert "2.55M params" in lines["mobilenetv3_small"] and "56.5M MAdds" in lines["mobilenetv3_small"]
    assert "5.51M params" in lines["mobilenetv3_large"] and "MAdds" in lines["shufflenetv1"]


def test_ascend_dry_run_starts_only_this_servers_ranks_with_the_tables_ids(tmp_path):
    write_table(tmp_path / "hccl.json", TWO_SERVERS)
    code, out, err = run(tmp_path, "-m", "launcher", "--backend", "npu", "--rank-table", "hccl.json",
                         "--node-rank", "1", "--dry-run", "--", "true",
                         extra_env={"POD_NAME": "pod-1", "CM_WORKER_SIZE": "4"})
    assert code == 0, err
    assert "dropped CM_WORKER_SIZE" in err and "dropped POD_NAME" in err
    plan = json.loads((tmp_path / "output" / "node1" / "launch.json").read_text())
    assert [s["rank"] for s in plan["ranks"]] == [2, 3] and plan["world_size"] == 4
    env = plan["ranks"][1]["env"]
    assert env["RANK_ID"] == "3" and env["DEVICE_ID"] == "1" and env["RANK_SIZE"] == "4"
    assert env["RANK_TABLE_FILE"] == str(tmp_path / "output" / "node1" / "rank_table.json")
    copied = json.loads((tmp_path / "output" / "node1" / "rank_table.json").read_text())
    assert copied == json.loads((tmp_path / "hccl.json").read_text())
    script = (tmp_path / "output" / "node1" / "1" / "run_1.sh").read_text()
    assert "unset POD_NAME" in script and "export RANK_ID=3" in script


def test_an_initializing_table_is_waited_for_with_a_message(tmp_path):
    from rank_table import build
    table = build.build_table(TWO_SERVERS[:1])
    (tmp_path / "hccl.json").write_text(json.dumps(dict(table, status="initializing")))
    env = project_env()
    argv = [sys.executable, "-m", "launcher", "--backend", "npu", "--rank-table", "hccl.json",
            "--table-wait", "60", "--dry-run", "--", "true"]
    proc = subprocess.Popen(argv, cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stderr.readline().decode()
    assert "waiting for" in first and "initializing" in first
    (tmp_path / "hccl.json").write_text(json.dumps(table))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads((tmp_path / "output" / "launch.json").read_text())["world_size"] == 2


def test_an_initializing_table_gives_up_after_table_wait(tmp_path):
    from rank_table import build
    table = build.build_table(TWO_SERVERS[:1])
    (tmp_path / "hccl.json").write_text(json.dumps(dict(table, status="initializing")))
    code, _, err = run(tmp_path, "-m", "launcher", "--backend", "npu", "--rank-table", "hccl.json",
                       "--table-wait", "1", "--dry-run", "--", "true")
    assert code == 2 and "--table-wait" in err.splitlines()[-1] and "Traceback" not in err


def write_unlabelled_records(directory, count=3):
    """train-* TFRecord framing without labels.txt (the check counts records; it reads no image)."""
    import struct
    os.makedirs(str(directory))
    with open(str(directory / "train-00000-of-00001"), "wb") as handle:
        for _ in range(count):
            payload = b"not parsed by the check"
            handle.write(struct.pack("<Q", len(payload)) + b"\0" * 4 + payload + b"\0" * 4)


def test_the_data_check_reads_tfrecords_with_the_trainers_label_offset_and_class_count(tmp_path):
    write_unlabelled_records(tmp_path / "slim")
    base = ["-m", "launcher", "--devices", "1", "--backend", "cpu", "--model", "shufflenetv1",
            "--data-path", "slim", "--batch-size", "1", "--dry-run"]
    code, _, err = run(tmp_path, *base)
    assert code == 2 and "no labels.txt" in err and "give the number of classes" in err
    code, out, err = run(tmp_path, *(base + ["--label_offset", "1", "--num-classes=1000"]))
    assert code == 0, err
    # passed on to the trainer as given
    assert "--data-path slim --batch-size 1 --label_offset 1 --num-classes=1000" in out
    code, _, err = run(tmp_path, *(base + ["--num-classes", "0"]))
    errors = [line for line in err.splitlines() if line.startswith("launcher: error:")]
    assert code == 2 and len(errors) == 1 and "--num-classes must be at least 1" in errors[0], err
