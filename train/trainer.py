"""The graph-mode training loop every rank runs.

Why one loop for all hardware: the code tested here on CPU is the code that runs on Ascend; only the
allreduce backend (none / collective / hccl) differs. The graph is TF1-style (tf.compat.v1 Session,
tf.data iterator, tf.compat.v1.train optimizer) with Keras 2 layers:
iterator -> model -> label-smoothed softmax cross-entropy + weight decay -> gradients averaged by the
backend -> optimizer with the LR schedule -> BN moving averages -> global step.

The collaborators (model registry, data pipeline, backend) come in as `Parts`, so that the loop is
the same whether it is started by `python -m train` or by a test.
"""
import os
import time
from collections import namedtuple

import numpy as np

from data import labels as data_labels
from models.specs import HEAD_NAME  # the layer that maps features to logits
from tfcompat import set_graph_seed, tf
from train import bn_recalibrate, checkpoints, evaluate, export, failures, optim, precheck
from train.config import RESUME_AUTO, RESUME_NEVER
from train.errors import BadData, StepFailure, TrainError
from train.metrics import (
    Summaries,
    human_eval_line,
    human_overflow_line,
    human_skipped_line,
    human_train_lines,
    log,
    train_record,
)
from train.precheck import Schedule, schedule_plan  # noqa: F401  (pure: the launcher checks with it too)

_PARTS = [
    "inspect_data",         # path -> DataInfo (num_classes, train_count, eval_count, class_names)
    "train_dataset",        # (info, batch_size, image_size, rank, size, seed) -> endless (images, labels)
                            # or (images, labels, skipped): the running count of unreadable images dropped
    "eval_dataset",         # (info, batch_size, image_size, rank, size) -> finite (images, labels, valid)
    "build_model",          # (name, num_classes, image_size, weight_decay, dropout, options) -> keras Model
    "regularization_loss",  # model -> scalar tensor
    "make_backend",         # args -> backend object (train.backends, docs/CONTRACTS.md)
    "preprocessing",        # image_size -> dict describing the input normalisation (for export)
    "calibration_dataset",  # like train_dataset, for re-estimating BN statistics (train.bn_recalibrate);
                            # (images, labels) in a fixed order; default None: train_dataset is used
]
Parts = namedtuple("Parts", _PARTS, defaults=(None,))

def every(step, interval_steps):
    """True when `step` (1-based, after the update) closes an interval of `interval_steps` (pure)."""
    return interval_steps > 0 and step % interval_steps == 0


def crossed(before, after, interval_steps):
    """True when a loop from step `before` to step `after` closed an interval of `interval_steps` (pure):
    with one step per loop this is every(after, interval_steps)."""
    return interval_steps > 0 and after // interval_steps > before // interval_steps


def head_layer(model):
    """The classifier head: the layer named `classifier` (the registry's convention), else the last
    layer that owns weights (the logits Dense / 1x1 conv of other models)."""
    for layer in model.layers:
        if layer.name == HEAD_NAME:
            return layer
    for layer in reversed(model.layers):
        if layer.weights:
            return layer
    raise TrainError("the model has no weights")


def freeze_backbone(model):
    """Mark every weighted layer except the head untrainable (their BN layers run in inference mode)."""
    head = head_layer(model)
    for layer in model.layers:
        if layer is not head and layer.weights:
            layer.trainable = False
    return head


def session_config(placement, backend):
    """XLA off (10x slower on CPU here), GPU memory on demand; the backend adds threads, mixed
    precision and its own settings."""
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.OFF
    if placement.device_kind == "gpu":
        config.gpu_options.allow_growth = True
    return backend.session_config(config)


def sync_moving_statistics_op(model, backend, size):
    """Average the BN moving statistics over ranks (each rank's come from its own batches).

    Run by every rank at the same points (before evaluation and at the end), so that evaluation and
    the checkpoint use one set of statistics and the ranks end bit-identical.
    """
    stats = [w for w in model.non_trainable_weights if "moving_" in w.name]
    if size <= 1 or not stats:
        return tf.no_op(name="sync_moving_statistics")
    summed = backend.allreduce_sum([w.read_value() for w in stats])
    return tf.group(*[tf.compat.v1.assign(w, s / float(size)) for w, s in zip(stats, summed)],
                    name="sync_moving_statistics")


