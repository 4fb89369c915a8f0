"""The worker's settings: hyper-parameters from flags, placement from the launcher's environment.

Why: every rank runs the same `python -m train <flags>`; only the environment the launcher sets
(RANK_ID, RANK_SIZE, LAUNCH_*) differs. ModelZoo scripts spell flags differently (`--data_path`,
`--batch`, `--max_step`, ...), so those names are accepted as aliases of the same settings.
Everything here is pure: argv and an environment mapping in, plain objects out.
"""
import argparse
import os
from collections import namedtuple

from contract import worker_env
from data.errors import AUGMENT_MODES, BAD_IMAGE_POLICIES
from train import flags
from train.errors import TrainError

OPTIMIZERS = ("momentum", "rmsprop", "adam")
SCHEDULES = ("cosine", "piecewise", "constant")
LR_SCALING = ("linear", "none")
# The Ascend adapter's precision_mode values; the first three compute in float16 where the device can
# (the backends resolve the default per device and read these, so there is one list).
MIXED_MODES = ("allow_mix_precision", "allow_fp32_to_fp16", "force_fp16")
PRECISION_MODES = MIXED_MODES + ("must_keep_origin_dtype", "force_fp32")
# The allreduce backend of a multi-rank job per LAUNCH_BACKEND (one rank off Ascend: "none").
BACKEND_KINDS = {"npu": "hccl", "gpu": "collective", "cpu": "collective"}


def allreduce_kind(device, size):
    """The allreduce backend of a worker: HCCL on any NPU job (one card too), none for one CPU/GPU rank."""
    return BACKEND_KINDS[device] if (size > 1 or device == "npu") else "none"
ALLREDUCE_DTYPES = ("float32", "float16", "bfloat16")  # train.collective_backend.WIRE_DTYPES
AUGMENTS = AUGMENT_MODES  # data.augment's modes (data.errors holds the list: no TensorFlow there)
SMALL_IMAGE_SIZE = 128  # below this --image-size, --augment defaults to light
BN_RECALIBRATE_BATCHES = 100
RESUME_AUTO, RESUME_NEVER = "auto", "never"


class _Parser(argparse.ArgumentParser):
    """argparse that raises TrainError (one line, exit 2 in __main__) instead of printing usage."""

    def error(self, message):
        raise TrainError("%s (see python -m train --help)" % message)


