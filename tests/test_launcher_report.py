"""The summary covers the whole run across resumes and restarts; its speed leaves warm-up out and says how it
was computed; an accuracy without a validation split is labelled as the training batches'."""
from types import SimpleNamespace

from launcher import report
from launcher.metrics import run_records

SPEC = SimpleNamespace(rank=0, device="0")
PLAN = SimpleNamespace(world_size=1, network="net", case="acc", job_id="1", backend="cpu", nnodes=1,
                       node_rank=0, batch_size=10, trainer=None, tensorboard_dir="/out/tensorboard")


def train(step, seconds, steps, warmup=False, accuracy=0.5):
    record = {"event": "train", "step": step, "loss": 1.0 / step, "accuracy": accuracy, "batch_size": 10,
              "timed_steps": steps, "timed_seconds": seconds, "images_per_sec": 10.0 * steps / seconds}
    if warmup:
        record["warmup"] = True
    return record


def start(step):
    return {"event": "phase", "phase": "train", "start_step": step}


def test_a_resumed_run_counts_every_segment_once_and_drops_the_steps_done_again():
    records = [start(0), train(4, 3.0, 3), train(8, 4.0, 4), train(12, 4.0, 4),   # killed after step 12
               start(8), train(12, 3.0, 3), train(16, 4.0, 4)]                    # resumed from ckpt 8
    kept = run_records(records)
    assert [r["step"] for r in kept if r["event"] == "train"] == [4, 8, 12, 16]
    stats = report.rank_stats(SPEC, kept, 0.0, 1.0)
    assert stats.images_per_sec == 10.0 and stats.segments == 2      # 140 images / 14 s
    summary = report.summarize(PLAN, [stats], 20.0, 0)
    assert summary["modelzoo"]["ActualFPS"] == 10.0 and summary["fps_method"] == report.FPS_STEADY
    assert summary["modelzoo"]["TrainingTime"] == 1000.0                   # ms per global step of 10 images


def test_a_warm_up_window_never_counts_when_a_steady_one_exists():
    stats = report.rank_stats(SPEC, [start(0), train(1, 30.0, 1, warmup=True), train(5, 4.0, 4)], 0, 1)
    assert stats.images_per_sec == 10.0
    only = report.rank_stats(SPEC, [start(0), train(1, 2.0, 1, warmup=True)], 0, 1)
    summary = report.summarize(PLAN, [only], 3.0, 0)
    assert summary["fps_method"] == report.FPS_WARMUP and summary["modelzoo"]["ActualFPS"] == 5.0


def test_accuracy_without_validation_is_labelled_as_the_training_batches():
    stats = report.rank_stats(SPEC, [start(0), train(4, 4.0, 4, accuracy=0.75)], 0, 1)
    summary = report.summarize(PLAN, [stats], 5.0, 0)
    assert summary["modelzoo"]["TrainAccuracy"] == 0.75
    assert summary["train_accuracy_source"].startswith("training batches")
    assert "Train Accuracy measured on : training batches" in report.final_result_text(summary)
    evaluated = stats._replace(eval={"top1": 0.5})
    assert report.summarize(PLAN, [evaluated], 5.0, 0)["train_accuracy_source"] == "validation top-1"


def test_moving_aside_takes_the_first_free_name_and_renames_no_older_copy(tmp_path):
    from train import precheck
    for index in (1, 2):
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "mark").write_text(str(index))
        moved = precheck.move_aside(str(tmp_path / "checkpoints"))
        assert moved == str(tmp_path / ("checkpoints.%d" % index))
    assert (tmp_path / "checkpoints.1" / "mark").read_text() == "1"       # untouched by the second move
    assert precheck.move_aside(str(tmp_path / "checkpoints")) is None
