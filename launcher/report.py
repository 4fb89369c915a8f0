"""The end of a job: summary.json and the ModelZoo summary fields on success (computed from every rank, not
from the last rank's log), or a root-cause block naming the rank that failed first and why."""
import os
import platform
from typing import NamedTuple, Optional

from contract import atomic
from contract.records import to_json
from launcher.files import rotate
from launcher.metrics import is_number, read_error_file, tail_lines

MODELZOO_KEYS = ("Network", "RankSize", "BatchSize", "DeviceType", "CaseName", "ActualFPS", "TrainingTime",
                 "TrainAccuracy", "ActualLoss", "E2ETrainingTime")


class RankStats(NamedTuple):
    """One rank's numbers in summary.json."""
    rank: int
    device: str
    images_per_sec: Optional[float]
    final_loss: Optional[float]
    final_accuracy: Optional[float]
    steps: Optional[int]
    batch_size: Optional[int]
    wall_time: float
    eval: Optional[dict]
    fps_method: Optional[str] = None   # steady | warmup | mean: how images_per_sec was computed
    segments: int = 0                  # processes that trained in this run (resumes and restarts)


FPS_STEADY = ("images/s = images / seconds of every logged training window of the whole run (all resumes and "
              "restarts), the first step of each process (graph build, warm-up) left out; summed over ranks")
FPS_WARMUP = "images/s of the first step only (the run was too short for a steady window): includes warm-up"
FPS_MEAN = ("mean of the images_per_sec the worker logged, its first interval left out when there are 3 "
            "or more")


def rank_stats(spec, records, started, ended):
    """One rank's numbers from its metrics records of the whole run (metrics.run_records)."""
    trains = [r for r in records if r.get("event") == "train"]
    timed = [r for r in trains if is_number(r.get("timed_steps")) and is_number(r.get("timed_seconds"))
             and is_number(r.get("batch_size"))]
    steady = [r for r in timed if not r.get("warmup")]
    basis = steady or timed
    if basis:
        seconds = sum(r["timed_seconds"] for r in basis)
        images = sum(r["timed_steps"] * r["batch_size"] for r in basis)
        rate = images / seconds if seconds > 0 else None
        method = "steady" if steady else "warmup"
    else:                       # a -- CMD worker's own records: only their rates
        speeds = [float(r["images_per_sec"]) for r in trains if is_number(r.get("images_per_sec"))]
        if len(speeds) > 2:
            speeds = speeds[1:]      # the first logged interval holds warm-up (graph build, first batches)
        rate = sum(speeds) / len(speeds) if speeds else None
        method = "mean" if speeds else None
    last = trains[-1] if trains else {}
    end = [r for r in records if r.get("event") == "end"]
    evals = [r for r in records if r.get("event") == "eval"]
    return RankStats(
        rank=spec.rank, device=spec.device,
        images_per_sec=round(rate, 2) if is_number(rate) else None, fps_method=method,
        final_loss=last.get("loss"), final_accuracy=last.get("accuracy"),
        steps=last.get("step"), batch_size=last.get("batch_size"),
        segments=len([r for r in records if r.get("event") == "phase" and r.get("phase") == "train"]),
        wall_time=round(end[-1]["wall_time"], 2) if end and is_number(end[-1].get("wall_time")) else
        round((ended or started) - started, 2),
        eval=evals[-1] if evals else None,
    )


def summarize(plan, ranks_stats, e2e_seconds, restarts):
    """summary.json contents: per-rank and total images/s, final loss, wall times, the ModelZoo fields."""
    speeds = [s.images_per_sec for s in ranks_stats if is_number(s.images_per_sec)]
    world = plan.world_size
    total = sum(speeds)
    estimated = bool(speeds) and len(speeds) < world
    if estimated:                 # other hosts' metrics are not visible here: scale the local mean
        total = total / len(speeds) * world
    losses = [s.final_loss for s in ranks_stats if is_number(s.final_loss)]
    loss = sum(losses) / len(losses) if losses else None
    evals = [s.eval for s in ranks_stats if s.eval and is_number(s.eval.get("top1"))]
    accs = [s.final_accuracy for s in ranks_stats if is_number(s.final_accuracy)]
    accuracy = evals[0]["top1"] if evals else (sum(accs) / len(accs) if accs else None)
    source = "validation top-1" if evals else ("training batches (no validation split was evaluated)"
                                               if accuracy is not None else None)
    methods = set(s.fps_method for s in ranks_stats if s.fps_method)
    method = FPS_WARMUP if "warmup" in methods else FPS_MEAN if "mean" in methods else \
        FPS_STEADY if methods else None
    batch = plan.batch_size or next((s.batch_size for s in ranks_stats if s.batch_size), None)
    fps = round(total, 2) if speeds else None
    fields = [
        ("Network", plan.network), ("RankSize", world), ("BatchSize", batch),
        ("DeviceType", platform.machine()),
        ("CaseName", "%s_bs%s_%dp_%s" % (plan.network, batch if batch is not None else "NA", world,
                                         plan.case)),
        ("ActualFPS", fps),
        # ms per global step: the global batch over the global throughput (ModelZoo's 8p scripts divide
        # only the per-rank batch, which is not a step time)
        ("TrainingTime", round(batch * world * 1000.0 / fps, 2) if batch and fps else None),
        ("TrainAccuracy", round(accuracy, 4) if is_number(accuracy) else None),
        ("ActualLoss", round(loss, 4) if is_number(loss) else None),
        ("E2ETrainingTime", int(round(e2e_seconds))),
    ]
    modelzoo = dict(fields)
    return {
        "status": "ok", "job_id": plan.job_id, "backend": plan.backend, "world_size": world,
        "nnodes": plan.nnodes, "node_rank": plan.node_rank, "restarts": restarts,
        "total_images_per_sec": fps, "fps_estimated_from_local_ranks": estimated, "fps_method": method,
        "train_accuracy_source": source, "trainer": plan.trainer,
        "tensorboard": plan.tensorboard_dir,
        "final_loss": modelzoo["ActualLoss"], "train_accuracy": modelzoo["TrainAccuracy"],
        "e2e_seconds": round(e2e_seconds, 2), "ranks": to_json(ranks_stats), "modelzoo": modelzoo,
        "modelzoo_order": list(MODELZOO_KEYS),
    }


