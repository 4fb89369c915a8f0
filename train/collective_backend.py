"""Gradient allreduce between worker processes with TensorFlow collective ops (CPU, GPU).

Why: on CPU/GPU the same TF1-style graph must train on many processes without Horovod or NCCL
launchers. Each rank runs one ``tf.distribute.Server``; its graph stays on its own task (device filter)
and the ranks meet only in collective ops: one CollectiveReduce per bucket of gradients (fewer, larger
messages; each bucket can start as soon as its gradients exist, so communication overlaps the rest of
the backward pass), and CollectiveBcastSend/Recv for rank 0's initial variables. Every collective has a
timeout so that a dead or frozen peer makes the others fail instead of hanging.

Averaging is the collective's own sum and division (``final_op="Div"``: each chunk is divided once, by
the rank that finishes reducing it, before the ring hands the same bytes to every rank), so all ranks
apply bit-identical updates. Optionally the gradients travel as float16 or bfloat16 (half the bytes;
cast back to their own dtype after the reduction, identically on every rank). On GPU the collectives ask
for NCCL where this TensorFlow has the ``communication_hint`` attribute and NCCL; the ring otherwise.

On CPU with every rank on one host (the launcher sets LAUNCH_SHM_DIR then) every collective goes through
shared memory instead (train/shm_allreduce.py: 6 MB in 2.5 ms instead of 21.6 ms, bench/RESULTS.md)
and no gRPC server runs: the session is a plain local one, as for a single worker (the server's own
per-step cost was 10% of a small step). Each bucket is a ``tf.numpy_function`` that blocks until every
rank has written its copy, so the buckets of one call (the gradients, a sum, the broadcast) run one
after another in the order they were built (a control dependency each), the same on every rank. The
broadcast is a sum in which every rank but 0 contributes zeros.
"""
import inspect
import logging
import socket
import time

from tfcompat import tf
from train import session_config
from train.backend_base import (
    DEFAULT_BUCKET_BYTES,
    DEFAULT_TIMEOUT,
    Backend,
    BackendError,
    counter_variables,
    counters_to_floats,
    floating_variables,
    set_counters_op,
)
from train.shm_allreduce import SharedMemoryAllreduce

LOG = logging.getLogger(__name__)
JOB_NAME = "worker"
GROUP_KEY = 1
# Wire dtypes for gradients: None keeps each gradient's own dtype.
WIRE_DTYPES = ("float32", "float16", "bfloat16")


def plan_buckets(sizes, bucket_bytes):
    """Split item indices, in the given order, into consecutive buckets of at most ``bucket_bytes``.

    ``sizes`` is a list of (bytes, dtype) pairs; a bucket never mixes dtypes and a single item larger
    than the limit gets a bucket of its own. ``bucket_bytes`` <= 0 means one collective per item.
    Returns a list of index lists (pure).
    """
    buckets, current, current_bytes, current_dtype = [], [], 0, None
    for index, (nbytes, dtype) in enumerate(sizes):
        full = current and (bucket_bytes <= 0 or current_bytes + nbytes > bucket_bytes)
        if current and (full or dtype != current_dtype):
            buckets.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += nbytes
        current_dtype = dtype
    if current:
        buckets.append(current)
    return buckets


def parse_peers(peers):
    """``host:port,host:port`` or a list of them -> list of 'host:port' strings (validated)."""
    if isinstance(peers, str):
        peers = [item for item in peers.split(",") if item.strip()]
    result = []
    for item in peers or []:
        text = str(item).strip()
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BackendError("peer %r is not host:port; LAUNCH_PEERS must list host:port for every rank"
                               % text)
        result.append(text)
    return result


def wait_for_peers(peers, rank, timeout, poll=0.2):
    """Block until every other rank's server accepts TCP connections; BackendError after ``timeout``."""
    deadline = time.time() + float(timeout)
    waiting = [(index, peer) for index, peer in enumerate(peers) if index != rank]
    while waiting:
        still = []
        for index, peer in waiting:
            host, _, port = peer.rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=min(2.0, timeout)).close()
            except (OSError, ValueError):
                still.append((index, peer))
        waiting = still
        if waiting and time.time() >= deadline:
            names = ", ".join("rank %d at %s" % item for item in waiting)
            raise BackendError("collective peers unreachable after %gs: %s; check that every rank started, "
                               "the addresses in LAUNCH_PEERS and firewalls, or raise "
                               "LAUNCH_COLLECTIVE_TIMEOUT" % (float(timeout), names))
        if waiting:
            time.sleep(poll)