def build_parser():
    p = _Parser(prog="python -m train", allow_abbrev=False,
                description="Graph-mode image-classification trainer (one rank). Every --dash-option is "
                            "also accepted with underscores (--batch_size).")
    add = p.add_argument
    add("--model", help="model name from the registry, e.g. mobilenetv3_small, shufflenetv1")
    add("--model-option", "--model_option", dest="model_options", action="append", default=[],
        metavar="KEY=VALUE", help="model option such as groups=3 or scale=1.0 (repeatable)")
    add("--data-path", "--data_path", "--data-dir", "--data_dir", dest="data_path", default="synthetic",
        help="image folder, TFRecord folder, or synthetic[:classes] (default: synthetic)")
    add_data_flags(p)
    add("--batch-size", "--batch_size", "--batch", dest="batch_size", type=int, default=32,
        help="images per device per step (default 32)")
    add("--eval-batch-size", "--eval_batch_size", dest="eval_batch_size", type=int, default=None,
        help="images per device per evaluation step (default: --batch-size)")
    add("--augment", choices=AUGMENTS, default=None,
        help="training augmentation: imagenet (random-resized crop + flip, for ImageNet-sized photos), "
             "light (mild scale/translate + flip, for small images), none; default imagenet for "
             "--image-size >= %d, light below" % SMALL_IMAGE_SIZE)
    add("--bn-recalibrate-batches", "--bn_recalibrate_batches", dest="bn_recalibrate_batches", type=int,
        default=BN_RECALIBRATE_BATCHES,
        help="before each evaluation and the final checkpoint/export, re-estimate the BatchNorm statistics "
             "from up to N training batches per rank (evaluation preprocessing, no weight update), averaged "
             "over ranks; 0: keep the moving averages (default %d)" % BN_RECALIBRATE_BATCHES)
    add("--bn-momentum", "--bn_momentum", dest="bn_momentum", type=float, default=None,
        help="BatchNorm moving-average decay of every BN layer, e.g. 0.9 (default: the model's, "
             "MobileNetV3 0.99, ShuffleNetV1 0.9)")
    add("--epochs", "--epoch", dest="epochs", type=float, default=1.0, help="training epochs (default 1)")
    add("--max-steps", "--max_step", "--max_steps", "--max_train_step", dest="max_steps", type=int,
        default=None, help="stop after this many global steps (overrides --epochs for the length)")
    add("--image-size", "--image_size", dest="image_size", type=int, default=224, help="square input size")
    add("--learning-rate", "--learning_rate", "--lr", dest="learning_rate", type=float, default=0.1,
        help="base learning rate for a global batch of 256 (see --lr-scaling); default 0.1")
    add("--lr-scaling", "--lr_scaling", dest="lr_scaling", choices=LR_SCALING, default="linear",
        help="linear: lr = base * global_batch / 256 (default); none: lr = base")
    add("--lr-schedule", "--lr_schedule", dest="lr_schedule", choices=SCHEDULES, default="cosine")
    add("--warmup-epochs", "--warmup_epochs", dest="warmup_epochs", type=float, default=0.0,
        help="linear warm-up from 0 over this many epochs (default 0)")
    add("--end-learning-rate", "--end_learning_rate", dest="end_learning_rate", type=float, default=0.0,
        help="cosine: final learning rate (absolute, default 0)")
    add("--lr-boundaries", "--lr_boundaries", dest="lr_boundaries", default="",
        help="piecewise: comma-separated epochs where the rate is multiplied by --lr-decay-factor")
    add("--lr-decay-factor", "--lr_decay_factor", dest="lr_decay_factor", type=float, default=0.1)
    add("--optimizer", choices=OPTIMIZERS, default="momentum", help="momentum (default), rmsprop, adam")
    add("--momentum", type=float, default=0.9)
    add("--weight-decay", "--weight_decay", dest="weight_decay", type=float, default=4e-5,
        help="L2 on conv/dense kernels (default 4e-5)")
    add("--label-smoothing", "--label_smoothing", dest="label_smoothing", type=float, default=0.1)
    add("--dropout", type=float, default=None, help="dropout rate before the classifier (model default)")
    add("--precision-mode", "--precision_mode", dest="precision_mode", choices=PRECISION_MODES, default=None,
        help="mixed precision: NPU precision_mode, on GPU the auto mixed-precision rewrite with loss "
             "scaling (default allow_mix_precision on both); CPU always trains in float32")
    add("--loss-scale", "--loss_scale", dest="loss_scale", default=None,
        help="loss scaling on NPU and GPU: dynamic (the default with a mixed precision mode), off, or a "
             "fixed number >= 1; on CPU only when given (float32 needs none)")
    add("--iterations-per-loop", "--iterations_per_loop", dest="iterations_per_loop", type=int, default=1,
        help="steps per loop: on NPU the device runs N steps per sess.run (loop sinking); on CPU/GPU the "
             "host runs N steps; metrics, evaluation and checkpoints happen once per loop (default 1)")
    add("--allreduce-dtype", "--allreduce_dtype", dest="allreduce_dtype", choices=ALLREDUCE_DTYPES,
        default="float32", help="CPU/GPU with several ranks: dtype of the gradients on the wire; float16 or "
                                "bfloat16 send half the bytes (default float32: the gradients' own)")
    add("--allreduce-bucket-mb", "--allreduce_bucket_mb", dest="allreduce_bucket_mb", type=float,
        default=None, help="CPU/GPU with several ranks: gradients fused per collective, in MiB "
                           "(0: one collective per tensor; default: the backend's)")
    add_npu_debug_flags(p)
    add("--seed", type=int, default=1234)
    add("--log-every", "--log_every", "--log_every_n_steps", "--display_every", dest="log_every", type=int,
        default=10, help="write a metrics record and a log line every N steps (default 10)")
    add("--save-interval", "--save_interval", "--save-every-steps", dest="save_every_steps", type=int,
        default=0, help="checkpoint every N steps (0: off); a checkpoint is always written at the end")
    add("--save-every-epochs", "--save_every_epochs", dest="save_every_epochs", type=float, default=1.0,
        help="checkpoint every N epochs (0: off; default 1)")
    add("--keep-checkpoints", "--keep_checkpoints", "--keep_checkpoint_max", dest="keep_checkpoints",
        type=int, default=5, help="keep the newest K checkpoints (default 5)")
    add("--resume", dest="resume", nargs="?", const=RESUME_AUTO, default=RESUME_AUTO,
        metavar="auto|never|PATH",
        help="auto (default): continue an unfinished run from the newest checkpoint of the checkpoint "
             "directory (a finished run says so and trains nothing); never: start over, moving the old "
             "checkpoints aside to checkpoints.N (nothing is deleted); PATH: continue from that checkpoint "
             "(its step and optimizer state)")
    add("--no-resume", dest="resume", action="store_const", const=RESUME_NEVER,
        help="the same as --resume never")
    add("--eval-only", dest="eval_only", action="store_true",
        help="evaluate a checkpoint (--resume PATH, else the newest in the checkpoint directory) on the "
             "validation split and exit; nothing is trained")
    add("--eval-every-epochs", "--eval_every_epochs", dest="eval_every_epochs", type=float, default=0.0,
        help="also evaluate every N epochs (default 0: only at the end)")
    add("--no-eval", "--no_eval", dest="eval", action="store_false", default=True,
        help="skip evaluation (default: top-1/top-5 on the validation split at the end)")
    add("--finetune", default=None, metavar="CKPT",
        help="start from this checkpoint (file prefix or directory); the classifier head is skipped "
             "when the class count differs")
    add("--freeze-backbone", "--freeze_backbone", dest="freeze_backbone", action="store_true",
        help="with --finetune: train only the classifier head")
    add("--export", dest="export", action="store_true", default=True,
        help="write a SavedModel and a frozen .pb at the end (rank 0; default)")
    add("--no-export", "--no_export", dest="export", action="store_false")
    add("--output-dir", "--output_dir", dest="output_dir", default=None,
        help="job output directory (default: $LAUNCH_OUTPUT_DIR or ./output); under the launcher, give "
             "the launcher's --output-dir instead")
    add("--checkpoint-dir", "--checkpoint_dir", "--model_dir", "--modeldir", dest="checkpoint_dir",
        default=None,
        help="checkpoint directory (default: $LAUNCH_CHECKPOINT_DIR or <output>/checkpoints)")
    return flags.accept_underscores(p)