def gradient_sum(grads_and_vars):
    """The sum of every (rank-averaged) gradient element: finite exactly when all of them are, in practice
    (inf + -inf and any NaN give NaN; finite values would need ~1e38 to sum to inf). One cheap pass."""
    return tf.add_n([tf.reduce_sum(tf.cast(grad, tf.float32)) for grad, _ in grads_and_vars
                     if grad is not None])


def weights_checksum(values):
    """One number that is equal on two ranks exactly when their weights are (computed on the host in
    float64: the device may have no float64 kernels)."""
    return float(sum(np.abs(np.asarray(v, dtype=np.float64)).sum() for v in values))


class Graph:
    """Everything the loop runs, built once."""

    def __init__(self, args, placement, parts, info, lr_plan, backend, resume_step=0):
        self.global_step = tf.compat.v1.train.get_or_create_global_step()
        # A resumed run draws a new data order (seeded by its start step), not the first epoch's again.
        dataset = parts.train_dataset(info, args.batch_size, args.image_size, placement.rank, placement.size,
                                      args.seed + resume_step)
        self.iterator = tf.compat.v1.data.make_initializable_iterator(dataset)
        elements = self.iterator.get_next()
        images, labels = elements[0], elements[1]
        self.skipped = elements[2] if len(elements) > 2 else tf.constant(0, tf.int64)
        self.model = parts.build_model(args.model, info.num_classes, args.image_size, args.weight_decay,
                                       args.dropout, args.model_options)
        if args.bn_momentum is not None:
            changed = bn_recalibrate.set_momentum(self.model, args.bn_momentum)
            log.info("BatchNorm momentum %g on %d layers (--bn-momentum)", args.bn_momentum, changed)
        self.head = freeze_backbone(self.model) if args.freeze_backbone else head_layer(self.model)
        logits = tf.cast(self.model(images, training=True), tf.float32)
        labels = tf.cast(labels, tf.int32)
        onehot = tf.one_hot(labels, info.num_classes)
        self.loss = tf.compat.v1.losses.softmax_cross_entropy(
            onehot, logits, label_smoothing=args.label_smoothing,
            reduction=tf.compat.v1.losses.Reduction.MEAN)
        total_loss = self.loss + tf.cast(parts.regularization_loss(self.model), tf.float32)
        self.accuracy = tf.reduce_mean(tf.cast(
            tf.compat.v1.math.in_top_k(predictions=logits, targets=labels, k=1), tf.float32))
        self.lr = optim.learning_rate_tensor(lr_plan, self.global_step)
        optimizer = backend.wrap_optimizer(optim.make_optimizer(args.optimizer, self.lr, args.momentum))
        trainable = self.model.trainable_weights
        grads_and_vars = optimizer.compute_gradients(total_loss, var_list=trainable)
        # Unless a loss-scaling optimizer skips it, a non-finite gradient is applied and the weights stop
        # being finite while the loss may not show it (oneDNN's ReLU turns a NaN input into 0).
        self.gradient_sum = (tf.constant(0.0) if backend.skips_nonfinite_updates()
                             else gradient_sum(grads_and_vars))
        # BN moving averages: the updates bound to this input tensor plus the unconditional ones
        # (model.updates also holds updates bound to Keras' own input placeholder).
        update_ops = list(self.model.get_updates_for(images)) + list(self.model.get_updates_for(None))
        # A loss-scaling optimizer skips the update of an overflow step and with it the increment of the
        # step it is given. It is given `applied_steps` (this process's count of applied updates, not
        # saved); global_step counts every step run, so it always equals the loop's count and every
        # step is logged, evaluated and saved once. Overflow-skipped steps = steps run - applied.
        self.applied_steps = tf.compat.v1.get_variable(
            "applied_steps", shape=[], dtype=tf.int64, initializer=tf.compat.v1.zeros_initializer(),
            trainable=False, collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES])
        with tf.control_dependencies(update_ops):
            apply_op = optimizer.apply_gradients(grads_and_vars, global_step=self.applied_steps)
        with tf.control_dependencies([apply_op]):
            self.train_op = tf.group(tf.compat.v1.assign_add(self.global_step, 1), name="train_step")
        with tf.control_dependencies([self.train_op]):
            # The values after this update (a fetch of a variable beside train_op may read either value).
            self.step_after = tf.identity(self.global_step.read_value())
            self.applied_after = tf.identity(self.applied_steps.read_value())
            scale = backend.loss_scale_tensor()
            self.scaling = scale is not None
            self.loss_scale = tf.identity(scale) if self.scaling else tf.constant(0.0)
        self.eval_ops = None
        if args.eval and info.eval_count:
            eval_ds = parts.eval_dataset(info, args.eval_batch_size or args.batch_size, args.image_size,
                                         placement.rank, placement.size)
            self.eval_ops = evaluate.build_eval(self.model, eval_ds, info.num_classes, backend)
        self.sync_stats_op = sync_moving_statistics_op(self.model, backend, placement.size)
        self.recalibration = build_recalibration(args, placement, parts, info, self.model, backend)
        self.ranks = placement.size
        self.variables = tf.compat.v1.global_variables()
        self.init_op = tf.group(tf.compat.v1.global_variables_initializer(),
                                tf.compat.v1.local_variables_initializer())
        # Every rank ends up with rank 0's state (servers without the checkpoints start from rank 0's
        # restore): float variables (weights, BN statistics, optimizer slots, loss scale) are broadcast,
        # counters (global_step, loss-scale counts) set from rank 0's values (train/backends.py).
        self.broadcast_op = backend.broadcast_variables_op(self.variables)
        self.writer = checkpoints.CheckpointWriter(placement.checkpoint_dir, args.keep_checkpoints,
                                                   self.variables)
        self.finetune_saver, self.finetune_skipped = None, {}
        if args.finetune:
            prefix = checkpoints.resolve(args.finetune)
            self.finetune_prefix = prefix
            self.finetune_saver, self.finetune_skipped = checkpoints.partial_restore_saver(
                self.model.weights, prefix)