def parse_wire_dtype(value):
    """None for the gradients' own dtype, else one of WIRE_DTYPES (from a flag)."""
    if value in (None, "", "float32"):
        return None
    if value not in WIRE_DTYPES:
        raise BackendError("allreduce dtype %r is unknown; use one of %s" % (value, ", ".join(WIRE_DTYPES)))
    return value


def choose_communication(device_kind, has_hint, nccl_available):
    """(communication_hint or None, reason) for the collective ops (pure).

    NCCL only on GPU, when the collective ops take the hint (TF 1.15 and later do) and this TensorFlow
    has NCCL and sees a GPU; the ring everywhere else. None: the ops have no hint attribute at all.
    """
    if not has_hint:
        return None, "this TensorFlow's collective ops take no communication_hint: its default (ring)"
    if device_kind == "gpu" and nccl_available:
        return "nccl", "GPU with NCCL"
    if device_kind == "gpu":
        return "ring", "GPU but no NCCL or no visible GPU in this TensorFlow: ring"
    return "ring", "%s: ring" % device_kind


def nccl_available():
    """True when this TensorFlow was built with CUDA (which brings NCCL) and sees a GPU."""
    try:
        return bool(tf.test.is_built_with_cuda() and tf.config.experimental.list_physical_devices("GPU"))
    except (AttributeError, RuntimeError):
        return False


def _supports_attr(op_function, name):
    """True when this TensorFlow's raw op takes the attribute (TF 1.15 lacks ``timeout_seconds``)."""
    try:
        return name in inspect.signature(op_function).parameters
    except (TypeError, ValueError):
        return False


class AllreduceOptimizer(tf.compat.v1.train.Optimizer):
    """Wraps a tf.compat.v1 optimizer: compute_gradients returns gradients averaged over all ranks."""

    def __init__(self, optimizer, backend, name=None):
        self._optimizer = optimizer
        self._backend = backend
        super().__init__(
            use_locking=False, name=name or "Allreduce%s" % type(optimizer).__name__)

    def compute_gradients(self, *args, **kwargs):
        grads_and_vars = self._optimizer.compute_gradients(*args, **kwargs)
        grads = self._backend.allreduce_mean([grad for grad, _ in grads_and_vars])
        return list(zip(grads, [var for _, var in grads_and_vars]))

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        return self._optimizer.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def get_slot(self, *args, **kwargs):
        return self._optimizer.get_slot(*args, **kwargs)

    def get_slot_names(self, *args, **kwargs):
        return self._optimizer.get_slot_names(*args, **kwargs)

    def variables(self, *args, **kwargs):
        return self._optimizer.variables(*args, **kwargs)


