"""The allreduce backends' shared base: the single-device ``none`` backend, its error type and the
precision and loss-scale rules every backend applies.

Why a module of its own: train/backends.py (the factory) imports every backend, and every backend
(collective_backend, npu_backend) derives from this one, so nothing imports in a circle.
"""
import logging

from contract import worker_env
from tfcompat import tf
from train import config, session_config
from train.config import MIXED_MODES, PRECISION_MODES
from train.errors import TrainError

LOG = logging.getLogger(__name__)

DEVICES = ("cpu", "gpu", "npu")
DEFAULT_BUCKET_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT = worker_env.default("collective_timeout")  # seconds; the launcher's default too


class BackendError(TrainError):
    """A mistake in the backend's settings (environment or flags); the message names the fix."""


def parse_loss_scale(value):
    """None (the device's default), 'off', 'dynamic' or a fixed float >= 1 (from a flag or config)."""
    try:
        return config.parse_loss_scale(value)
    except TrainError as exc:
        raise BackendError(str(exc)) from None


def resolve_precision_mode(device, precision_mode):
    """The precision mode for a device: NPU/GPU default to allow_mix_precision, CPU is always float32."""
    if precision_mode in (None, ""):
        return "force_fp32" if device == "cpu" else "allow_mix_precision"
    if precision_mode not in PRECISION_MODES:
        raise BackendError("precision mode %r is unknown; use one of %s"
                           % (precision_mode, ", ".join(PRECISION_MODES)))
    if device == "cpu" and precision_mode in MIXED_MODES:
        LOG.info("precision mode %s ignored on CPU: CPU trains in float32", precision_mode)
        return "force_fp32"
    return precision_mode


FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32)
COUNTER_DTYPES = (tf.int32, tf.int64)
_HALF = 2 ** 24  # float32 holds every whole number below 2**24 exactly


def floating_variables(variables):
    """The variables a broadcast sends as they are: float16/bfloat16/float32 ones (weights, BatchNorm
    statistics, optimizer slots, the loss scale).

    Counters (int64 global_step, a loss-scale manager's int32 good/bad steps) are never broadcast: HCCL did
    not take int64 before CANN 5 (HcomAllReduce T: {int8, int16, int32, float16, float32},
    tf_adapter/ops/hccl_ops.cc :38 on the development branch). They are set from rank 0's values carried in
    one float32 tensor (counters_to_floats / set_counters_op).
    """
    return [var for var in variables if var.dtype.base_dtype in FLOAT_DTYPES]


def counter_variables(variables):
    """The int32/int64 variables among ``variables`` (global_step, loss-scale counters)."""
    return [var for var in variables if var.dtype.base_dtype in COUNTER_DTYPES]