def run(args, placement, parts, metrics):
    """Train, evaluate and export for one rank; returns the summary dict (also the `end` record)."""
    started = time.time()
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)  # deprecation notices drown the log
    metrics.phase("build")  # listing a large image folder can take a while: show progress first
    info = parts.inspect_data(args.data_path)
    loop = args.iterations_per_loop
    sched = schedule_plan(info.train_count, args.batch_size, placement.size, args.epochs, args.max_steps,
                          loop)
    lr_plan = optim.lr_plan(args, sched.global_batch, sched.steps_per_epoch, sched.total_steps)
    run_meta = {"model": args.model, "num_classes": int(info.num_classes), "image_size": int(args.image_size),
                "model_options": sorted(args.model_options)}
    is_chief = placement.rank == 0
    resume_from = resume_source(args, placement)
    if resume_from:
        keep_class_names(args, placement, info, resume_from)  # names which classes changed, if any
        checkpoints.check_resumable(checkpoints.read_meta(os.path.dirname(resume_from)), run_meta)
        done = checkpoints.step_of(resume_from)
        if done >= sched.total_steps and not args.eval_only:
            log.info("the run is finished: %s is at step %d of %d; nothing to train (--resume never starts "
                     "over, --eval-only evaluates it)", resume_from, done, sched.total_steps)
            return {"status": "finished", "step": done, "total_steps": sched.total_steps,
                    "wall_time": round(time.time() - started, 3)}
    else:
        keep_class_names(args, placement, info, resume_from)
    if args.eval_only and not (info.eval_count and resume_from):
        raise TrainError("--eval-only needs a validation split and a checkpoint: %s" % (
            "%s has no validation split" % args.data_path if not info.eval_count else
            "%s holds none; give --resume PATH" % placement.checkpoint_dir))
    if not info.eval_count:
        log.info("no validation split in %s: nothing is evaluated; the accuracy reported is the training "
                 "batches' accuracy", args.data_path)
    if info.kind == "synthetic":
        log.info("training on synthetic data (%s): random images, no dataset read; give --data-path DIR "
                 "for a real one", args.data_path)
    log.info("rank %d/%d backend %s device %s model %s classes %d train %d eval %d global batch %d "
             "steps/epoch %d total steps %d peak lr %.5f", placement.rank, placement.size,
             placement.backend_kind, placement.device_kind, args.model, info.num_classes, info.train_count,
             info.eval_count,
             sched.global_batch, sched.steps_per_epoch, sched.total_steps, lr_plan.peak)

    if args.augment:
        log.info("training augmentation %s (--augment), image size %d", args.augment, args.image_size)
    backend = parts.make_backend(args)
    log.info("%s", backend.describe())
    graph = tf.Graph()
    with graph.as_default(), told_in_one_line(placement):
        set_graph_seed(args.seed)  # the initial weights follow --seed (on TF 2 too)
        summaries, sess = None, None
        try:
            backend.start(session_config(placement, backend))  # HCCL up and checked on Ascend
            sess = tf.compat.v1.Session(backend.session_target(), graph=graph,
                                        config=session_config(placement, backend))
            tf.compat.v1.keras.backend.set_session(sess)
            g = Graph(args, placement, parts, info, lr_plan, backend,
                      checkpoints.step_of(resume_from) if resume_from else 0)
            if is_chief:
                summaries = Summaries(os.path.join(placement.output_dir, "tensorboard"))
            metrics.phase("init")
            sess.run(g.init_op)
            sess.run(g.iterator.initializer)
            _restore(sess, g, args, resume_from, metrics)
            sess.run(g.broadcast_op)
            start_step = int(sess.run(g.global_step))
            if args.eval_only:
                result = {"step": start_step, "status": "ok", "eval_only": True}
                result.update(_evaluate(sess, g, metrics, start_step))
                return dict(result, wall_time=round(time.time() - started, 3))
            loop = loop_plan(sess, g, backend, args.iterations_per_loop)
            result = _loop(sess, g, args, placement, sched, metrics, summaries, run_meta, start_step, loop)
            changed = settle_statistics(sess, g, metrics, result["step"])
            result["weights_checksum"] = weights_checksum(sess.run(g.model.weights))
            # a checkpoint saved at this step before the statistics were settled is written again
            if is_chief and (g.writer.last_saved_step != result["step"] or changed) and \
                    (result["step"] > start_step or not resume_from):
                g.writer.save(sess, result["step"], run_meta)
                log.info("saved checkpoint at step %d", result["step"])
            if g.eval_ops is not None:
                result.update(_evaluate(sess, g, metrics, result["step"], settled=True))
        finally:
            if summaries:
                summaries.close()
            if sess is not None:
                sess.close()
            backend.close()
    if is_chief and args.export:
        metrics.phase("export")
        result["export_dir"] = _export(args, placement, parts, info, result["step"])
    result["wall_time"] = round(time.time() - started, 3)
    return result


