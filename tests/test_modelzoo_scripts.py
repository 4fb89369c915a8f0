"""The ModelZoo entry points (test/*.sh): real end-to-end runs on CPU with a tiny image folder and few steps,
and their refusals of bad flags (a usage line and exit 2, nothing started)."""
import json
import math
import os
import struct
import subprocess
import sys
import zlib

import pytest
from helpers import ROOT, records
from helpers.checkpoints import checkpoint_values, latest, model_checksum

from launcher import modelzoo

KEYS = ["Network", "RankSize", "BatchSize", "DeviceType", "CaseName", "ActualFPS", "TrainingTime",
        "TrainAccuracy", "ActualLoss", "E2ETrainingTime"]


def png_bytes(width, height, shade):
    """A tiny grey PNG (stdlib only), so that the test data is a real image folder."""
    rows = [bytes([(shade + x * 7 + y * 3) % 256 for x in range(width)]) for y in range(height)]
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    for split, count in (("train", 8), ("validation", 4)):
        for label, shade in (("dark", 20), ("light", 200)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                (folder / ("%d.png" % index)).write_bytes(png_bytes(16, 16, shade + index))
    return str(root)


def run_script(name, args, cwd, env_extra=None):
    env = dict(os.environ)
    env.pop("RANK_SIZE", None)
    env["PYTHON"] = sys.executable
    env.update(env_extra or {})
    return subprocess.run(["bash", os.path.join(ROOT, "test", name)] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def summary_fields(text):
    """The `Key = value` lines, in the order printed."""
    fields = []
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep and key in KEYS:
            fields.append((key, value.strip()))
    return fields


def check_plausible(fields, network, batch, ranks, case):
    assert [key for key, _ in fields] == KEYS
    values = dict(fields)
    assert values["Network"] == network
    assert values["RankSize"] == str(ranks)
    assert values["BatchSize"] == str(batch)
    assert values["DeviceType"]
    assert values["CaseName"] == "%s_bs%d_%dp_%s" % (network, batch, ranks, case)
    assert float(values["ActualFPS"]) > 0
    assert float(values["TrainingTime"]) > 0
    assert 0.0 <= float(values["TrainAccuracy"]) <= 1.0
    loss = float(values["ActualLoss"])
    assert loss > 0 and math.isfinite(loss)
    assert int(values["E2ETrainingTime"]) >= 0


# The runs check the scripts and the launcher, not a network: a run of the registry's smoke model costs
# under half of MobileNetV3-Small's CPU (bench/RESULTS.md). The real networks run through the launcher in
# test_demo, through the trainer in test_predict and test_small_data. The ModelZoo network names are
# checked below.
TINY = ["--model=smoke", "--batch=4", "--image_size=32", "--max_step=2"]


@pytest.mark.parametrize("model, flags, network", [
    ("mobilenetv3_large", [], "MobileNetV3-Large"),
    ("mobilenetv3_small", ["--lr=0.1", "--model_option=width=0.75"], "MobileNetV3-Small-0.75x"),
    ("shufflenetv1", [], "ShuffleNetV1-1.0x-group3"),      # ModelZoo's ShuffleNetV1-1.0x-group3_ID2129
    ("shufflenetv1", ["--model-option", "groups=8", "--model_option=scale=0.5"], "ShuffleNetV1-0.5x-group8"),
    ("smoke", ["--no_eval"], "smoke"),
    ("shufflenetv1", ["--model_option=groups=5"], "shufflenetv1"),   # the launcher then refuses groups=5
])
def test_the_modelzoo_network_name_follows_the_model_and_its_options(model, flags, network):
    assert modelzoo.network_name(model, flags) == network


@pytest.mark.slow
def test_full_1p_trains_on_cpu_and_writes_the_modelzoo_files(tiny_folder, tmp_path):
    out = tmp_path / "out"
    # a relative --data_path is the caller's, although the script runs from the repository root
    # any further trainer option is passed through (a switch, and --flag value)
    result = run_script("train_full_1p.sh", ["--data_path=" + os.path.relpath(tiny_folder, str(tmp_path)),
                                             "--epochs=1", "--output_dir=out", "--no_export",
                                             "--label_smoothing", "0.05", "--augment=none"] + TINY,
                        cwd=str(tmp_path), env_extra={"ASCEND_DEVICE_ID": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    argv = json.loads((out / "launch.json").read_text())["ranks"][0]["argv"]
    assert "--no_export" in argv and "--label_smoothing=0.05" in argv
    assert "running on CPU with 1 worker" in result.stdout
    fields = summary_fields(result.stdout)
    check_plausible(fields, "smoke", 4, 1, "acc")
    rank_dir = out / "3"                      # output/<ASCEND_DEVICE_ID>/, as ModelZoo puts it
    assert "training augmentation none" in (rank_dir / "train_3.log").read_text()  # passed through
    case_log = rank_dir / "smoke_bs4_1p_acc.log"
    assert summary_fields(case_log.read_text()) == fields


@pytest.mark.slow
def test_full_8p_runs_rank_size_workers_on_cpu(tiny_folder, tmp_path):
    # --no_export: the export is the trainer's (test_predict); rank 0 would spend a third of its time on it.
    # The same run checks the BN statistics without re-estimation (--bn_recalibrate_batches=0): averaged
    # over the ranks, and as the last step is also a checkpoint step (--save_interval=2), the checkpoint is
    # written again once they are settled, so it holds the weights both ranks end with. (With re-estimated
    # statistics, the default, test_trainer's two-rank run checks the same.)
    result = run_script("train_full_8p.sh", ["--data_path=" + tiny_folder, "--rank_size=2", "--epochs=1",
                                             "--output_dir=" + str(tmp_path), "--network=Tiny",
                                             "--no_export", "--bn_recalibrate_batches=0",
                                             "--save_interval=2"] + TINY,
                        cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "running on CPU with 2 worker" in result.stdout
    fields = summary_fields(result.stdout)
    check_plausible(fields, "Tiny", 4, 2, "acc")
    for device in ("0", "1"):
        assert (tmp_path / device / ("train_%s.log" % device)).is_file()
        assert summary_fields((tmp_path / device / "Tiny_bs4_2p_acc.log").read_text()) == fields
    ends = [records(str(tmp_path / device / "metrics.jsonl"), "end")[-1] for device in ("0", "1")]
    assert [end["step"] for end in ends] == [2, 2]
    assert not records(str(tmp_path / "0" / "metrics.jsonl"), "bn_recalibrate")
    assert ends[0]["weights_checksum"] == ends[1]["weights_checksum"]
    assert model_checksum(checkpoint_values(latest(tmp_path / "checkpoints"))) == pytest.approx(
        ends[0]["weights_checksum"], rel=1e-12)


# the performance runs' settings (each test names its model)
PERF = ["--batch=4", "--image_size=32", "--learning_rate=0.01"]


def check_perf_run(result, out, scratch, ranks, end_step, network):
    """What every performance run must leave: ModelZoo's fields, a throughput-only run of whole steps, and
    no scratch checkpoints behind."""
    assert result.returncode == 0, result.stderr[-3000:]
    check_plausible(summary_fields(result.stdout), network, 4, ranks, "perf")
    records = (out / "0" / "metrics.jsonl").read_text().splitlines()
    assert '"step": %d' % end_step in [line for line in records if '"event": "end"' in line][-1]
    assert not [line for line in records if '"event": "eval"' in line]      # throughput only, as ModelZoo
    assert os.listdir(str(scratch)) == []     # the run's scratch checkpoints are gone
    assert not (out / "checkpoints" / "checkpoint").exists()
    return records


def test_performance_8p_plans_a_bounded_fresh_run_on_device_0(tiny_folder, tmp_path):
    # modelzoo_common.sh decides the devices from PLACES and the run from MODE, independently. A bounded
    # performance run really runs in test_performance_1p (the same MODE), the two-rank path in
    # test_full_8p (the same PLACES); here the launcher's --dry-run (passed on like any further option)
    # shows what the 8p script asks for in performance mode, and nothing starts.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "out"
    args = ["--data_path=" + tiny_folder, "--output_dir=" + str(out), "--max_step=2", "--rank_size=1",
            "--model=shufflenetv1", "--model_option", "groups=8", "--dry-run"] + PERF
    result = run_script("train_performance_8p.sh", args, cwd=ROOT, env_extra={"TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads((out / "launch.json").read_text())
    assert plan["network"] == "ShuffleNetV1-1.0x-group8"      # not ModelZoo's group-3 network
    assert [(rank["rank"], rank["device"]) for rank in plan["ranks"]] == [(0, "0")]
    argv = plan["ranks"][0]["argv"]
    assert "--max_step=2" in argv and "--no-eval" in argv and "--no-export" in argv
    assert argv[argv.index("--resume") + 1] == "never"
    kept = [arg for arg in argv if arg.startswith("--checkpoint_dir=")]
    assert len(kept) == 1 and kept[0].startswith("--checkpoint_dir=" + str(scratch))
    assert os.listdir(str(scratch)) == []        # the scratch directory is removed when the script ends
    assert not (out / "0" / "metrics.jsonl").exists() and not summary_fields(result.stdout)


@pytest.mark.slow
def test_performance_1p_takes_the_modelzoo_npu_flags_on_cpu_and_says_they_are_npu_only(tiny_folder, tmp_path):
    """One run of train_performance_1p.sh: a bounded fresh run that also takes ModelZoo's NPU flags."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    args = ["--data_path=" + tiny_folder, "--output_dir=" + str(tmp_path / "out"), "--max_step=3",
            "--iterations_per_loop=2", "--loss_scale=off", "--profiling=True", "--over_dump=True",
            "--data_dump_flag=False", "--data_dump_step=10", "--bind_core=1",
            "--modeldir=" + str(tmp_path / "ckpt"), "--model=smoke"] + PERF
    result = run_script("train_performance_1p.sh", args, cwd=ROOT, env_extra={"TMPDIR": str(scratch)})
    check_perf_run(result, tmp_path / "out", scratch, 1, 4, "smoke")  # whole loops of 2
    assert "NPU-only: ignored on cpu" in result.stdout and "always on" in result.stdout
    log = (tmp_path / "out" / "0" / "train_0.log").read_text()
    assert "iterations per loop 2: 2 steps per loop on the host" in log
    assert "NPU-only: ignored on cpu" in log
    assert os.path.exists(str(tmp_path / "ckpt" / "checkpoint"))  # --modeldir is the checkpoint directory
    assert not (tmp_path / "out" / "0" / "profiling").exists()


@pytest.mark.parametrize("args, message", [
    ([], "--data_path=DIR is required"),
    (["--data_path=/x", "--iterations_per_loop=0"], "--iterations_per_loop must be a positive whole number"),
    (["--data_path=/x", "--batch=0"], "--batch must be a positive whole number"),
    (["--data_path=/x", "--epochs"], "--epochs needs a value"),
    (["--data_path=/x", "stray"], "unexpected argument 'stray'"),
])
def test_bad_flags_get_one_error_a_usage_line_and_exit_2(tmp_path, args, message):
    out = "--output_dir=" + str(tmp_path / "out")
    result = run_script("train_full_8p.sh", args + [out], cwd=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and message in lines[0]
    assert lines[1].startswith("usage: bash test/train_full_8p.sh")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--autotune=True"], "unknown option --autotune=True: not the launcher's"),   # passed on, then refused
    (["--data_dump_step=9-3"], "--data_dump_step range '9-3' must go up"),
    (["--loss_scale=tiny"], "loss scale 'tiny' is not valid"),
    (["--learning_rate=abc"], "invalid float value: 'abc'"),                      # the trainer's check
    (["--precision_mode=fp64"], "invalid choice: 'fp64'"),
    (["--image_size=16"], "image size 16x16 is too small"),
    (["--label_offset=-1"], "--label-offset must be 0 or more"),
])
def test_trainer_flags_are_passed_on_and_checked_by_the_launcher(tmp_path, args, message):
    result = run_script("train_full_8p.sh", ["--data_path=synthetic", "--output_dir=" + str(tmp_path / "out")]
                        + args, cwd=str(tmp_path))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("launcher: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_missing_data_is_the_launchers_one_line_error(tmp_path):
    result = run_script("train_full_1p.sh", ["--data_path=" + str(tmp_path / "nowhere"),
                                             "--output_dir=" + str(tmp_path / "out")], cwd=str(tmp_path))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_help_prints_the_usage_and_succeeds():
    result = run_script("train_performance_1p.sh", ["--help"], cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("usage: bash test/train_performance_1p.sh")


def test_a_bad_augment_is_the_trainers_one_line_error(tmp_path):
    result = run_script("train_full_1p.sh", ["--data_path=" + str(tmp_path), "--augment=heavy",
                                             "--output_dir=" + str(tmp_path / "out")], cwd=str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--augment: invalid choice: 'heavy'" in result.stderr.strip().splitlines()[0]
    assert not (tmp_path / "out" / "checkpoints").exists()
