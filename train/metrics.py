"""Metrics out of the worker: metrics.jsonl for the launcher, log lines for people, TensorBoard.

Why: files are the source of truth for progress, stall detection and the final report. Every record is
one JSON line, appended and flushed at once (docs/CONTRACTS.md). Humans read the rank's log, which the
launcher captures from stdout; the lines follow the TF estimator spellings that ModelZoo's test scripts
grep (`loss = `, `global_step/sec: `, `accuracy = `).
"""
import json
import logging
import os
import sys
import time

log = logging.getLogger("train")


def setup_logging():
    """Log lines to stdout (the launcher writes them to output/<device>/train_<device>.log)."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl and flushes it at once."""

    def __init__(self, path, rank):
        self.path = path
        self.rank = rank
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self._handle = open(path, "a")

    def write(self, event, **fields):
        record = {"event": event, "time": round(time.time(), 3), "rank": self.rank}
        record.update(fields)
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()
        return record

    def phase(self, name, **fields):
        return self.write("phase", phase=name, **fields)

    def close(self):
        if not self._handle.closed:
            self._handle.close()


def train_record(step, total_steps, epoch, loss, accuracy, lr, images_per_sec, step_time, batch_size,
                 skipped_images=0, timed_steps=None, timed_seconds=None, warmup=False, overflow_steps=None,
                 loss_scale=None):
    """The fields of a `train` record (pure); `skipped_images` (this rank's running count of unreadable
    images dropped) only once there is one. `timed_steps` steps took `timed_seconds` (the speed's basis);
    `warmup`: they are only the first step of the process (graph build), not a steady rate. With loss
    scaling `overflow_steps` (steps of this run whose update was skipped for a gradient overflow; each still
    counts as a step) and `loss_scale`."""
    record = {"step": int(step), "total_steps": int(total_steps), "epoch": round(float(epoch), 4),
              "loss": round(float(loss), 6), "accuracy": round(float(accuracy), 6), "lr": float(lr),
              "images_per_sec": round(float(images_per_sec), 2), "step_time": round(float(step_time), 5),
              "batch_size": int(batch_size)}
    if timed_steps is not None:
        record["timed_steps"] = int(timed_steps)
        record["timed_seconds"] = round(float(timed_seconds), 4)
    if warmup:
        record["warmup"] = True
    if skipped_images:
        record["skipped_images"] = int(skipped_images)
    if overflow_steps is not None:
        record["overflow_steps"] = int(overflow_steps)
    if loss_scale is not None:
        record["loss_scale"] = float(loss_scale)
    return record


def human_train_lines(record, global_images_per_sec):
    """A friendly progress line plus the estimator-style lines ModelZoo scripts parse (pure)."""
    steps_per_sec = 1.0 / record["step_time"] if record["step_time"] > 0 else 0.0
    skipped = " skipped %d" % record["skipped_images"] if record.get("skipped_images") else ""
    if record.get("overflow_steps"):
        skipped += " overflow-skipped steps %d (loss scale %g)" % (record["overflow_steps"],
                                                                   record.get("loss_scale", 0.0))
    return [
        "step %d/%d epoch %.2f loss %.4f acc %.3f lr %.6f %.1f img/s (all ranks %.1f) %.4f s/step%s" % (
            record["step"], record["total_steps"], record["epoch"], record["loss"], record["accuracy"],
            record["lr"], record["images_per_sec"], global_images_per_sec, record["step_time"], skipped),
        "INFO:tensorflow:loss = %.6f, step = %d (%.3f sec)" % (
            record["loss"], record["step"], record["step_time"]),
        "INFO:tensorflow:global_step/sec: %.4f" % steps_per_sec,
    ]


def human_skipped_line(count, rank):
    """The line logged when the count of skipped images grows (pure)."""
    return "rank %s: skipped %d unreadable or corrupt image%s so far (list them with: python -m data " \
           "--check DATA_PATH)" % (rank, count, "" if count == 1 else "s")


def human_overflow_line(count, step, loss_scale, rank):
    """The line logged when gradient overflows skipped more updates (pure)."""
    return "rank %s: %d step%s so far skipped its update for a gradient overflow (step %d, loss scale now " \
           "%g); dynamic loss scaling lowers the scale until the gradients fit" \
           % (rank, count, "" if count == 1 else "s", step, loss_scale)


def human_eval_line(step, top1, top5, count):
    """The estimator's eval line: ModelZoo takes field 9 of the line with 'accuracy =' (pure)."""
    return "INFO:tensorflow:Saving dict for global step %d: accuracy = %.6f, accuracy_top_5 = %.6f, " \
           "global_step = %d, count = %d" % (step, top1, top5, step, count)


class Summaries:
    """TensorBoard scalars from rank 0, written as Summary protos (no extra ops in the training graph)."""

    def __init__(self, logdir, graph=None):
        from tfcompat import tf  # lazily: flag mistakes are reported before TensorFlow loads
        self._tf = tf
        self._writer = tf.compat.v1.summary.FileWriter(logdir, graph=graph)

    def scalars(self, step, values):
        tf = self._tf
        summary = tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in sorted(values.items())
        ])
        self._writer.add_summary(summary, int(step))

    def close(self):
        self._writer.flush()
        self._writer.close()