def resume_source(args, placement):
    """The checkpoint this rank continues from under --resume auto|never|PATH, or None (a fresh start).

    A launcher restart (LAUNCH_RESTART > 0) continues this run's newest checkpoint whatever the mode
    (then --resume PATH only when none was written yet). `never` moves the old checkpoints aside (rank 0;
    under the launcher it has done so before any rank started); nothing is deleted.
    """
    latest = checkpoints.latest(placement.checkpoint_dir)
    if placement.restart > 0 and latest:
        return latest
    if args.resume == RESUME_AUTO:
        return latest
    if args.resume == RESUME_NEVER:
        if placement.rank == 0 and precheck.has_checkpoints(placement.checkpoint_dir):
            moved = precheck.move_aside(placement.checkpoint_dir)
            log.info("--resume never: the old checkpoints were moved to %s", moved)
        return None
    return checkpoints.resolve(args.resume)


def labels_plan(class_names, checkpoint_dir, resume_from, finetune_dir, is_chief, exists):
    """Which labels.txt files to check and which to write (pure; `exists(path)` tells what is there).

    Returns (paths to check against the dataset's class names, path to write or None). A resumed run
    checks its own labels.txt; a fine-tuning run checks its source's when the class count is the same (a
    new head for another count has nothing to match); a fresh start has rank 0 write it, and so does a
    resume from checkpoints that have none yet.
    """
    if class_names is None:
        return [], None
    own = data_labels.labels_path(checkpoint_dir)
    check, write = [], None
    if resume_from:
        if exists(own):
            check.append(own)
        elif is_chief:
            write = own
        return check, write
    if finetune_dir:
        source = data_labels.labels_path(finetune_dir)
        if exists(source) and len(data_labels.read_labels(source)) == len(class_names):
            check.append(source)
    if is_chief:
        write = own
    return check, write


