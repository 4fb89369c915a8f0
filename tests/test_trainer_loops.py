"""Step accounting with loss scaling and loops of steps, end to end with real TensorFlow on CPU and with
the fake Ascend adapter (tests/fake_npu): an overflow-skipped update still counts as a step, and
logging, evaluation and checkpoints happen once per loop, never twice for one step nor passing one over.

The overflow is injected: the stand-in model `overflow` (tests/helpers/trainer_parts.py) multiplies its
gradient by inf at chosen steps, which is what an fp16 gradient overflow looks like to a loss-scaling
optimizer while the float32 loss stays finite.
"""
import json
import logging
import os
import re
import sys

import pytest
from helpers import ROOT, records
from helpers import trainer_parts as standins
from helpers.trainer_job import saved_steps

from train.__main__ import main

FAKE = os.path.join(ROOT, "tests", "fake_npu")
TINY = ["--image-size", "32", "--batch-size", "16", "--data-path", "tiny:4:256:37", "--no-export",
        "--learning-rate", "0.4"]

pytestmark = pytest.mark.slow


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def logged():
    """The trainer's log lines (its handler keeps whatever stdout it first saw, so capsys cannot)."""
    handler = _Lines()
    logger = logging.getLogger("train")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def run_here(output, env=None, *flags):
    env = dict(env or {}, LAUNCH_OUTPUT_DIR=str(output))
    return main(TINY + ["--output-dir", str(output)] + list(flags), env=env, parts=standins.parts())


def test_overflow_skipped_steps_count_once_and_are_reported(tmp_path, logged):
    # Updates starting at global steps 1, 2 and 5 overflow; dynamic loss scaling skips them.
    assert run_here(tmp_path, None, "--model", "overflow", "--model-option", "overflow_at=1:2:5",
                    "--loss-scale", "dynamic", "--max-steps", "12", "--log-every", "2",
                    "--save-interval", "4", "--keep-checkpoints", "10", "--eval-every-epochs", "0.25") == 0
    metrics = str(tmp_path / "0" / "metrics.jsonl")
    train = records(metrics, "train")
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
    assert [r["overflow_steps"] for r in train] == [1, 2, 3, 3, 3, 3]
    assert train[-1]["loss_scale"] == 2.0 ** 15 / 8  # TF's DynamicLossScale: halved at each overflow
    assert [e["step"] for e in records(metrics, "eval")] == [4, 8, 12]
    assert sorted(saved_steps(tmp_path / "checkpoints")) == [4, 8, 12]
    end = records(metrics, "end")[-1]
    assert end["status"] == "ok" and end["step"] == 12 and end["overflow_steps"] == 3
    assert any("3 steps so far skipped its update for a gradient overflow" in line for line in logged)


@pytest.mark.host_kernels
def test_without_loss_scaling_the_same_overflow_stops_the_run_at_that_step(tmp_path):
    # The update starting at step 1 is applied with non-finite gradients. The loss need not show it (with
    # oneDNN, ReLU turns the NaN activations into 0 and the loss stays finite), so the gradients are checked.
    assert run_here(tmp_path, None, "--model", "overflow", "--model-option", "overflow_at=1",
                    "--max-steps", "6", "--no-eval") == 2
    error = json.loads((tmp_path / "0" / "error.json").read_text())
    assert re.search(r"the gradients became (nan|inf) at step 2 and were applied", error["message"])
    assert not (tmp_path / "checkpoints").exists() or not saved_steps(tmp_path / "checkpoints")


def test_loops_of_steps_on_cpu_log_evaluate_and_save_once_per_loop(tmp_path, logged):
    assert run_here(tmp_path, None, "--model", "tiny", "--iterations-per-loop", "3", "--max-steps", "10",
                    "--log-every", "2", "--save-interval", "4", "--keep-checkpoints", "10",
                    "--eval-every-epochs", "0.5") == 0
    metrics = str(tmp_path / "0" / "metrics.jsonl")
    train = records(metrics, "train")
    assert [r["step"] for r in train] == [3, 6, 9, 12]  # 10 steps rounded up to whole loops of 3
    assert all(r["total_steps"] == 12 for r in train)
    assert [e["step"] for e in records(metrics, "eval")] == [9, 12]  # crossed 8, then the end
    assert sorted(saved_steps(tmp_path / "checkpoints")) == [6, 9, 12]  # crossed 4, 8, then the end
    assert any("iterations per loop 3: 3 steps per loop on the host" in line for line in logged)


@pytest.mark.parametrize("branch", ["master", "development"])
def test_the_fake_ascend_adapter_runs_the_trainers_loop_and_loss_scaling(tmp_path, monkeypatch, logged,
                                                                          branch):
    for name in list(sys.modules):
        if name.split(".")[0] in ("npu_bridge", "hccl"):
            del sys.modules[name]
    monkeypatch.syspath_prepend(FAKE)
    env = {"LAUNCH_BACKEND": "npu", "RANK_ID": "0", "RANK_SIZE": "1", "JOB_ID": "10087",
           "FAKE_NPU_BRANCH": branch}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        code = run_here(tmp_path, env, "--model", "overflow", "--model-option", "overflow_at=1:2:5",
                        "--iterations_per_loop", "2", "--max-steps", "8", "--log-every", "2", "--no-eval",
                        "--profiling", "--over_dump")
        recorded = sys.modules["npu_bridge"].FAKE_CALLS  # the fake the backend imported
        calls = [name for name, _ in recorded]
        loops = [d for name, d in recorded if name == "util.set_iteration_per_loop"]
    finally:
        for name in list(sys.modules):
            if name.split(".")[0] in ("npu_bridge", "hccl"):
                del sys.modules[name]
    assert code == 0
    assert calls.index("npu_ops.initialize_system") < calls.index("util.set_iteration_per_loop")
    assert "ExponentialUpdateLossScaleManager" in calls and "NPULossScaleOptimizer" in calls
    assert [d["iterations_per_loop"] for d in loops] == [2]
    metrics = str(tmp_path / "0" / "metrics.jsonl")
    train = records(metrics, "train")
    # The fake runs IterationOp once (it cannot loop like GE), so each loop advances global_step by 1;
    # the trainer counts global_step and logs each logging interval exactly once all the same.
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert train[-1]["overflow_steps"] == 3
    assert train[-1]["loss_scale"] == 2.0 ** 31  # 2**32, halved after decr_every_n_nan_or_inf=2 overflows
    assert os.path.isdir(str(tmp_path / "0" / "profiling"))
    assert os.path.isdir(str(tmp_path / "0" / "overflow_dump"))
    assert any("the device did not loop" in line for line in logged)
