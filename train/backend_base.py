"""The allreduce backends' shared base: the single-device ``none`` backend, its error type and the
precision and loss-scale rules every backend applies.

Why a module of its own: train/backends.py (the factory) imports every backend, and every backend
(collective_backend, npu_backend) derives from this one, so nothing imports in a circle.
"""
import logging

from contract import worker_env
from tfcompat import tf
from train import session_config
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
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text in ("off", "none", "0", "false"):
        return "off"
    if text == "dynamic":
        return "dynamic"
    try:
        number = float(text)
    except ValueError:
        number = 0.0
    if number < 1:
        raise BackendError("loss scale %r is not valid; use 'dynamic', 'off' or a number >= 1" % (value,))
    return number


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


class Backend:
    """The single-device backend (``none``) and the base of the others."""

    kind = "none"

    def __init__(self, rank=0, size=1, device="cpu", precision_mode=None, loss_scale=None,
                 intra_op_threads=0, inter_op_threads=0):
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

    @property
    def mixed_precision(self):
        """True when the graph computes in float16 where safe (GPU rewrite or NPU precision_mode)."""
        return self.device_kind != "cpu" and self.precision_mode in MIXED_MODES

    def describe(self):
        """One line for the log."""
        return ("backend %s rank %d/%d device %s precision %s loss scale %s"
                % (self.kind, self.rank, self.size, self.device_kind, self.precision_mode,
                   self.loss_scale or "default"))

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
        """GPU mixed precision: dynamic (or fixed) loss scaling around the optimizer."""
        if not (self.mixed_precision and self.device_kind == "gpu") or self.loss_scale == "off":
            return optimizer
        scale = "dynamic" if self.loss_scale in (None, "dynamic") else self.loss_scale
        return tf.compat.v1.train.experimental.MixedPrecisionLossScaleOptimizer(optimizer, scale)

    def allreduce_sum(self, tensors):
        """Sum of each tensor over all ranks (list in, list out)."""
        return [tf.identity(t) for t in tensors]

    def allreduce_mean(self, tensors):
        """Mean of each tensor over all ranks; None entries stay None."""
        return [None if t is None else tf.identity(t) for t in tensors]

    def broadcast_variables_op(self, variables):
        """An op that gives every rank rank 0's values; nothing to do on one rank."""
        del variables
        return tf.no_op(name="broadcast_from_rank0")

    def close(self):
        """Release what the backend holds (servers, devices)."""