def keep_class_names(args, placement, info, resume_from):
    """Check labels.txt beside the checkpoints (resume) or the fine-tuning source; rank 0 writes it."""
    names = info.class_names
    finetune_dir = None
    if args.finetune and not resume_from:
        finetune_dir = os.path.dirname(checkpoints.resolve(args.finetune))
    check, write = labels_plan(names, placement.checkpoint_dir, resume_from, finetune_dir,
                               placement.rank == 0, os.path.isfile)
    for path in check:
        data_labels.check_labels(path, names)
    if write:
        os.makedirs(placement.checkpoint_dir, exist_ok=True)
        data_labels.write_labels(write, names)


class told_in_one_line:
    """Turns TensorFlow's error for a bad image or a lost peer into one line (failures.py); the original
    error stays attached as the cause, and its message as `detail` for error.json."""

    def __init__(self, placement):
        self.placement = placement

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or not isinstance(exc, tf.errors.OpError):
            return False
        message = getattr(exc, "message", "") or str(exc)
        line = failures.data_failure_line(message)
        if line:
            raise BadData(line, message) from exc
        line = failures.lost_peer_line(type(exc).__name__, message, self.placement.rank,
                                       self.placement.peers, self.placement.collective_timeout)
        if line:
            raise StepFailure(line, message) from exc
        return False


def _restore(sess, g, args, resume_from, metrics):
    if resume_from:
        metrics.phase("restore", checkpoint=resume_from)
        g.writer.restore(sess, resume_from)
        log.info("resumed from %s", resume_from)
    elif g.finetune_saver is not None:
        metrics.phase("restore", checkpoint=g.finetune_prefix)
        g.finetune_saver.restore(sess, g.finetune_prefix)
        for name, reason in sorted(g.finetune_skipped.items()):
            log.info("finetune: kept new %s (%s)", name, reason)
        log.info("finetune: restored from %s (%d variables kept new)", g.finetune_prefix,
                 len(g.finetune_skipped))


Loop = namedtuple("Loop", ["op", "runs", "steps"])  # sess.run `op` `runs` times per loop of `steps` steps


