"""The trainer end to end on CPU with tiny stand-in data and model (tests/helpers/trainer_parts.py):
one worker in-process, two workers as two real processes started by the launcher, resume after a kill,
evaluation counts, transfer learning to another class count, export, and the error file."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, records
from helpers import trainer_parts as standins
from helpers.checkpoints import checkpoint_values, latest, model_checksum
from helpers.frozen import run_frozen
from helpers.trainer_job import WORKER, finish, saved_steps, start_rank, wait_for

from train import optim
from train.__main__ import main

TINY = ["--model", "tiny", "--image-size", "32", "--batch-size", "16", "--log-every", "4"]

pytestmark = pytest.mark.slow


def run_here(output, *flags):
    """One rank in this process (backend none)."""
    env = {"LAUNCH_OUTPUT_DIR": str(output)}
    return main(TINY + ["--output-dir", str(output)] + list(flags), env=env, parts=standins.parts())


def test_one_worker_learns_evaluates_every_example_once_and_exports(tmp_path):
    out = tmp_path / "job"
    # --seed fixes the initial weights (tfcompat.set_graph_seed). The top-1 bound below held for 19 of 20
    # seeds tried (0-9, 1230-1239, final top-1 1.0); with the default 1234 this 8-filter stand-in leaves one
    # class unlearnt (0.73 at every evaluation, training accuracy too): a property of the stand-in.
    assert run_here(out, "--data-path", "tiny:4:256:37", "--epochs", "3", "--learning-rate", "0.4",
                    "--eval-every-epochs", "1", "--keep-checkpoints", "2", "--seed", "1") == 0
    metrics = str(out / "0" / "metrics.jsonl")
    train = records(metrics, "train")
    assert [r["step"] for r in train] == list(range(4, 49, 4))
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]  # learnable data: the loss falls
    assert train[-1]["epoch"] == pytest.approx(3.0)
    plan = optim.lr_plan(standins_args("--learning-rate", "0.4", "--epochs", "3"), 16, 16, 48)
    assert train[2]["lr"] == pytest.approx(optim.lr_at(plan, 11), rel=1e-5)  # lr of the update to step 12
    evals = records(metrics, "eval")
    assert [e["step"] for e in evals] == [16, 32, 48]  # every epoch, the end included once
    assert all(e["count"] == 37 for e in evals)  # 37 = 2 full batches + 5 real of a padded third
    assert evals[-1]["top1"] > 0.9 and evals[-1]["top5"] == 1.0
    phases = [r["phase"] for r in records(metrics, "phase")]
    assert phases[:3] == ["build", "init", "train"] and phases[-2:] == ["export", "done"]
    end = records(metrics, "end")[-1]
    assert end["status"] == "ok" and end["step"] == 48 and end["top1"] == evals[-1]["top1"]
    ckpts = sorted(p for p in os.listdir(str(out / "checkpoints")) if p.endswith(".index"))
    assert ckpts == ["model.ckpt-32.index", "model.ckpt-48.index"]  # keep K=2
    assert not [p for p in os.listdir(str(out / "checkpoints")) if "tmp" in p]
    export_dir = out / "export" / "step_48"
    described = json.loads((export_dir / "preprocessing.json").read_text())
    assert described["num_classes"] == 4 and described["input"]["shape"] == [None, 32, 32, 3]
    probs = run_frozen(str(export_dir / "frozen_graph.pb"), described)
    assert probs.shape == (2, 4) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert os.path.exists(str(export_dir / "saved_model" / "saved_model.pb"))
    assert os.listdir(str(out / "tensorboard"))


def standins_args(*flags):
    from train.config import parse_flags
    return parse_flags(TINY + list(flags))


def test_finetune_to_two_classes_keeps_the_backbone_and_replaces_the_head(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    assert run_here(source, "--data-path", "tiny:4:128:16", "--max-steps", "8", "--no-eval",
                    "--no-export") == 0
    assert run_here(target, "--data-path", "tiny:2:128:16", "--max-steps", "8", "--no-export",
                    "--finetune", str(source / "checkpoints"), "--freeze-backbone") == 0
    before = checkpoint_values(latest(source / "checkpoints"))
    after = checkpoint_values(latest(target / "checkpoints"))
    assert before["logits/kernel"].shape == (8, 4) and after["logits/kernel"].shape == (8, 2)
    assert np.abs(before["batch_normalization/moving_mean"]).sum() > 0  # BN updates ran in training
    for name in ("conv2d/kernel", "batch_normalization/gamma", "batch_normalization/beta",
                 "batch_normalization/moving_mean", "batch_normalization/moving_variance"):
        np.testing.assert_array_equal(before[name], after[name])  # frozen backbone, restored
    assert after["global_step"] == 8  # a new run: its own step count, not the source's
    phases = records(str(target / "0" / "metrics.jsonl"), "phase")
    assert any(p["phase"] == "restore" and p["checkpoint"].endswith("model.ckpt-8") for p in phases)


def test_resume_after_a_kill_continues_step_lr_and_epoch(tmp_path):
    # So many epochs that the run cannot end before it is killed, however fast the machine is.
    flags = ["--data-path", "tiny:4:256:37", "--epochs", "100000", "--save-interval", "8", "--no-eval",
             "--no-export", "--learning-rate", "0.4", "--warmup-epochs", "1"]
    first = start_rank(tmp_path, 0, 1, None, TINY + flags)
    try:
        # Checkpoints rotate (keep K), so wait for any checkpoint at step >= 16, not for one file.
        assert wait_for(lambda: saved_steps(tmp_path / "checkpoints") and
                        max(saved_steps(tmp_path / "checkpoints")) >= 16, first)
    finally:
        first.send_signal(signal.SIGKILL)
        finish(first)
    before = records(str(tmp_path / "0" / "metrics.jsonl"), "train")
    second = start_rank(tmp_path, 0, 1, None, TINY + flags)
    seen = len(before)
    metrics = str(tmp_path / "0" / "metrics.jsonl")
    try:
        assert wait_for(lambda: len(records(metrics, "train")) > seen + 1, second)
    finally:
        second.send_signal(signal.SIGKILL)
        finish(second)
    resumed_from = [p for p in records(metrics, "phase") if p["phase"] == "restore"]
    assert resumed_from
    start = int(resumed_from[-1]["checkpoint"].rsplit("-", 1)[1])
    assert start >= 16 and start % 8 == 0
    after = records(metrics, "train")[seen:]
    assert after[0]["step"] == (start // 4 + 1) * 4  # the next logged step after the checkpoint
    plan = optim.lr_plan(standins_args(*flags), 16, 16, 100000 * 16)
    assert after[0]["lr"] == pytest.approx(optim.lr_at(plan, after[0]["step"] - 1), rel=1e-5)
    assert after[0]["epoch"] == pytest.approx(after[0]["step"] / 16.0)
    assert after[0]["loss"] < 0.8 * before[0]["loss"]  # the curve continues instead of restarting


def test_a_crash_writes_the_error_file_and_exits_non_zero(tmp_path):
    crash = ["--model", "crash"] + TINY[2:]        # one --model: a second one with another value is refused
    assert main(crash + ["--output-dir", str(tmp_path), "--data-path", "tiny:4:256:37", "--max-steps", "2"],
                env={"LAUNCH_OUTPUT_DIR": str(tmp_path)}, parts=standins.parts()) == 1
    record = json.loads((tmp_path / "0" / "error.json").read_text())
    assert record["type"] == "RuntimeError" and "stand-in crash" in record["message"]
    assert "Traceback" in record["traceback"]
    assert records(str(tmp_path / "0" / "metrics.jsonl"), "end")[-1]["status"] == "error"


@pytest.fixture(scope="module")
def two_launched_workers(tmp_path_factory):
    """Two ranks started by the launcher (its real environment), 12 steps: run once, asserted by two tests.
    The last step is also a --save-interval step, so its checkpoint is written before the BN statistics
    are re-estimated and must be written again after."""
    out = tmp_path_factory.mktemp("two_workers") / "job"
    proc = subprocess.run(
        [sys.executable, "-m", "launcher", "--devices", "2", "--backend", "cpu", "--output-dir", str(out),
         "--plot", "off", "--", sys.executable, WORKER] + TINY +
        ["--data-path", "tiny:4:256:37", "--max-steps", "12", "--save-interval", "6", "--no-export"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    return proc, out


def test_two_workers_stay_identical_and_count_each_eval_example_once(two_launched_workers):
    proc, out = two_launched_workers
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ends = [records(out / str(r) / "metrics.jsonl", "end")[-1] for r in range(2)]
    assert ends[0]["weights_checksum"] == ends[1]["weights_checksum"]  # bit-identical weights
    # ... including the BN statistics each rank re-estimated from its own share, averaged over ranks
    assert all(records(out / str(r) / "metrics.jsonl", "bn_recalibrate") for r in range(2))
    evals = [records(out / str(r) / "metrics.jsonl", "eval")[-1] for r in range(2)]
    assert [e["count"] for e in evals] == [37, 37]  # global count on every rank
    assert sorted(e["local_count"] for e in evals) == [18, 19]  # each example once, remainder kept
    assert evals[0]["top1"] == evals[1]["top1"]
    assert records(out / "0" / "metrics.jsonl", "train")[0]["batch_size"] == 16
    assert not os.path.exists(str(out / "1" / "error.json"))
    assert latest(out / "checkpoints").endswith("model.ckpt-12")  # rank 0 wrote it
    # the checkpoint holds the weights both ranks end with, re-estimated statistics included
    assert model_checksum(checkpoint_values(latest(out / "checkpoints"))) == pytest.approx(
        ends[0]["weights_checksum"], rel=1e-12)


def test_two_workers_through_the_launcher_report_the_global_evaluation(two_launched_workers):
    proc, out = two_launched_workers
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    evals = [rank["eval"] for rank in summary["ranks"]]
    assert [e["count"] for e in evals] == [37, 37] and sorted(e["local_count"] for e in evals) == [18, 19]
    assert summary["modelzoo"]["TrainAccuracy"] == pytest.approx(evals[0]["top1"], abs=1e-4)
    ends = [records(out / str(r) / "metrics.jsonl", "end")[-1] for r in range(2)]
    assert ends[0]["weights_checksum"] == ends[1]["weights_checksum"]
    assert "INFO:tensorflow:loss = " in (out / "0" / "train_0.log").read_text()
