"""What the trainer would refuse, checked without TensorFlow, so the launcher refuses it first.

Why: a bad model option, an image size the models cannot take, a dataset with fewer TFRecord files than
ranks or fewer images than one global batch would otherwise fail inside every worker, after TensorFlow
(and on Ascend npu_bridge) has loaded. The trainer runs these same functions, so the launcher's message is
the trainer's own. Also here: what a checkpoint directory holds (read from its `checkpoint` index file).
"""
import math
import os
import re
from collections import namedtuple

from train.config import RESUME_AUTO, RESUME_NEVER
from train.errors import TrainError

Schedule = namedtuple("Schedule", ["steps_per_epoch", "total_steps", "global_batch"])
Checked = namedtuple("Checked", ["info", "schedule", "resume_step", "finished"])


def schedule_plan(train_count, batch_size, size, epochs, max_steps, iterations_per_loop=1):
    """Steps per epoch (remainder dropped alike on every rank) and the run's length (pure): a whole number
    of loops of `iterations_per_loop` steps (Ascend's loop sinking needs it; tfmigr1_000048)."""
    global_batch = batch_size * size
    steps_per_epoch = train_count // global_batch
    if steps_per_epoch < 1:
        raise TrainError("the training split has %d images, fewer than one global batch (%d x %d ranks); "
                         "lower --batch-size" % (train_count, batch_size, size))
    total = max(int(max_steps) if max_steps else int(math.ceil(epochs * steps_per_epoch)), 1)
    loop = max(int(iterations_per_loop), 1)
    return Schedule(steps_per_epoch, int(math.ceil(total / float(loop))) * loop, global_batch)


def check_model(args):
    """The model name, its --model-option values and --image-size, as registry.build will judge them."""
    from models import registry
    registry.parse_options(args.model, args.model_options)
    registry.check_image_size(args.image_size)


def latest_step(checkpoint_dir):
    """The global step of the newest complete checkpoint in ``checkpoint_dir`` (its `checkpoint` index
    file names it and its .index file exists), or None."""
    index = os.path.join(checkpoint_dir or "", "checkpoint")
    try:
        with open(index, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', text, re.M)
    if not match:
        return None
    prefix = match.group(1)
    if not os.path.isabs(prefix):
        prefix = os.path.join(checkpoint_dir, prefix)
    if not os.path.exists(prefix + ".index"):
        return None
    return step_of(prefix)


def step_of(prefix):
    """The global step in a checkpoint prefix `.../model.ckpt-1200` (pure)."""
    try:
        return int(prefix.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def resume_step(args, checkpoint_dir):
    """The step the run will continue from under --resume (None: a fresh start)."""
    if args.resume == RESUME_NEVER:
        return None
    if args.resume == RESUME_AUTO:
        return latest_step(checkpoint_dir)
    if os.path.isdir(args.resume):
        return latest_step(args.resume)
    return step_of(args.resume)


def has_checkpoints(checkpoint_dir):
    """True when ``checkpoint_dir`` holds any file (checkpoints, labels.txt, run_meta.json)."""
    try:
        return bool(os.listdir(checkpoint_dir))
    except OSError:
        return False


def move_aside(path):
    """Rename ``path`` to the first free path.N (path.1, then path.2, ...); nothing is deleted and no older
    copy is renamed (a --resume PATH may point into one). The new name, or None when nothing was there."""
    if not os.path.lexists(path):
        return None
    index = 1
    while os.path.lexists("%s.%d" % (path, index)):
        index += 1
    target = "%s.%d" % (path, index)
    os.rename(path, target)
    return target


def check(args, size, checkpoint_dir):
    """Everything the ranks would refuse, for a job of ``size`` ranks: Checked(info, schedule, resume step,
    finished). Raises the trainer's own TrainError / ModelError / DataError."""
    from data import layout
    check_model(args)
    info = layout.inspect(args.data_path, label_offset=args.label_offset, num_classes=args.num_classes)
    layout.check_sharding(info, size)
    sched = schedule_plan(info.train_count, args.batch_size, size, args.epochs, args.max_steps,
                          args.iterations_per_loop)
    step = resume_step(args, checkpoint_dir)
    if args.eval_only:
        if not info.eval_count:
            raise TrainError("--eval-only needs a validation split and %s has none" % info.path)
        if step is None:
            raise TrainError("--eval-only needs a checkpoint: %s holds none; give --resume PATH"
                             % checkpoint_dir)
    finished = step is not None and step >= sched.total_steps and not args.eval_only
    return Checked(info, sched, step, finished)
