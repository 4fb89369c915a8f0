"""The picture of a finished run: loss, accuracy and throughput per rank, read from the ranks' metrics.jsonl.

People look at a run's curves before its numbers; the report calls `draw_run` at the end of a successful run.
matplotlib is imported lazily (Agg backend) so that the launcher still starts in well under a second.
"""
import glob
import os

from launcher.metrics import is_number, read_records, run_records

PICTURE_NAME = "run.png"


def read_metrics(path):
    """The JSON records of one metrics.jsonl file, the whole run across resumes (metrics.run_records); a
    torn or foreign line is skipped, not fatal."""
    return run_records(read_records(path))


def metrics_files(output_dir):
    """Every `<output>/<device>/metrics.jsonl` of a job, in a stable order."""
    return sorted(glob.glob(os.path.join(output_dir, "*", "metrics.jsonl")))


def run_series(output_dir):
    """Series per rank: {rank: {"step", "loss", "accuracy", "images_per_sec", "eval_step", "top1"}}.

    Pure data gathering (no drawing) so that what the picture shows can be checked on its own.
    """
    series = {}
    for path in metrics_files(output_dir):
        device = os.path.basename(os.path.dirname(path))
        for record in read_metrics(path):
            rank = record.get("rank", device)
            entry = series.setdefault(rank, {"step": [], "loss": [], "accuracy": [], "images_per_sec": [],
                                             "eval_step": [], "top1": []})
            event = record.get("event")
            step = record.get("step")
            if event == "train" and is_number(step):
                entry["step"].append(step)
                entry["loss"].append(record["loss"] if is_number(record.get("loss")) else None)
                entry["accuracy"].append(record["accuracy"] if is_number(record.get("accuracy")) else None)
                ips = record.get("images_per_sec")
                entry["images_per_sec"].append(ips if is_number(ips) else None)
            elif event == "eval" and is_number(step) and is_number(record.get("top1")):
                entry["eval_step"].append(step)
                entry["top1"].append(record["top1"])
    return series


def _pairs(xs, ys):
    kept = [(x, y) for x, y in zip(xs, ys) if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def _title(summary):
    """One line naming the run: network, ranks and backend, batch, and the final numbers when known."""
    summary = summary or {}
    fields = summary.get("modelzoo") or {}
    parts = [str(fields.get("Network") or summary.get("model") or "training run")]
    ranks = fields.get("RankSize") or summary.get("world_size")
    if ranks:
        where = " on %s" % summary["backend"] if summary.get("backend") else ""
        parts.append("%s rank(s)%s" % (ranks, where))
    if fields.get("BatchSize"):
        parts.append("batch %s per rank" % fields["BatchSize"])
    if is_number(fields.get("ActualFPS")):
        parts.append("%.1f images/s" % fields["ActualFPS"])
    if is_number(fields.get("TrainAccuracy")):
        evaluated = any(rank.get("eval") for rank in summary.get("ranks") or [])
        name = "validation top-1" if evaluated else "train accuracy"
        parts.append("%s %.3f" % (name, fields["TrainAccuracy"]))
    return "  |  ".join(parts)


def _rank_key(rank):
    return (0, rank, "") if isinstance(rank, int) else (1, 0, str(rank))


def draw_run(output_dir, summary=None):
    """Draw the run's curves into `<output_dir>/run.png` and return that path.

    `summary` (the report's summary dict) only labels the picture. Raises ValueError when no rank
    logged a training step, because an empty picture would look like a broken run.
    """
    series = run_series(output_dir)
    ranks = sorted((r for r in series if series[r]["step"]), key=_rank_key)
    if not ranks:
        raise ValueError("no training steps in %s/*/metrics.jsonl: nothing to draw" % output_dir)

    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (loss_ax, acc_ax, speed_ax) = pyplot.subplots(1, 3, figsize=(15, 4.2))
    try:
        for rank in ranks:
            entry = series[rank]
            label = "rank %s" % rank
            loss_ax.plot(*_pairs(entry["step"], entry["loss"]), label=label, linewidth=1)
            acc_ax.plot(*_pairs(entry["step"], entry["accuracy"]), label="train, %s" % label, linewidth=1)
            speed_ax.plot(*_pairs(entry["step"], entry["images_per_sec"]), label=label, linewidth=1)
        evals = [(rank, series[rank]) for rank in sorted(series, key=_rank_key) if series[rank]["top1"]]
        if evals:
            rank, entry = evals[0]
            acc_ax.plot(entry["eval_step"], entry["top1"], "o-", color="black", label="validation top-1")
        loss_ax.set_title("loss")
        acc_ax.set_title("accuracy")
        acc_ax.set_ylim(0.0, 1.0)
        speed_ax.set_title("throughput per rank (images/s)")
        speed_ax.set_ylim(bottom=0.0)
        for axis in (loss_ax, acc_ax, speed_ax):
            axis.set_xlabel("global step")
            axis.grid(alpha=0.3)
            axis.legend(fontsize="small")
        figure.suptitle(_title(summary))
        figure.tight_layout()
        path = os.path.join(output_dir, PICTURE_NAME)
        figure.savefig(path, dpi=90)
    finally:
        pyplot.close(figure)
    return path
