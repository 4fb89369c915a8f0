"""`python -m train`: one rank of a training job (the launcher starts one per device).

Why here: the entry point only wires the real collaborators (model registry, data pipeline, allreduce
backend) into the loop and turns failures into what the launcher reads: a user's mistake becomes one
line on stderr and exit 2, anything else a traceback and exit 1; both leave error.json and an `end`
record in metrics.jsonl.
"""
import os
import sys
import time

from contract import worker_env
from train import errors
from train.config import parse_flags, placement_from_env
from train.metrics import MetricsWriter, log, setup_logging


def _user_error_types():
    """The packages' user-mistake classes (imported once the flags are read: they may pull in TensorFlow)."""
    from data.errors import DataError
    from models.errors import ModelError
    return errors.TrainError, ModelError, DataError


def default_parts(args, env=None, placement=None):
    """The real collaborators: models.registry, data.layout/pipeline, train.backends; the data flags
    (--label-offset, --num-classes, --bad-images) and the backend's (loss scale, loop, NPU debugging under
    the rank's directory) are bound here, and the backend reads ``env`` (default os.environ), the same
    environment as the placement."""
    from data import layout, pipeline
    from models import registry
    from train.backends import backend_from_env
    from train.trainer import Parts

    def build_model(name, num_classes, image_size, weight_decay, dropout, option_list):
        options = registry.parse_options(name, list(option_list))
        kwargs = {"weight_decay": weight_decay}
        if dropout is not None:
            kwargs["dropout"] = dropout
        kwargs.update(options)
        return registry.build(name, num_classes, image_size, **kwargs)

    def inspect_data(path):
        return layout.inspect(path, label_offset=args.label_offset, num_classes=args.num_classes)

    def train_dataset(info, batch_size, image_size, rank, size, seed):
        # (images, labels, skipped so far): the trainer logs the count of dropped images
        return pipeline.train_dataset(info, batch_size, image_size, rank, size, seed=seed,
                                      bad_images=args.bad_images, return_skipped=True,
                                      augment_mode=args.augment)

    def calibration_dataset(info, batch_size, image_size, rank, size, seed):
        return pipeline.calibration_dataset(info, batch_size, image_size, rank, size, seed=seed,
                                            bad_images=args.bad_images)

    def eval_dataset(info, batch_size, image_size, rank, size):
        return pipeline.eval_dataset(info, batch_size, image_size, rank, size, bad_images=args.bad_images)

    def make_backend(args):
        from train.npu_backend import debug_dirs
        rank_dir = placement.rank_dir if placement is not None else os.path.abspath("output")
        return backend_from_env(env, iterations_per_loop=args.iterations_per_loop,
                                debug_plan=debug_dirs(args, rank_dir), **backend_flags(args))

    return Parts(inspect_data=inspect_data, train_dataset=train_dataset, eval_dataset=eval_dataset,
                 build_model=build_model, regularization_loss=registry.regularization_loss,
                 make_backend=make_backend, preprocessing=preprocessing_description,
                 calibration_dataset=calibration_dataset)


def backend_flags(args):
    """The trainer's flags that the backend reads (train.backends.make_backend keywords)."""
    flags = {"precision_mode": args.precision_mode, "loss_scale": args.loss_scale,
             "allreduce_dtype": args.allreduce_dtype}
    bucket_mb = args.allreduce_bucket_mb
    if bucket_mb is not None:
        flags["bucket_bytes"] = int(bucket_mb * 1024 * 1024)
    return flags


def preprocessing_description(image_size):
    """How the training pipeline prepares an image, for whoever feeds the exported model."""
    from data import preprocess
    return {
        "color_order": "RGB",
        "value_range": "0..255 before normalisation",
        "normalize": "(pixel / 255 - mean) / std, per channel",
        "mean": list(preprocess.MEAN_RGB),
        "std": list(preprocess.STDDEV_RGB),
        "eval_resize": "centre crop of %s of the shorter side, bilinear resize to %dx%d"
                       % (preprocess.EVAL_CROP_FRACTION, image_size, image_size),
    }


def main(argv=None, env=None, parts=None):
    """Run one rank; returns the process exit code."""
    setup_logging()
    env = os.environ if env is None else env
    argv = sys.argv[1:] if argv is None else argv
    rank = env.get(worker_env.NAMES["rank"], "0")                 # until the placement is read
    error_file = env.get(worker_env.NAMES["error_file"])
    metrics = None
    started = time.time()
    user_errors = (errors.TrainError,)
    try:
        args = parse_flags(argv)
        placement = placement_from_env(env, args)
        rank, error_file = placement.rank, placement.error_file
        metrics = MetricsWriter(placement.metrics_file, placement.rank)
        user_errors = _user_error_types()
        if parts is None:
            from models import registry
            registry.parse_options(args.model, args.model_options)  # an unknown model fails before any work
            parts = default_parts(args, env, placement)
        from train import trainer
        result = trainer.run(args, placement, parts, metrics)
        metrics.phase("done")
        metrics.write("end", **result)
        return 0
    except Exception as exc:
        user = isinstance(exc, user_errors)
        told = user or isinstance(exc, errors.StepFailure)
        errors.write_error_file(error_file, errors.error_record(_as_int(rank), exc, with_traceback=not told))
        if metrics is not None:
            metrics.write("end", status="error", error=type(exc).__name__,
                          wall_time=round(time.time() - started, 3))
        if user:
            sys.stderr.write("error: %s\n" % exc)
            return errors.USER_ERROR_EXIT
        if isinstance(exc, errors.StepFailure):  # told in one line; TensorFlow's message is in error.json
            sys.stderr.write("error: rank %s: %s\n" % (rank, exc))
            return errors.CRASH_EXIT
        log.exception("rank %s failed", rank)
        return errors.CRASH_EXIT
    finally:
        if metrics is not None:
            metrics.close()


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


if __name__ == "__main__":
    sys.exit(main())
