"""Checkpoints: save (rank 0), resume (every rank), and the partial restore for transfer learning.

Why: a restarted job must continue the same loss curve (same global step, optimizer slots and LR),
and a fine-tuned model must keep everything it can from another run while its classifier head may
have a different class count. Atomicity: TF's V2 saver writes the data under a temporary name and
renames it, and rewrites the `checkpoint` index file atomically only after the data exists, so
`latest` never names a half-written checkpoint. The run's description (`run_meta.json`, model,
classes, image size) is written beside it the same way (tmp + rename) and checked before resuming.
"""
import json
import os

from contract import atomic
from tfcompat import tf
from train.errors import TrainError

PREFIX = "model.ckpt"
META_FILE = "run_meta.json"


def latest(checkpoint_dir):
    """Prefix of the newest complete checkpoint in a directory, or None."""
    if not checkpoint_dir or not os.path.isdir(checkpoint_dir):
        return None
    return tf.compat.v1.train.latest_checkpoint(checkpoint_dir)


def step_of(prefix):
    """The global step in a checkpoint prefix `.../model.ckpt-1200` (pure)."""
    try:
        return int(prefix.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def resolve(path):
    """A checkpoint prefix from a file prefix, a `.index`/`.data` file name, or a directory."""
    if os.path.isdir(path):
        found = latest(path)
        if not found:
            raise TrainError("no checkpoint in directory %s (it needs a `checkpoint` index file); "
                             "pass a checkpoint prefix such as DIR/model.ckpt-1000" % path)
        return found
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if ".data-" in path:
        path = path.split(".data-")[0]
    if not os.path.exists(path + ".index"):
        raise TrainError("checkpoint %s not found (no %s.index); check --finetune" % (path, path))
    return path


def checkpoint_shapes(prefix):
    """{variable name: shape list} stored in a checkpoint."""
    return {name: list(shape) for name, shape in tf.compat.v1.train.list_variables(prefix)}


def plan_partial_restore(wanted, stored):
    """Which variables to take from a checkpoint (pure).

    `wanted` and `stored` map names to shapes. Returns (names to restore, {name: reason skipped}).
    A variable is taken when the checkpoint has the same name with the same shape; the classifier
    head of a model with another class count is skipped for its shape.
    """
    take, skipped = [], {}
    for name in sorted(wanted):
        if name not in stored:
            skipped[name] = "not in checkpoint"
        elif list(stored[name]) != list(wanted[name]):
            skipped[name] = "shape %s in checkpoint, %s here" % (stored[name], wanted[name])
        else:
            take.append(name)
    return take, skipped


def partial_restore_saver(variables, prefix):
    """(Saver restoring what matches, {skipped name: reason}); TrainError if nothing matches."""
    by_name = {v.op.name: v for v in variables}
    wanted = {name: v.shape.as_list() for name, v in by_name.items()}
    take, skipped = plan_partial_restore(wanted, checkpoint_shapes(prefix))
    if not take:
        raise TrainError("checkpoint %s shares no variables with this model; --finetune needs a "
                         "checkpoint of the same architecture" % prefix)
    saver = tf.compat.v1.train.Saver(var_list={name: by_name[name] for name in take})
    return saver, skipped


def read_meta(checkpoint_dir):
    path = os.path.join(checkpoint_dir, META_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def check_resumable(meta, expected):
    """TrainError naming the fix when a checkpoint directory belongs to another kind of run (pure)."""
    if not meta:
        return
    different = ["%s %s (now %s)" % (key, meta.get(key), value)
                 for key, value in sorted(expected.items()) if key in meta and meta[key] != value]
    if different:
        raise TrainError("the checkpoints to resume were made with %s; use another --output-dir (or "
                         "--checkpoint-dir), or --finetune to start from them" % ", ".join(different))


class CheckpointWriter:
    """Saves every global variable (weights, BN statistics, optimizer slots, global step), keeping K."""

    def __init__(self, checkpoint_dir, keep, variables=None):
        self.directory = checkpoint_dir
        self.saver = tf.compat.v1.train.Saver(var_list=variables, max_to_keep=keep, save_relative_paths=True)
        self.last_saved_step = None

    def restore(self, sess, prefix):
        self.saver.restore(sess, prefix)

    def save(self, sess, step, meta):
        os.makedirs(self.directory, exist_ok=True)
        path = self.saver.save(sess, os.path.join(self.directory, PREFIX), global_step=int(step),
                               write_meta_graph=False)
        atomic.write_json(os.path.join(self.directory, META_FILE), dict(meta, step=int(step)), indent=1)
        self.last_saved_step = int(step)
        return path
