"""Allreduce backends: the factory (make_backend, and backend_from_env in a worker the launcher started).

Why: the trainer builds one graph for every kind of hardware; only how gradients are averaged, how the
session is configured and how rank 0's variables reach the others differ. ``make_backend`` returns an
object with the same methods (train/backend_base.Backend) for ``none`` (one device), ``collective`` (TF
collective ops between processes, CPU/GPU) and ``hccl`` (Ascend, through npu_bridge). Mixed precision is
chosen in the base: TF's graph rewrite with loss scaling on GPU, ``precision_mode`` on NPU, float32 on CPU.
"""
import logging
import os

from contract import worker_env
from train.backend_base import (  # noqa: F401  (the backends' public names, re-exported for callers)
    DEFAULT_BUCKET_BYTES,
    DEFAULT_TIMEOUT,
    DEVICES,
    Backend,
    BackendError,
    counter_variables,
    counters_to_floats,
    floating_variables,
    parse_loss_scale,
    resolve_precision_mode,
    set_counters_op,
)
from train.collective_backend import CollectiveBackend
from train.config import BACKEND_KINDS, PRECISION_MODES, allreduce_kind  # noqa: F401
from train.npu_backend import HcclBackend

LOG = logging.getLogger(__name__)
KINDS = ("none", "collective", "hccl")


def make_backend(kind, rank=0, size=1, peers=None, timeout=DEFAULT_TIMEOUT, bucket_bytes=DEFAULT_BUCKET_BYTES,
                 precision_mode=None, loss_scale=None, device=None, intra_op_threads=0, inter_op_threads=0,
                 iterations_per_loop=1, op_timeouts=None, allreduce_dtype=None, debug_plan=None,
                 shm_dir=None):
    """The backend object for ``kind`` in none, collective, hccl (see docs/backends.md).

    ``op_timeouts`` (collective): None uses per-op collective timeouts where TensorFlow has them
    (TF >= 2.x) and the session's operation timeout otherwise (TF 1.15); False forces the latter.
    ``allreduce_dtype`` (collective): float16 or bfloat16 sends the gradients in that dtype (half the
    bytes); None or float32 keeps their own. The other backends have nothing to send it to (logged).
    ``shm_dir`` (collective, CPU): average the gradients through shared memory in that directory (every
    rank on one host; LAUNCH_SHM_DIR); None uses the collective ops.
    """
    if kind not in KINDS:
        raise BackendError("backend %r is unknown; use one of %s" % (kind, ", ".join(KINDS)))
    if device is None:
        device = "npu" if kind == "hccl" else "cpu"
    common = dict(device=device, precision_mode=precision_mode, loss_scale=loss_scale,
                  intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads,
                  iterations_per_loop=iterations_per_loop)
    if kind != "hccl" and debug_plan:
        LOG.info("--profiling, --over_dump and --data_dump_flag are NPU-only: ignored on %s", device)
    if kind == "none":
        if allreduce_dtype not in (None, "", "float32"):
            LOG.info("allreduce dtype %s ignored: one rank sends nothing", allreduce_dtype)
        if int(size) != 1:
            raise BackendError("backend none runs one rank, not %s; use collective or hccl" % size)
        return Backend(rank, size, **common)
    if kind == "collective":
        return CollectiveBackend(rank, size, peers, timeout=timeout, bucket_bytes=bucket_bytes,
                                 op_timeouts=op_timeouts, allreduce_dtype=allreduce_dtype, shm_dir=shm_dir,
                                 **common)
    if allreduce_dtype not in (None, "", "float32"):
        LOG.info("allreduce dtype %s ignored by the %s backend (collective only)", allreduce_dtype, kind)
    return HcclBackend(rank, size, debug_plan=debug_plan, **common)


def plan_from_env(env=None, **flags):
    """The keyword arguments of make_backend for this worker's environment (contract.worker_env; pure)."""
    env = os.environ if env is None else env
    try:
        settings = worker_env.from_env(env)
    except worker_env.EnvError as error:
        raise BackendError(str(error)) from None
    device = settings.backend
    kind = allreduce_kind(device, settings.size)
    plan = dict(kind=kind, rank=settings.rank, size=settings.size, device=device,
                intra_op_threads=settings.intra_threads, inter_op_threads=settings.inter_threads)
    if kind == "collective":
        if not settings.peers:
            raise BackendError("RANK_SIZE=%d on %s needs LAUNCH_PEERS (host:port per rank); start the job "
                               "with the launcher or set it" % (settings.size, device))
        plan["peers"] = ",".join(settings.peers)
        plan["timeout"] = settings.collective_timeout
        if settings.shm_dir:
            plan["shm_dir"] = settings.shm_dir
    plan.update(flags)
    return plan


def backend_from_env(env=None, **flags):
    """make_backend with rank, size, device, peers, timeout and threads from the launcher's variables.

    LAUNCH_BACKEND npu -> hccl; cpu/gpu with RANK_SIZE > 1 -> collective; otherwise none. ``flags``
    (precision_mode, loss_scale, bucket_bytes, ...) are passed on and override the environment.
    """
    return make_backend(**plan_from_env(env, **flags))