def loop_plan(sess, g, backend, iterations_per_loop):
    """How one loop of N steps runs: on Ascend one sess.run of the adapter's IterationOp (the device
    loops; built after initialisation, it loads its loop variables into the session); elsewhere N
    sess.runs of the train op. Metrics, evaluation and checkpoints come once per loop either way."""
    op, per_run = backend.loop_op(sess, g.train_op) if iterations_per_loop > 1 else (g.train_op, 1)
    if iterations_per_loop > 1:
        where = "on the device" if per_run > 1 else "on the host, one sess.run each"
        log.info("iterations per loop %d: %d steps per loop %s; metrics, evaluation and checkpoints once "
                 "per loop", iterations_per_loop, iterations_per_loop, where)
    return Loop(op, iterations_per_loop // per_run, iterations_per_loop)


def _loop(sess, g, args, placement, sched, metrics, summaries, run_meta, step, loop=None):
    """Run loops of steps up to the planned total; log, checkpoint and evaluate when a loop closed one of
    their intervals. The step count is global_step, which advances once per step run (an
    overflow-skipped update included), so no step is logged, evaluated or saved twice or passed over."""
    loop = loop or Loop(g.train_op, 1, 1)
    metrics.phase("train", start_step=step, total_steps=sched.total_steps)
    if (sched.total_steps - step) % loop.steps:
        log.info("resuming at step %d: the run ends at step %d, a whole number of loops of %d steps", step,
                 step + -(-(sched.total_steps - step) // loop.steps) * loop.steps, loop.steps)
    save_epoch_steps = int(round(args.save_every_epochs * sched.steps_per_epoch))
    eval_epoch_steps = int(round(args.eval_every_epochs * sched.steps_per_epoch))
    fetches = [loop.op, g.step_after, g.loss, g.accuracy, g.lr, g.skipped, g.applied_after, g.loss_scale,
               g.gradient_sum]
    window = {"loss": 0.0, "acc": 0.0, "runs": 0, "steps": 0}
    # Speed is timed without the first loop of this process (graph build, first batches: warm-up), so a
    # short run's images/s is its steady rate too; a record holding only that loop says warmup=true.
    timed = {"steps": 0, "start": time.time(), "warmup": None}
    rates, last = [], {}
    skipped_logged = 0
    start_step, applied_at_start = step, int(sess.run(g.applied_steps))
    overflow, overflow_logged, scale, warned_loop = 0, 0, 0.0, False
    while step < sched.total_steps:
        before = step
        for _ in range(loop.runs):
            _, step, loss, acc, lr, skipped, applied, scale, grad_sum = sess.run(fetches)
            step, skipped = int(step), int(skipped)
            if not np.isfinite(loss):
                raise TrainError("the loss became %s at step %d; lower --learning-rate (or add "
                                 "--warmup-epochs)" % (loss, step))
            if not np.isfinite(grad_sum):
                raise TrainError("the gradients became %s at step %d and were applied, so the weights are no "
                                 "longer finite; lower --learning-rate (or add --warmup-epochs, or "
                                 "--loss-scale dynamic to skip such steps)" % (grad_sum, step))
            window["loss"] += float(loss)
            window["acc"] += float(acc)
            window["runs"] += 1
        window["steps"] += step - before
        now = time.time()
        if timed["warmup"] is None:
            timed["warmup"] = (now - timed["start"], max(step - before, 1))
            timed["start"] = now
        else:
            timed["steps"] += step - before
        if step - before != loop.steps and step < sched.total_steps and not warned_loop:
            log.info("a loop of %d steps advanced global_step by %d: the device did not loop (loop sinking "
                     "needs enable_data_pre_proc and the dataset iterator as the graph's input)",
                     loop.steps, step - before)
            warned_loop = True
        overflow = (step - start_step) - (int(applied) - applied_at_start)
        if overflow > overflow_logged:
            log.info("%s", human_overflow_line(overflow, step, scale, placement.rank))
            overflow_logged = overflow
        if crossed(before, step, args.log_every) or step >= sched.total_steps:
            runs = max(window["runs"], 1)
            if timed["steps"]:
                seconds, counted, warmup = now - timed["start"], timed["steps"], False
                rates.append((counted, seconds))
            else:
                (seconds, counted), warmup = timed["warmup"], True
            record = train_record(step, sched.total_steps, step / float(sched.steps_per_epoch),
                                  window["loss"] / runs, window["acc"] / runs, lr,
                                  args.batch_size * counted / max(seconds, 1e-9), seconds / counted,
                                  args.batch_size, skipped_images=skipped, timed_steps=counted,
                                  timed_seconds=seconds, warmup=warmup,
                                  overflow_steps=overflow if g.scaling else None,
                                  loss_scale=scale if g.scaling else None)
            metrics.write("train", **record)
            if skipped > skipped_logged:
                log.info("%s", human_skipped_line(skipped, placement.rank))
                skipped_logged = skipped
            for line in human_train_lines(record, record["images_per_sec"] * placement.size):
                log.info("%s", line)
            if summaries:
                summaries.scalars(step, {"loss": record["loss"], "accuracy": record["accuracy"], "lr": lr,
                                         "images_per_sec": record["images_per_sec"]})
            last = record
            window = {"loss": 0.0, "acc": 0.0, "runs": 0, "steps": 0}
            timed["steps"], timed["start"] = 0, time.time()
        if placement.rank == 0 and (crossed(before, step, args.save_every_steps) or
                                    crossed(before, step, save_epoch_steps)):
            g.writer.save(sess, step, run_meta)
            log.info("saved checkpoint at step %d", step)
        if g.eval_ops is not None and crossed(before, step, eval_epoch_steps) and step < sched.total_steps:
            _evaluate(sess, g, metrics, step)
            metrics.phase("train", start_step=step, total_steps=sched.total_steps)
    steps_timed = sum(n for n, _ in rates)
    time_timed = sum(t for _, t in rates)
    result = {"step": step, "status": "ok", "loss": last.get("loss"),
              "epoch": round(step / float(sched.steps_per_epoch), 4)}
    if skipped_logged:
        result["skipped_images"] = skipped_logged
    if g.scaling:
        result["overflow_steps"] = overflow
    if steps_timed:
        result["images_per_sec"] = round(args.batch_size * steps_timed / time_timed, 2)
    return result


def build_recalibration(args, placement, parts, info, model, backend):
    """The BN re-estimation ops (train.bn_recalibrate) for --bn-recalibrate-batches, or None."""
    planned = bn_recalibrate.plan(info.train_count, placement.size, args.batch_size,
                                  args.eval_batch_size, args.bn_recalibrate_batches)
    if planned is None:
        return None
    make = parts.calibration_dataset or parts.train_dataset
    dataset = make(info, planned.batch_size, args.image_size, placement.rank, placement.size,
                   args.seed + 7)
    iterator = tf.compat.v1.data.make_initializable_iterator(dataset)
    images = iterator.get_next()[0]
    return bn_recalibrate.build(model, images, backend, placement.size, planned.batches,
                                planned.batch_size, iterator.initializer)


def settle_statistics(sess, g, metrics, step):
    """Before an evaluation or the final checkpoint: re-estimate the BN statistics from training batches
    (--bn-recalibrate-batches), else average the moving ones over ranks. True when they may have changed."""
    if g.recalibration is None:
        sess.run(g.sync_stats_op)
        return g.ranks > 1
    started = time.time()
    used = bn_recalibrate.run(sess, g.recalibration)
    metrics.write("bn_recalibrate", step=int(step), batches=used, batch_size=g.recalibration.batch_size,
                  layers=g.recalibration.layers, seconds=round(time.time() - started, 3))
    log.info("BatchNorm statistics re-estimated at step %d from %d batches of %d training images per rank "
             "(%d layers, %.1fs)", step, used, g.recalibration.batch_size, g.recalibration.layers,
             time.time() - started)
    return True


def _evaluate(sess, g, metrics, step, settled=False):
    metrics.phase("eval", step=step)
    if not settled:
        settle_statistics(sess, g, metrics, step)
    result, local = evaluate.run_eval(sess, g.eval_ops)
    metrics.write("eval", step=int(step), top1=round(result["top1"], 6), top5=round(result["top5"], 6),
                  count=result["count"], local_count=local["count"])
    log.info("%s", human_eval_line(step, result["top1"], result["top5"], result["count"]))
    return {"top1": result["top1"], "top5": result["top5"], "eval_count": result["count"]}


def _export(args, placement, parts, info, step):
    prefix = checkpoints.latest(placement.checkpoint_dir)
    if not prefix:
        log.info("export skipped: no checkpoint in %s", placement.checkpoint_dir)
        return None
    directory, description = export.export_plan(
        os.path.join(placement.output_dir, "export"), step, args.image_size, info.num_classes,
        parts.preprocessing(args.image_size), info.class_names)

    def build():
        return parts.build_model(args.model, info.num_classes, args.image_size, args.weight_decay,
                                 args.dropout, args.model_options)

    path = export.export_model(build, prefix, directory, description, args.image_size)
    log.info("exported SavedModel, frozen graph and preprocessing.json to %s", path)
    return path
