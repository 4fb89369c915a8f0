"""Allreduce backends: the factory, the shared base and the single-device ``none`` backend.

Why: the trainer builds one graph for every kind of hardware; only how gradients are averaged, how the
session is configured and how rank 0's variables reach the others differ. ``make_backend`` (or
``backend_from_env`` in a worker the launcher started) returns an object with the same methods for
``none`` (one device), ``collective`` (TF collective ops between processes, CPU/GPU) and ``hccl``
(Ascend, through npu_bridge). Mixed precision is chosen here too: TF's graph rewrite with loss scaling
on GPU, ``precision_mode`` on NPU, float32 on CPU.
"""
import logging
import os

from tfcompat import tf
from train import session_config
from train.errors import TrainError

LOG = logging.getLogger(__name__)

KINDS = ("none", "collective", "hccl")
DEVICES = ("cpu", "gpu", "npu")
# precision_mode values of the Ascend adapter; the first three compute in float16 where the device can.
MIXED_MODES = ("allow_mix_precision", "allow_fp32_to_fp16", "force_fp16")
PRECISION_MODES = MIXED_MODES + ("must_keep_origin_dtype", "force_fp32")
DEFAULT_TIMEOUT = 300.0
DEFAULT_BUCKET_BYTES = 4 * 1024 * 1024


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


def make_backend(kind, rank=0, size=1, peers=None, timeout=DEFAULT_TIMEOUT, bucket_bytes=DEFAULT_BUCKET_BYTES,
                 precision_mode=None, loss_scale=None, device=None, intra_op_threads=0, inter_op_threads=0,
                 iterations_per_loop=1, op_timeouts=None, allreduce_dtype=None):
    """The backend object for ``kind`` in none, collective, hccl (see docs/backends.md).

    ``op_timeouts`` (collective): None uses per-op collective timeouts where TensorFlow has them
    (TF >= 2.x) and the session's operation timeout otherwise (TF 1.15); False forces the latter.
    ``allreduce_dtype`` (collective): float16 or bfloat16 sends the gradients in that dtype (half the
    bytes); None or float32 keeps their own. The other backends have nothing to send it to (logged).
    """
    if kind not in KINDS:
        raise BackendError("backend %r is unknown; use one of %s" % (kind, ", ".join(KINDS)))
    if device is None:
        device = "npu" if kind == "hccl" else "cpu"
    common = dict(device=device, precision_mode=precision_mode, loss_scale=loss_scale,
                  intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads)
    if kind == "none":
        if allreduce_dtype not in (None, "", "float32"):
            LOG.info("allreduce dtype %s ignored: one rank sends nothing", allreduce_dtype)
        if int(size) != 1:
            raise BackendError("backend none runs one rank, not %s; use collective or hccl" % size)
        return Backend(rank, size, **common)
    if kind == "collective":
        from train.collective_backend import CollectiveBackend
        return CollectiveBackend(rank, size, peers, timeout=timeout, bucket_bytes=bucket_bytes,
                                 op_timeouts=op_timeouts, allreduce_dtype=allreduce_dtype, **common)
    if allreduce_dtype not in (None, "", "float32"):
        LOG.info("allreduce dtype %s ignored by the %s backend (collective only)", allreduce_dtype, kind)
    from train.npu_backend import HcclBackend
    return HcclBackend(rank, size, iterations_per_loop=iterations_per_loop, **common)


def _env_int(env, name, default):
    text = str(env.get(name, "") or "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise BackendError("%s=%r is not a whole number; the launcher sets it, or set it yourself"
                           % (name, text)) from None


def _env_float(env, name, default):
    text = str(env.get(name, "") or "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise BackendError("%s=%r is not a number of seconds" % (name, text)) from None


def plan_from_env(env=None, **flags):
    """The keyword arguments of make_backend for this worker's environment (pure)."""
    env = os.environ if env is None else env
    device = str(env.get("LAUNCH_BACKEND", "") or "cpu").strip().lower()
    if device not in DEVICES:
        raise BackendError("LAUNCH_BACKEND=%r is unknown; use npu, gpu or cpu" % device)
    size = _env_int(env, "RANK_SIZE", 1)
    rank = _env_int(env, "RANK_ID", 0)
    if device == "npu":
        kind = "hccl"
    else:
        kind = "collective" if size > 1 else "none"
    try:
        intra, inter = session_config.threads_from_env(env)
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    plan = dict(kind=kind, rank=rank, size=size, device=device, intra_op_threads=intra,
                inter_op_threads=inter)
    if kind == "collective":
        peers = str(env.get("LAUNCH_PEERS", "") or "").strip()
        if not peers:
            raise BackendError("RANK_SIZE=%d on %s needs LAUNCH_PEERS (host:port per rank); start the job "
                               "with the launcher or set it" % (size, device))
        plan["peers"] = peers
        plan["timeout"] = _env_float(env, "LAUNCH_COLLECTIVE_TIMEOUT", DEFAULT_TIMEOUT)
    plan.update(flags)
    return plan


def backend_from_env(env=None, **flags):
    """make_backend with rank, size, device, peers, timeout and threads from the launcher's variables.

    LAUNCH_BACKEND npu -> hccl; cpu/gpu with RANK_SIZE > 1 -> collective; otherwise none. ``flags``
    (precision_mode, loss_scale, bucket_bytes, ...) are passed on and override the environment.
    """
    return make_backend(**plan_from_env(env, **flags))