def modelzoo_text(summary):
    """`Key = value` lines in ModelZoo's order."""
    fields = summary["modelzoo"]
    return "".join("%s = %s\n" % (key, _show(fields[key])) for key in MODELZOO_KEYS)


def _show(value):
    return "NA" if value is None else value


def write_success(plan, summary):
    """summary.json next to launch.json; <CaseName>.log in every local rank's directory (ModelZoo layout)."""
    path = os.path.join(plan.node_dir, "summary.json")
    rotate(path)
    atomic.write_json(path, summary)
    case_logs = []
    for spec in plan.ranks:
        case_log = os.path.join(spec.rank_dir, "%s.log" % summary["modelzoo"]["CaseName"])
        rotate(case_log)
        atomic.write_text(case_log, modelzoo_text(summary))
        case_logs.append(case_log)
    return path, case_logs


def final_result_text(summary):
    """The closing lines ModelZoo's scripts print (values last on their line, as their greps expect), then
    what the accuracy was measured on."""
    fields = summary["modelzoo"]
    text = ("------------------ Final result ------------------\n"
            "Final Performance images/sec : %s\n"
            "Final Train Accuracy : %s\n"
            "E2E Training Duration sec : %s\n" % (_show(fields["ActualFPS"]), _show(fields["TrainAccuracy"]),
                                                  fields["E2ETrainingTime"]))
    if summary.get("train_accuracy_source") and fields["TrainAccuracy"] is not None:
        text += "Train Accuracy measured on : %s\n" % summary["train_accuracy_source"]
    return text


def root_cause_text(plan, failure, log_lines=20):
    """The block printed when a job fails: who failed first, how, the tail of its log, its error file."""
    spec = next((s for s in plan.ranks if s.rank == failure.rank), None)
    lines = ["=" * 20 + " job failed " + "=" * 20,
             "first failure: rank %s (device %s): %s"
             % (failure.rank, failure.device, failure.detail)]
    if spec is not None:
        lines.append("log: %s" % spec.log_path)
        error = read_error_file(spec.error_file)
        if error:
            lines.append("error (%s): %s: %s" % (spec.error_file, error.get("type", "?"),
                                                 error.get("message", "")))
            traceback = (error.get("traceback") or "").rstrip()
            if traceback:
                lines.append("traceback:")
                lines.extend("  " + line for line in traceback.splitlines()[-15:])
        tail = tail_lines(spec.log_path, log_lines)
        if tail:
            lines.append("last %d line(s) of its log:" % len(tail))
            lines.extend("  | " + line for line in tail)
    return "\n".join(lines) + "\n"


def write_failure(plan, failure, outcomes):
    """failure.json next to launch.json: the root cause and every rank's end, for tools and for later."""
    path = os.path.join(plan.node_dir, "failure.json")
    rotate(path)
    spec = next((s for s in plan.ranks if s.rank == failure.rank), None)
    record = {"status": "failed", "job_id": plan.job_id, "first_failure": failure,
              "error": read_error_file(spec.error_file) if spec else None, "ranks": outcomes}
    return atomic.write_json(path, to_json(record))


def draw_picture(output_dir, summary):
    """The run's PNG via launcher.plot (matplotlib, imported only now); None with a reason if unavailable."""
    from launcher import plot
    try:
        return plot.draw_run(output_dir, summary), None
    except Exception as error:  # a picture must never fail a finished job
        return None, "no picture: %s: %s" % (type(error).__name__, error)