def counters_to_floats(counters):
    """One float32 vector holding the counters exactly: (value // 2**24, value % 2**24) for each, so any
    count below 2**48 survives the trip (counters are never negative)."""
    parts = []
    for var in counters:
        value = tf.cast(var.read_value(), tf.int64)
        parts += [tf.cast(value // _HALF, tf.float32), tf.cast(value % _HALF, tf.float32)]
    return tf.stack(parts)


def set_counters_op(counters, floats):
    """Assign to each counter the value counters_to_floats packed for it."""
    ops = []
    for index, var in enumerate(counters):
        high = tf.cast(floats[2 * index], tf.int64)
        low = tf.cast(floats[2 * index + 1], tf.int64)
        ops.append(tf.compat.v1.assign(var, tf.cast(high * _HALF + low, var.dtype.base_dtype)).op)
    return tf.group(*ops)


class Backend:
    """The single-device backend (``none``) and the base of the others."""

    kind = "none"

    def __init__(self, rank=0, size=1, device="cpu", precision_mode=None, loss_scale=None,
                 intra_op_threads=0, inter_op_threads=0, iterations_per_loop=1):
        if device not in DEVICES:
            raise BackendError("device %r is unknown; use one of %s" % (device, ", ".join(DEVICES)))
        if int(size) < 1 or not 0 <= int(rank) < int(size):
            raise BackendError("rank %s of size %s is impossible; RANK_ID must be in 0..RANK_SIZE-1"
                               % (rank, size))
        self.rank = int(rank)
        self.size = int(size)
        self.device_kind = device
        self.precision_mode = resolve_precision_mode(device, precision_mode)
        self.loss_scale = parse_loss_scale(loss_scale)
        self.intra_op_threads = int(intra_op_threads or 0)
        self.inter_op_threads = int(inter_op_threads or 0)
        self.iterations_per_loop = int(iterations_per_loop or 1)
        if self.iterations_per_loop < 1:
            raise BackendError("iterations_per_loop must be >= 1")
        self._loss_scale = None

    @property
    def mixed_precision(self):
        """True when the graph computes in float16 where safe (GPU rewrite or NPU precision_mode)."""
        return self.device_kind != "cpu" and self.precision_mode in MIXED_MODES

    def loss_scaling(self):
        """What this rank does: 'off', 'dynamic' or a fixed number. The flag wins on every device; without
        it a mixed precision mode (NPU, GPU) scales dynamically and float32 (CPU) does not scale."""
        if self.loss_scale is None:
            return "dynamic" if self.mixed_precision else "off"
        return self.loss_scale

    def skips_nonfinite_updates(self):
        """Whether the wrapped optimizer skips an update whose gradients are not finite: TF's loss-scale
        optimizer does with a dynamic scale only (a fixed one applies every update)."""
        return self.loss_scaling() == "dynamic"

    def describe(self):
        """One line for the log."""
        return ("backend %s rank %d/%d device %s precision %s loss scale %s"
                % (self.kind, self.rank, self.size, self.device_kind, self.precision_mode,
                   self.loss_scaling()))

    def start(self, config=None):
        """Bring up what the backend needs before the training session (HCCL on Ascend; nothing here)."""
        del config

    # -- session ---------------------------------------------------------------------------------
    def session_config(self, config=None):
        """A ConfigProto for this rank: thread pools, mixed precision on GPU, the backend's additions."""
        result = session_config.base_config(config, self.intra_op_threads, self.inter_op_threads)
        if self.mixed_precision and self.device_kind == "gpu":
            session_config.add_auto_mixed_precision(result)
        return self._add_to_config(result)

    def _add_to_config(self, config):
        return config

    def session_target(self):
        """The target for tf.compat.v1.Session: '' (in-process) unless the backend runs a server."""
        return ""

    # -- graph -----------------------------------------------------------------------------------
    def wrap_optimizer(self, optimizer):
        """An optimizer whose compute_gradients returns rank-averaged gradients (here: one rank)."""
        return self._mixed_precision(optimizer)

    def _mixed_precision(self, optimizer):
        """CPU/GPU loss scaling (TF's MixedPrecisionLossScaleOptimizer): dynamic (TF's DynamicLossScale:
        from 2**15, halved on every overflow, doubled after 2000 finite steps; an overflow step is
        skipped) or a fixed number (never skips, as TF's FixedLossScale)."""
        scaling = self.loss_scaling()
        if scaling == "off":
            return optimizer
        experimental = tf.compat.v1.train.experimental
        if scaling == "dynamic":
            self._loss_scale = experimental.DynamicLossScale()
        else:
            self._loss_scale = experimental.FixedLossScale(float(scaling))
        return experimental.MixedPrecisionLossScaleOptimizer(optimizer, self._loss_scale)

    def loss_scale_tensor(self):
        """The current loss scale as a float32 tensor, or None without loss scaling (after wrap_optimizer)."""
        if self._loss_scale is None:
            return None
        return tf.cast(self._loss_scale(), tf.float32)

    def loop_op(self, sess, train_op):
        """(op to run, steps it runs): one step per sess.run here; the trainer runs a loop of
        iterations_per_loop such runs. The hccl backend returns the adapter's IterationOp instead."""
        del sess
        return train_op, 1

    def allreduce_sum(self, tensors):
        """Sum of each tensor over all ranks (list in, list out)."""
        return [tf.identity(t) for t in tensors]

    def allreduce_mean(self, tensors):
        """Mean of each tensor over all ranks; None entries stay None."""
        return [None if t is None else tf.identity(t) for t in tensors]

    def broadcast_variables_op(self, variables):
        """An op that gives every rank rank 0's values: float variables are broadcast, counters are set
        from rank 0's values carried as floats; nothing to do on one rank."""
        del variables
        return tf.no_op(name="broadcast_from_rank0")

    def close(self):
        """Release what the backend holds (servers, devices)."""