class CollectiveBackend(Backend):
    """One tf.distribute.Server per rank; collectives with a timeout; fused gradient buckets."""

    kind = "collective"

    def __init__(self, rank, size, peers, timeout=DEFAULT_TIMEOUT, bucket_bytes=DEFAULT_BUCKET_BYTES,
                 start_server=True, op_timeouts=None, allreduce_dtype=None, nccl=None, shm_dir=None,
                 **options):
        super().__init__(rank, size, **options)
        self.peers = parse_peers(peers)
        if len(self.peers) != size:
            raise BackendError("LAUNCH_PEERS lists %d address(es) but RANK_SIZE is %d; give one host:port "
                               "per rank" % (len(self.peers), size))
        self.timeout = float(timeout)
        if self.timeout <= 0:
            raise BackendError("collective timeout must be > 0 seconds (LAUNCH_COLLECTIVE_TIMEOUT)")
        self.bucket_bytes = int(bucket_bytes)
        self._instance_key = 0
        # Per-op timeouts where this TensorFlow has them (not 1.15); else the session's operation timeout.
        if op_timeouts is None:
            op_timeouts = _supports_attr(tf.raw_ops.CollectiveReduce, "timeout_seconds")
        self._op_timeout = bool(op_timeouts)
        self.wire_dtype = parse_wire_dtype(allreduce_dtype)
        if nccl is None:
            nccl = self.device_kind == "gpu" and nccl_available()
        self.communication, reason = choose_communication(
            self.device_kind, _supports_attr(tf.raw_ops.CollectiveReduce, "communication_hint"), nccl)
        LOG.info("collectives: %s (%s)", self.communication or "default", reason)
        self.shm = None
        if shm_dir and self.device_kind == "cpu" and size > 1:
            self.shm = SharedMemoryAllreduce(rank, size, shm_dir, self.timeout)
            LOG.info("gradients: shared-memory allreduce in %s (every rank on this host)", shm_dir)
            if self.wire_dtype:
                # nothing travels: halving the bytes saves no time, and numpy sums float16 slowly
                LOG.info("allreduce dtype %s ignored: on one host the gradients go through shared memory "
                         "in their own dtype", self.wire_dtype)
        elif shm_dir:
            LOG.info("gradients: collective ops (the shared-memory allreduce is for CPU ranks; this is %s)",
                     self.device_kind)
        self._server = None
        if start_server and self.shm is None:
            self._server = self._start_server()
            wait_for_peers(self.peers, self.rank, self.timeout)

    def _start_server(self):
        cluster = tf.train.ClusterSpec({JOB_NAME: self.peers})
        try:
            return tf.distribute.Server(cluster, job_name=JOB_NAME, task_index=self.rank, protocol="grpc",
                                        config=self.session_config(), start=True)
        except (tf.errors.OpError, RuntimeError) as exc:
            raise BackendError("rank %d cannot start its collective server on %s (%s); free the port or "
                               "choose other LAUNCH_PEERS" % (self.rank, self.peers[self.rank],
                                                              str(exc).splitlines()[0])) from None

    # -- session ---------------------------------------------------------------------------------
    def _add_to_config(self, config):
        if self.shm is not None:            # a local session: the ranks meet in shared memory only
            return config
        return session_config.add_collective(config, self.rank, JOB_NAME, timeout=self.timeout,
                                             op_level_timeout=self._op_timeout)

    def session_target(self):
        return self._server.target if self._server is not None else ""

    # -- collectives -----------------------------------------------------------------------------
    def _next_key(self):
        self._instance_key += 1
        return self._instance_key

    def describe(self):
        return "%s collectives %s buckets %d bytes wire %s gradients via %s" % (
            super().describe(), self.communication or "default", self.bucket_bytes,
            self.wire_dtype or "gradient dtype", "shared memory" if self.shm else "collective ops")

    def _common(self):
        extra = {}
        if self._op_timeout:
            extra["timeout_seconds"] = self.timeout
        if self.communication:
            extra["communication_hint"] = self.communication
        return extra

    def _reduce(self, tensor, final_op="Id"):
        """One CollectiveReduce: the sum over ranks ("Id") or the mean ("Div": divided by the rank count)."""
        return tf.raw_ops.CollectiveReduce(
            input=tensor, group_size=self.size, group_key=GROUP_KEY, instance_key=self._next_key(),
            merge_op="Add", final_op=final_op, subdiv_offsets=[0], **self._common())

    def allreduce_sum(self, tensors):
        tensors = [tf.convert_to_tensor(t) for t in tensors]
        with tf.compat.v1.name_scope("allreduce_sum"):
            return self._fused(tensors, divide=False)

    def allreduce_mean(self, tensors):
        """Averages a list of tensors over ranks (None entries stay None); used for gradients."""
        dense = [None if t is None else tf.convert_to_tensor(t) for t in tensors]
        present = [index for index, t in enumerate(dense) if t is not None]
        with tf.compat.v1.name_scope("allreduce_gradients"):
            # Last layers' gradients come first in the backward pass: bucket them first.
            order = list(reversed(present))
            reduced = self._fused([dense[i] for i in order], divide=True)
        result = list(dense)
        for index, value in zip(order, reduced):
            result[index] = value
        return result

    def _fused(self, tensors, divide):
        sizes = [(_num_bytes(t), t.dtype.base_dtype) for t in tensors]
        out = [None] * len(tensors)
        previous = None                     # shared memory: this call's buckets run one after another
        for bucket in plan_buckets(sizes, self.bucket_bytes):
            parts = [tensors[i] for i in bucket]
            if len(parts) == 1:
                flat = parts[0]
            else:
                flat = tf.concat([tf.reshape(p, [-1]) for p in parts], axis=0)
            dtype = flat.dtype.base_dtype
            if self.shm:
                total = previous = self._shm_reduce(flat, divide, after=previous)
            elif divide and self.wire_dtype and dtype.is_floating and self.wire_dtype != dtype.name:
                total = tf.cast(self._reduce(tf.cast(flat, self.wire_dtype), "Div"), dtype)
            else:
                total = self._reduce(flat, "Div" if divide else "Id")
            if len(parts) == 1:
                out[bucket[0]] = total
                continue
            pieces = tf.split(total, [_num_elements(p) for p in parts], axis=0)
            for index, piece, part in zip(bucket, pieces, parts):
                out[index] = tf.reshape(piece, part.shape.as_list())
        return out

    def _shm_reduce(self, flat, divide, after=None):
        """The sum (or mean) over ranks through shared memory, run after the tensor ``after`` (the same
        call's previous bucket) when given."""
        self.shm.reserve(_num_bytes(flat))
        with tf.control_dependencies([after] if after is not None else []):
            total = tf.numpy_function(self._shm_mean if divide else self._shm_sum, [flat],
                                      flat.dtype.base_dtype, name="shm_allreduce")
        total.set_shape(flat.shape)
        return total

    def _shm_mean(self, array):
        return self.shm.allreduce(array, divide=True)

    def _shm_sum(self, array):
        return self.shm.allreduce(array, divide=False)

    def broadcast_variables_op(self, variables):
        """Rank 0 sends each float variable's value; the others assign what they receive. Counters are set
        from rank 0's values carried in one float32 tensor (as on Ascend, where HCCL may not take int64)."""
        if self.shm is not None:
            return self._shm_broadcast(variables)
        ops = []
        with tf.compat.v1.name_scope("broadcast_from_rank0"):
            for var in floating_variables(variables):
                ops.append(self._broadcast(var.read_value(),
                                           lambda value, var=var: tf.compat.v1.assign(var, value).op))
            counters = counter_variables(variables)
            if counters:
                ops.append(self._broadcast(counters_to_floats(counters),
                                           lambda value: set_counters_op(counters, value)))
        return tf.group(*ops)

    def _shm_broadcast(self, variables):
        """Shared memory: every rank sums rank 0's values and everyone else's zeros (x + 0 is x), fused
        into buckets like the gradients; the counters travel as in broadcast_variables_op."""
        floats, counters = floating_variables(variables), counter_variables(variables)
        values = [var.read_value() for var in floats] + ([counters_to_floats(counters)] if counters else [])
        if self.rank != 0:
            values = [tf.zeros_like(value) for value in values]
        with tf.compat.v1.name_scope("broadcast_from_rank0"):
            received = self._fused(values, divide=False)
            ops = [tf.compat.v1.assign(var, value).op for var, value in zip(floats, received)]
            if counters:
                ops.append(set_counters_op(counters, received[-1]))
        return tf.group(*ops)

    def _broadcast(self, tensor, assign):
        """Rank 0: send ``tensor``; other ranks: receive it and return ``assign(received)``."""
        common = dict(group_size=self.size, group_key=GROUP_KEY, instance_key=self._next_key(),
                      shape=tensor.shape.as_list(), **self._common())
        if self.rank == 0:
            return tf.raw_ops.CollectiveBcastSend(input=tensor, **common)
        return assign(tf.raw_ops.CollectiveBcastRecv(T=tensor.dtype.base_dtype, **common))

    def wrap_optimizer(self, optimizer):
        return self._mixed_precision(AllreduceOptimizer(optimizer, self))

    def close(self):
        # tf.distribute.Server has no public stop; it ends with the process.
        self._server = None
        if self.shm is not None:
            self.shm.close()


def _num_elements(tensor):
    shape = tensor.shape.as_list()
    if any(dim is None for dim in shape):
        raise BackendError("allreduce needs static shapes; got %s for %s" % (shape, tensor.name))
    count = 1
    for dim in shape:
        count *= dim
    return count


def _num_bytes(tensor):
    return _num_elements(tensor) * tensor.dtype.base_dtype.size