def add_data_flags(parser):
    """The flags that say how to read the dataset; the launcher's data check reads the same ones."""
    add = parser.add_argument
    add("--label-offset", "--label_offset", dest="label_offset", type=int, default=0,
        help="subtracted from TFRecord labels: 1 for TF-Slim ImageNet records (1..1000, 0 = background)")
    add("--num-classes", "--num_classes", dest="num_classes", type=int, default=None,
        help="class count of TFRecords without a labels.txt (checked against labels.txt when both exist)")
    add("--bad-images", "--bad_images", dest="bad_images", choices=BAD_IMAGE_POLICIES, default="skip",
        help="an unreadable or corrupt image: skip it and count it in the log (default), or stop with "
             "its file name")


TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def switch(text):
    """A ModelZoo on/off value (True/False, 1/0, yes/no, on/off) -> bool; a bare flag means True."""
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError("expected True or False, not %r" % (text,))


def add_npu_debug_flags(parser):
    """ModelZoo's NPU debugging flags (Ascend only; other devices accept them and say so)."""
    add = parser.add_argument
    add("--profiling", dest="profiling", type=switch, nargs="?", const=True, default=False,
        help="NPU: profile with NpuOptimizer profiling_mode/profiling_options; written under "
             "<rank dir>/profiling (or --profiling_dump_path)")
    add("--profiling-dump-path", "--profiling_dump_path", dest="profiling_dump_path", default=None,
        help="NPU: directory for --profiling output")
    add("--over-dump", "--over_dump", dest="over_dump", type=switch, nargs="?", const=True, default=False,
        help="NPU: overflow detection dump (enable_dump_debug, dump_debug_mode=all) under "
             "<rank dir>/overflow_dump (or --over_dump_path)")
    add("--over-dump-path", "--over_dump_path", dest="over_dump_path", default=None,
        help="NPU: directory for --over_dump output")
    add("--data-dump-flag", "--data_dump_flag", dest="data_dump_flag", type=switch, nargs="?", const=True,
        default=False, help="NPU: dump operator outputs (enable_dump) of the steps in --data_dump_step under "
                            "<rank dir>/data_dump (or --data_dump_path)")
    add("--data-dump-step", "--data_dump_step", dest="data_dump_step", default=None,
        help="NPU: steps to dump, the adapter's dump_step format, e.g. 10 or 0|5|10-20 (default: all)")
    add("--data-dump-path", "--data_dump_path", dest="data_dump_path", default=None,
        help="NPU: directory for --data_dump_flag output")
    add("--bind-core", "--bind_core", dest="bind_core", type=switch, nargs="?", const=True, default=None,
        help="accepted for ModelZoo scripts; the launcher always binds each rank to its share of the cores")


