"""--resume auto|never|PATH and --eval-only in the trainer (one rank in-process, tiny stand-ins): a finished
run trains nothing, never moves the old checkpoints aside, PATH continues that checkpoint's step, eval-only
evaluates without training; speed records leave each process's first step out."""
import os

import pytest
from helpers import records
from helpers import trainer_parts as standins

from train.__main__ import main

TINY = ["--model", "tiny", "--image-size", "32", "--batch-size", "16", "--log-every", "4", "--no-export",
        "--data-path", "tiny:4:128:37", "--learning-rate", "0.4"]

pytestmark = pytest.mark.slow


def run_here(output, *flags):
    env = {"LAUNCH_OUTPUT_DIR": str(output)}
    return main(TINY + ["--output-dir", str(output)] + list(flags), env=env, parts=standins.parts())


def run_records(output, event=None):
    return records(str(output / "0" / "metrics.jsonl"), event)


def steps_saved(directory):
    return sorted(int(n[len("model.ckpt-"):-len(".index")]) for n in os.listdir(str(directory))
                  if n.startswith("model.ckpt-") and n.endswith(".index"))


def test_resume_modes_and_eval_only(tmp_path):
    out = tmp_path / "run"
    assert run_here(out, "--max-steps", "8", "--no-eval") == 0
    trains = run_records(out, "train")
    assert [r["step"] for r in trains] == [4, 8]
    # speed: the first step of the process is left out of the first window, and only of it
    assert [r["timed_steps"] for r in trains] == [3, 4] and not any(r.get("warmup") for r in trains)
    assert trains[0]["images_per_sec"] == pytest.approx(16 * 3 / trains[0]["timed_seconds"], rel=0.02)

    # auto (the default) on a finished run: nothing is trained, the end record says so
    assert run_here(out, "--max-steps", "8", "--no-eval") == 0
    assert len(run_records(out, "train")) == 2
    assert run_records(out, "end")[-1]["status"] == "finished"

    # auto with a longer run: continues at step 8
    assert run_here(out, "--max-steps", "12", "--no-eval") == 0
    assert [r["step"] for r in run_records(out, "train")] == [4, 8, 12]
    assert steps_saved(out / "checkpoints")[-1] == 12

    # PATH: continues from that checkpoint's step (step and optimizer state restored)
    prefix = str(out / "checkpoints" / "model.ckpt-8")
    assert run_here(out, "--max-steps", "12", "--no-eval", "--resume", prefix) == 0
    restore = [r for r in run_records(out, "phase") if r["phase"] == "restore"][-1]
    assert restore["checkpoint"] == prefix
    assert [r for r in run_records(out, "phase") if r["phase"] == "train"][-1]["start_step"] == 8

    # eval-only: evaluates the newest checkpoint, trains nothing, saves nothing
    before = len(run_records(out, "train"))
    assert run_here(out, "--max-steps", "12", "--eval-only") == 0
    assert len(run_records(out, "train")) == before
    evaluation = run_records(out, "eval")[-1]
    assert evaluation["step"] == 12 and evaluation["count"] == 37
    assert run_records(out, "end")[-1]["eval_only"] is True

    # never: the old checkpoints are moved aside (kept), the run starts at step 0
    assert run_here(out, "--max-steps", "4", "--no-eval", "--resume", "never") == 0
    assert steps_saved(out / "checkpoints.1")[-1] == 12
    assert steps_saved(out / "checkpoints") == [4]
    assert [r for r in run_records(out, "phase") if r["phase"] == "train"][-1]["start_step"] == 0


def test_a_one_step_run_marks_its_only_speed_as_warm_up(tmp_path):
    out = tmp_path / "run"
    assert run_here(out, "--max-steps", "1", "--no-eval") == 0
    (record,) = run_records(out, "train")
    assert record["warmup"] is True and record["timed_steps"] == 1


def test_eval_only_without_a_checkpoint_is_one_line(tmp_path, capsys):
    assert run_here(tmp_path / "run", "--eval-only") == 2
    assert "--eval-only needs a validation split and a checkpoint" in capsys.readouterr().err
