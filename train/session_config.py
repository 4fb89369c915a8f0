"""Building the worker's tf.compat.v1.ConfigProto, one concern per function.

Why: thread pools must follow the launcher's core binding (two workers on two cores only beat one worker
when each uses cores / workers threads), the collective backend needs its group leader, device filter and
timeout in the config, and GPU mixed precision is TF's graph rewrite, which is switched on in the config.
Each function edits and returns the proto it is given; none of them starts anything.
"""
import os

from contract import worker_env
from tfcompat import tf

# TensorFlow's own variables for its pool sizes (read by TF only when a config leaves a pool at 0).
TF_THREAD_CAPS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def threads_from_env(env=None):
    """(intra, inter) thread-pool sizes from the launcher's variables; 0 means TensorFlow's default.

    A TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS the user exported caps the launcher's size (it
    would otherwise be overridden silently: the config's value wins over TF's variables).
    contract.worker_env.EnvError (a ValueError) names a malformed variable."""
    env = os.environ if env is None else env
    settings = worker_env.from_env(env)
    return tuple(_capped(planned, env.get(name))
                 for planned, name in zip((settings.intra_threads, settings.inter_threads), TF_THREAD_CAPS))


def _capped(planned, cap):
    """`planned` threads, at most `cap` when that is a positive whole number (else ignored, as TF does)."""
    try:
        limit = int(cap)
    except (TypeError, ValueError):
        return planned
    if limit <= 0:
        return planned
    return min(planned, limit) if planned else limit


def base_config(config=None, intra_op_threads=0, inter_op_threads=0):
    """A copy of ``config`` (or a new ConfigProto) with soft placement and the given thread pools."""
    result = tf.compat.v1.ConfigProto()
    if config is not None:
        result.CopyFrom(config)
    result.allow_soft_placement = True
    if intra_op_threads:
        result.intra_op_parallelism_threads = int(intra_op_threads)
    if inter_op_threads:
        result.inter_op_parallelism_threads = int(inter_op_threads)
    return result


def add_collective(config, rank, job_name="worker", timeout=None, op_level_timeout=True):
    """Settings for collective ops between worker processes of one cluster.

    The group leader is rank 0's task; the device filter keeps this rank's graph on its own task (the
    collectives are the only link between ranks). Without an op-level timeout (TF 1.15 has no
    ``timeout_seconds`` attribute on collective ops) the session's operation timeout bounds every
    blocking op instead, so a frozen peer cannot hang the job forever.
    """
    config.experimental.collective_group_leader = "/job:%s/replica:0/task:0" % job_name
    del config.device_filters[:]
    config.device_filters.append("/job:%s/replica:0/task:%d" % (job_name, rank))
    if timeout and not op_level_timeout:
        config.operation_timeout_in_ms = int(float(timeout) * 1000)
    return config


def add_auto_mixed_precision(config):
    """Switch on TF's automatic mixed-precision graph rewrite (float16 where safe, GPU only)."""
    options = config.graph_options.rewrite_options
    options.auto_mixed_precision = options.ON
    return config