def check_dump_step(text):
    """TrainError unless ``text`` is the adapter's dump_step format: 'N' or 'A-B' items joined by '|', at
    most 100, A < B (tf_adapter/util/npu_attrs.cc checkDumpStep, master :236-266, development :88-112)."""
    items = str(text).split("|")
    fix = "; use steps like 10 or 0|5|10-20"
    if len(items) > 100:
        raise TrainError("--data_dump_step lists %d sets; the adapter takes at most 100" % len(items))
    for item in items:
        ends = item.split("-")
        if len(ends) > 2 or not all(end.isdigit() for end in ends):
            raise TrainError("--data_dump_step %r is not in the adapter's format%s" % (text, fix))
        if len(ends) == 2 and int(ends[0]) >= int(ends[1]):
            raise TrainError("--data_dump_step range %r must go up%s" % (item, fix))


def parse_loss_scale(value):
    """None (the device's default), 'off', 'dynamic' or a fixed float >= 1 (pure; TrainError says why)."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text in ("off", "none", "0", "false"):
        return "off"
    if text in ("dynamic", "true", "on", "yes"):  # ModelZoo scripts write --loss_scale=True too
        return "dynamic"
    try:
        number = float(text)
    except ValueError:
        number = 0.0
    if not number >= 1 or number == float("inf"):
        raise TrainError("loss scale %r is not valid; use 'dynamic', 'off' or a number >= 1" % (value,))
    return number


def check_data_flags(args):
    """TrainError naming the fix for a data flag out of range (pure)."""
    if args.label_offset < 0:
        raise TrainError("--label-offset must be 0 or more (1 for TF-Slim ImageNet records)")
    if args.num_classes is not None and args.num_classes < 1:
        raise TrainError("--num-classes must be at least 1")


def data_options(argv):
    """{'label_offset', 'num_classes'} from a trainer's argument list, ignoring every other flag.

    The launcher calls this on the arguments it passes through, so its data check and the trainer
    read the dataset alike from one definition of the flags (this module imports no TensorFlow).
    """
    parser = _Parser(prog="python -m train", add_help=False, allow_abbrev=False)
    add_data_flags(parser)
    args, _ = parser.parse_known_args(list(argv))
    check_data_flags(args)
    return {"label_offset": args.label_offset, "num_classes": args.num_classes}


def parse_flags(argv):
    """Parsed and checked flags (argparse.Namespace); TrainError names the fix."""
    parser = build_parser()
    clash = flags.conflict(parser, argv)
    if clash:
        raise TrainError(clash)
    args = parser.parse_args(argv)
    args.given = sorted(flags.dests_given(parser, argv))
    if not args.model:
        raise TrainError("--model is required, e.g. --model mobilenetv3_small")
    for name in ("batch_size", "image_size", "log_every", "keep_checkpoints"):
        if getattr(args, name) <= 0:
            raise TrainError("--%s must be positive" % name.replace("_", "-"))
    if args.eval_batch_size is not None and args.eval_batch_size <= 0:
        raise TrainError("--eval-batch-size must be positive")
    if args.epochs <= 0 and not args.max_steps:
        raise TrainError("--epochs must be positive (or give --max-steps)")
    if args.max_steps is not None and args.max_steps <= 0:
        raise TrainError("--max-steps must be positive")
    if args.learning_rate <= 0:
        raise TrainError("--learning-rate must be positive")
    if args.allreduce_bucket_mb is not None and args.allreduce_bucket_mb < 0:
        raise TrainError("--allreduce-bucket-mb must be 0 (one collective per tensor) or more")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise TrainError("--label-smoothing must be in [0, 1)")
    if args.bn_recalibrate_batches < 0:
        raise TrainError("--bn-recalibrate-batches must be 0 (off) or more")
    if args.bn_momentum is not None and not 0.0 <= args.bn_momentum < 1.0:
        raise TrainError("--bn-momentum must be in [0, 1), e.g. 0.9 (it is the moving-average decay)")
    if args.augment is None:
        args.augment = "imagenet" if args.image_size >= SMALL_IMAGE_SIZE else "light"
    if args.eval_only and not args.eval:
        raise TrainError("--eval-only and --no-eval contradict each other; give one")
    if args.freeze_backbone and not args.finetune:
        raise TrainError("--freeze-backbone needs --finetune CKPT (a backbone to keep)")
    check_data_flags(args)
    check_resume(args)
    if args.finetune:
        checkpoint_path(args.finetune, "--finetune")
    if args.iterations_per_loop < 1:
        raise TrainError("--iterations-per-loop must be 1 or more (ModelZoo scripts use 100)")
    if args.data_dump_step is not None:
        check_dump_step(args.data_dump_step)
    parse_loss_scale(args.loss_scale)
    args.lr_boundaries = parse_boundaries(args.lr_boundaries)
    if args.lr_schedule == "piecewise" and not args.lr_boundaries:
        raise TrainError("--lr-schedule piecewise needs --lr-boundaries, e.g. --lr-boundaries 30,60,80")
    return args


def check_resume(args):
    """--resume auto|never|PATH (PATH: a checkpoint prefix, its .index file, or a directory with one)."""
    value = args.resume
    if value in (RESUME_AUTO, RESUME_NEVER):
        if args.eval_only and value == RESUME_NEVER:
            raise TrainError("--eval-only evaluates a checkpoint: give --resume PATH or --resume auto, "
                             "not never")
        return
    if not value:
        raise TrainError("--resume needs auto, never or a checkpoint path")
    args.resume = checkpoint_path(value, "--resume", "auto, never or ")


def checkpoint_path(value, flag, also=""):
    """A checkpoint prefix or a directory holding one, from what a user typed (the prefix, its .index or
    .data file, a directory); TrainError naming ``flag`` when there is none. No TensorFlow: the launcher
    checks --resume PATH and --finetune with it before any rank starts."""
    prefix = value[:-len(".index")] if value.endswith(".index") else value
    if ".data-" in prefix:
        prefix = prefix.split(".data-")[0]
    if os.path.isdir(prefix):
        if not os.path.exists(os.path.join(prefix, "checkpoint")):
            raise TrainError("%s %s: that directory holds no checkpoint (no `checkpoint` index file); give "
                             "%sa checkpoint prefix such as DIR/model.ckpt-1000" % (flag, value, also))
        return prefix
    if not os.path.exists(prefix + ".index"):
        raise TrainError("%s %s: no such checkpoint (no %s.index); give %sa checkpoint prefix such as "
                         "DIR/model.ckpt-1000" % (flag, value, prefix, also))
    return prefix


def parse_boundaries(text):
    """'30,60' -> [30.0, 60.0] (epochs, strictly increasing)."""
    if not text:
        return []
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TrainError("--lr-boundaries must be comma-separated epochs such as 30,60,80, not %r"
                         % text) from None
    if any(b <= a for a, b in zip(values, values[1:])) or any(v <= 0 for v in values):
        raise TrainError("--lr-boundaries must be positive and increasing, got %r" % text)
    return values


Placement = namedtuple("Placement", [
    "rank", "size", "device_kind", "backend_kind", "output_dir", "rank_dir", "checkpoint_dir",
    "metrics_file", "error_file", "intra_threads", "inter_threads", "restart",
    "peers",               # LAUNCH_PEERS as a list, rank order ([] on one rank / Ascend): names a lost peer
    "collective_timeout",  # LAUNCH_COLLECTIVE_TIMEOUT in seconds
])


def placement_from_env(env, args=None):
    """Where this rank sits and where it writes, from the launcher's variables (contract.worker_env; pure).

    ``--output-dir`` / ``--checkpoint-dir`` win over the environment; unset paths derive from the output
    directory. A malformed variable is a TrainError naming it.
    """
    try:
        settings = worker_env.from_env(env)
    except worker_env.EnvError as error:
        raise TrainError(str(error)) from None
    kind = settings.backend
    backend = allreduce_kind(kind, settings.size)
    output = (args.output_dir if args is not None and args.output_dir else None) or \
        settings.output_dir or os.path.abspath("output")
    rank_dir = settings.rank_dir or os.path.join(output, str(settings.rank))
    ckpt = (args.checkpoint_dir if args is not None and args.checkpoint_dir else None) or \
        settings.checkpoint_dir or os.path.join(output, "checkpoints")
    return Placement(
        rank=settings.rank, size=settings.size, device_kind=kind, backend_kind=backend,
        output_dir=output, rank_dir=rank_dir, checkpoint_dir=ckpt,
        metrics_file=settings.metrics_file or os.path.join(rank_dir, "metrics.jsonl"),
        error_file=settings.error_file or os.path.join(rank_dir, "error.json"),
        intra_threads=settings.intra_threads, inter_threads=settings.inter_threads, restart=settings.restart,
        peers=settings.peers, collective_timeout=settings.collective_timeout,
    )
