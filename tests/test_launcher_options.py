"""One definition of every option: the launcher refuses, before any worker starts and with the trainer's own
message, everything the trainer would refuse; dash and underscore spellings are one option and may not
disagree; the output directory is one; the trainer's options reach the ranks as given."""
import json
import os
import re
import struct
import subprocess
import sys

import pytest
from helpers import ROOT

from train import config, flags

MODEL = ["--devices", "2", "--model", "shufflenetv1"]


def launch(tmp_path, *argv):
    env = dict(os.environ, PYTHONPATH=ROOT)
    for name in ("RANK_TABLE_FILE", "POD_NAME"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "launcher"] + list(argv), cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def one_error(code, err):
    errors = [line for line in err.splitlines() if line.startswith("launcher: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def write_records(path, count):
    """TFRecord framing (CRCs zeroed: the launcher's count does not read them)."""
    with open(str(path), "wb") as handle:
        for index in range(count):
            payload = b"x%d" % index
            handle.write(struct.pack("<Q", len(payload)) + b"\0" * 4 + payload + b"\0" * 4)


def trainer_message(*argv):
    """What the trainer's own checks say (train.precheck runs in every rank too)."""
    from train import precheck
    args = config.parse_flags(list(argv))
    with pytest.raises(Exception) as caught:
        precheck.check(args, 8, "/nonexistent")
    return str(caught.value)


@pytest.mark.parametrize("argv, message", [
    (MODEL + ["--batch-size", "32", "--batch_size", "64"],
     "--batch-size 32 and --batch_size 64 set the same option with different values; give it once"),
    (MODEL + ["--output-dir", "a", "--output_dir", "b"], "--output-dir a and --output_dir b"),
    (MODEL + ["--resume", "auto", "--no-resume"], "--resume auto and --no-resume"),
    (MODEL + ["--model-option", "groups=5"], "groups=5 is not supported"),
    (MODEL + ["--image-size", "16"], "image size 16x16 is too small"),
    (MODEL + ["--image_size", "16"], "image size 16x16 is too small"),
    (MODEL + ["--data_path", "missing_dir"], "missing_dir"),
    (MODEL + ["--epochs", "zero"], "trainer option: argument --epochs"),
    (MODEL + ["--resume", "nothere/model.ckpt-5"], "--resume nothere/model.ckpt-5: no such checkpoint"),
    (MODEL + ["--finetune", "nothere"], "--finetune nothere: no such checkpoint"),
    (MODEL + ["--data-path", "synthetic:10:40", "--batch-size", "32"],
     "fewer than one global batch (32 x 2 ranks); lower --batch-size"),
])
def test_the_launcher_refuses_what_the_trainer_would_refuse(tmp_path, argv, message):
    code, _, err = launch(tmp_path, *(argv + ["--dry-run"]))
    assert message in one_error(code, err)
    assert not os.path.exists(str(tmp_path / "output"))        # nothing written before the checks


def test_four_tfrecord_files_for_eight_ranks_fail_in_the_launcher_with_the_pipelines_message(tmp_path):
    data = tmp_path / "records"
    data.mkdir()
    for index in range(4):
        write_records(data / ("train-%05d-of-00004" % index), 3)
    (data / "labels.txt").write_text("a\nb\n")
    code, _, err = launch(tmp_path, "--devices", "8", "--model", "shufflenetv1", "--data_path", str(data),
                          "--batch-size", "1", "--dry-run")
    line = one_error(code, err)
    expected = trainer_message("--model", "shufflenetv1", "--data-path", str(data), "--batch-size", "1")
    assert "4 train-* TFRecord files cannot give each of 8 ranks whole files" in line
    assert line == "launcher: error: " + expected


def test_fractional_epochs_are_taken_as_the_trainer_takes_them_and_the_options_reach_the_ranks(tmp_path):
    code, out, err = launch(tmp_path, *(MODEL + ["--epochs", "0.5", "--batch_size", "8", "--lr", "0.1",
                                                 "--output_dir", "run", "--dry-run"]))
    assert code == 0, err
    plan = json.load(open(str(tmp_path / "run" / "launch.json")))
    argv = plan["ranks"][0]["argv"]
    assert argv[1:] == ["-m", "train", "--model", "shufflenetv1", "--epochs", "0.5", "--batch_size", "8",
                        "--lr", "0.1"]          # --output_dir is the launcher's: one run directory
    assert plan["ranks"][0]["env"]["LAUNCH_OUTPUT_DIR"] == str(tmp_path / "run")
    assert plan["batch_size"] == 8 and plan["trainer"]["total_steps"] >= 1


def test_no_data_path_says_it_trains_on_synthetic_data(tmp_path):
    code, _, err = launch(tmp_path, *(MODEL + ["--max-steps", "1", "--dry-run"]))
    assert code == 0, err
    plan = json.load(open(str(tmp_path / "output" / "launch.json")))
    assert plan["trainer"]["synthetic"] and not plan["trainer"]["data_path_given"]
    assert "launcher: no --data-path given: training on synthetic data (random images" in err
    assert "has no validation split" not in err                          # synthetic data has one


def test_both_spellings_of_every_option_are_one_option():
    parser = config.build_parser()
    for spelling in ("--batch_size", "--batch-size", "--data_path", "--data-path", "--eval_only",
                     "--eval-only", "--save_every_epochs", "--image_size"):
        assert spelling in parser._option_string_actions
    assert config.parse_flags(["--model", "m", "--batch-size", "8", "--batch_size", "8"]).batch_size == 8
    assert flags.conflict(parser, ["--model-option", "a=1", "--model_option", "b=2"]) is None   # repeatable
    assert "--export and --no-export" in flags.conflict(parser, ["--export", "--no-export"])


def test_the_launcher_help_lists_the_trainers_options(tmp_path):
    code, out, _ = launch(tmp_path, "--help")
    assert code == 0
    listed = out.split("trainer options (python -m train --help):", 1)[1].split()
    for action in config.build_parser()._actions:
        longs = [s for s in action.option_strings if s.startswith("--") and s != "--help"]
        if longs and action.dest != "output_dir":          # the launcher's own --output-dir
            assert longs[0] + "," in listed or longs[0] == listed[-1]


def launcher_and_trainer_flags():
    from launcher import cli
    names = set()
    for parser in (cli.build_parser(), config.build_parser()):
        names |= set(name for name in parser._option_string_actions if name.startswith("--"))
    return names


@pytest.mark.parametrize("argv", [
    ["--backend", "npu", "--devices", "0-9", "--hccn-conf", "hccn.conf", "--chip", "910B", "--", "true"],
    ["--backend", "npu", "--rank-table", "bad.json", "--", "true"],
    ["--backend", "npu", "--rank-table", "initializing.json", "--", "true"],
    ["--backend", "npu", "--devices", "0-1", "--chip", "910B", "--", "true"],
    MODEL + ["--batch-size", "32", "--batch_size", "64"],
    MODEL + ["--data-path", "synthetic:10:40", "--batch-size", "32"],
    MODEL + ["--resume", "nowhere"],
    MODEL + ["--eval-only", "--data-path", "synthetic:4:64:0"],
    ["--devices", "2", "--nnodes", "2", "--", "true"],
])
def test_every_error_names_only_flags_that_exist(tmp_path, argv):
    from rank_table import build
    (tmp_path / "hccn.conf").write_text("".join("address_%d=192.168.1.%d\n" % (d, d + 1) for d in range(8)))
    (tmp_path / "bad.json").write_text("{")
    table = dict(build.build_table([("10.0.0.1", [(0, "192.168.1.1")])]), status="initializing")
    (tmp_path / "initializing.json").write_text(json.dumps(table))
    code, _, err = launch(tmp_path, *(argv + ["--dry-run"] if "--" not in argv else
                                      argv[:argv.index("--")] + ["--dry-run"] + argv[argv.index("--"):]))
    line = one_error(code, err)
    named = set(re.findall(r"--[a-z][a-z0-9_-]*", line.split("(see python -m")[0]))
    assert named and named <= launcher_and_trainer_flags(), line
