"""The Ascend backend: HCCL allreduce through npu_bridge (CANN's TF 1.15 adapter).

Why one module: npu_bridge and hccl exist only in the CANN image, so this is the only place that imports
them, and only when an ``hccl`` backend is made. Everything follows the adapter's sess.run recipe:
the ``NpuOptimizer`` custom graph optimizer in the session config (use_off_line, precision_mode,
hcom_parallel set explicitly because its default differs between adapter versions; for loop sinking
enable_data_pre_proc and iterations_per_loop; ModelZoo's profiling and dump switches), remapping and
memory optimisation off, NPUDistributedOptimizer for averaged gradients around NPULossScaleOptimizer
with npu_bridge's loss-scale manager (dynamic by default in a mixed precision mode, as ModelZoo does),
HCCL started with npu_ops.initialize_system before its view of rank and size is checked, rank 0's
float variables sent with hccl_ops.broadcast after initialisation, and util.set_iteration_per_loop for
the op that runs N steps per sess.run. Names, signatures and value formats are those of
Ascend/tensorflow tf_adapter/python/npu_bridge and tf_adapter/util/npu_attrs.cc (branches master and
development); docs/backends.md shows the resulting session config.
"""
import json
import logging
import os

from tfcompat import tf
from train.backend_base import (
    Backend,
    BackendError,
    counter_variables,
    counters_to_floats,
    floating_variables,
    set_counters_op,
)

LOG = logging.getLogger(__name__)

# ExponentialUpdateLossScaleManager settings used for "dynamic" (ModelZoo's usual choice).
DYNAMIC_LOSS_SCALE = dict(init_loss_scale=2 ** 32, incr_every_n_steps=1000, decr_every_n_nan_or_inf=2,
                          decr_ratio=0.5)
# profiling_options as ModelZoo's scripts write them (JSON; "output" is set per run). The master adapter's
# default set (npu_attrs.cc :42) adds hccl/aic_metrics/msproftx, which older CANN releases do not know.
PROFILING_OPTIONS = (("training_trace", "on"), ("task_trace", "on"), ("aicpu", "on"), ("fp_point", ""),
                     ("bp_point", ""))


def _import_npu():
    """npu_bridge's pieces, imported lazily; a clear error outside the CANN image."""
    try:
        import npu_bridge  # noqa: F401  (loads the adapter's op library)
        from npu_bridge.estimator import npu_ops
        from npu_bridge.estimator.npu import util
        from npu_bridge.estimator.npu.npu_common import NPUBasics
        from npu_bridge.estimator.npu.npu_loss_scale_manager import (
            ExponentialUpdateLossScaleManager,
            FixedLossScaleManager,
        )
        from npu_bridge.estimator.npu.npu_loss_scale_optimizer import NPULossScaleOptimizer
        from npu_bridge.estimator.npu.npu_optimizer import NPUDistributedOptimizer
        from npu_bridge.hccl import hccl_ops
    except ImportError as exc:
        raise BackendError("the npu backend needs CANN's TensorFlow adapter (npu_bridge): %s; run inside the "
                           "CANN TF 1.15 image and source its set_env.sh" % exc) from None
    return dict(NPUBasics=NPUBasics, ExponentialUpdateLossScaleManager=ExponentialUpdateLossScaleManager,
                FixedLossScaleManager=FixedLossScaleManager, NPULossScaleOptimizer=NPULossScaleOptimizer,
                NPUDistributedOptimizer=NPUDistributedOptimizer, hccl_ops=hccl_ops, npu_ops=npu_ops,
                util=util)


def debug_options(profiling_dir=None, dump_dir=None, data_dump=False, data_dump_step=None, over_dump=False):
    """NpuOptimizer entries for ModelZoo's --profiling, --data_dump_flag and --over_dump (pure).

    Names and values as the adapter parses them (tf_adapter/util/npu_attrs.cc, master :1803-1871):
    enable_dump/enable_dump_debug need dump_path (an existing directory, one for both); dump_step is
    'N|A-B'; dump_mode is input/output/all; dump_debug_mode is aicore_overflow/atomic_overflow/all;
    profiling_mode needs profiling_options (required on the development branch, :979-984).
    """
    options = []
    if profiling_dir:
        text = json.dumps(dict((("output", profiling_dir),) + PROFILING_OPTIONS), separators=(",", ":"))
        options += [("profiling_mode", "b", True), ("profiling_options", "s", text.encode("utf-8"))]
    if (data_dump or over_dump) and not dump_dir:
        raise BackendError("a dump needs a directory (dump_path)")
    if data_dump or over_dump:
        options.append(("dump_path", "s", dump_dir.encode("utf-8")))
    if data_dump:
        options += [("enable_dump", "b", True), ("dump_mode", "s", b"all")]
        if data_dump_step:
            options.append(("dump_step", "s", str(data_dump_step).encode("utf-8")))
    if over_dump:
        options += [("enable_dump_debug", "b", True), ("dump_debug_mode", "s", b"all")]
    return options


def npu_session_options(precision_mode, iterations_per_loop=1, hcom_parallel=True, debug=()):
    """The NpuOptimizer parameter_map entries as (name, field, value) triples (pure).

    Loop sinking needs enable_data_pre_proc with iterations_per_loop (the device-side GetNext is what
    GE loops over; Ascend doc tfmigr1_000048, npu_estimator.py master :726-729).
    """
    options = [("use_off_line", "b", True),
               ("precision_mode", "s", precision_mode.encode("utf-8")),
               ("hcom_parallel", "b", bool(hcom_parallel))]
    if int(iterations_per_loop) > 1:
        options.append(("enable_data_pre_proc", "b", True))
        options.append(("iterations_per_loop", "i", int(iterations_per_loop)))
    return options + list(debug)


def add_npu_optimizer(config, options):
    """Add (or update) the NpuOptimizer custom optimizer; remapping and memory optimisation off."""
    rewrite = config.graph_options.rewrite_options
    custom = None
    for item in rewrite.custom_optimizers:
        if item.name == "NpuOptimizer":
            custom = item
    if custom is None:
        custom = rewrite.custom_optimizers.add()
        custom.name = "NpuOptimizer"
    for name, field, value in options:
        setattr(custom.parameter_map[name], field, value)
    rewrite.remapping = rewrite.OFF
    rewrite.memory_optimization = rewrite.OFF
    return config


class HcclBackend(Backend):
    """Ascend NPUs: HCCL reads the rank table; npu_bridge averages the gradients."""

    kind = "hccl"

    def __init__(self, rank, size, iterations_per_loop=1, debug_plan=None, **options):
        options.setdefault("device", "npu")
        super().__init__(rank, size, iterations_per_loop=iterations_per_loop, **options)
        if self.device_kind != "npu":
            raise BackendError("the hccl backend runs on npu, not %s; use collective for cpu/gpu"
                               % self.device_kind)
        self.debug_plan = dict(debug_plan or {})
        self.debug = debug_options(**self.debug_plan)
        self._npu = _import_npu()
        self._system = None  # (graph, session, shutdown op) while HCCL is up
        self.loss_scale_manager_used = None
        if self.size > 1:
            self._check_job_info()

    def describe(self):
        text = super().describe()
        if self.iterations_per_loop > 1:
            text += " iterations_per_loop %d (loop sinking)" % self.iterations_per_loop
        return text

    def _check_job_info(self):
        """npu_bridge's view of the job (JOB_ID, RANK_SIZE) must match ours, or its allreduce breaks."""
        job = self._npu["NPUBasics"]("").jobinfo
        if job is None:
            raise BackendError("npu_bridge found no job information; set JOB_ID (the launcher does) so its "
                               "allreduce works")
        npu_size = int(self._npu["NPUBasics"]("").size())
        if npu_size != self.size:
            raise BackendError("npu_bridge sees RANK_SIZE %d but this worker was started for %d ranks; "
                               "start workers with the launcher" % (npu_size, self.size))

    # -- HCCL up and down --------------------------------------------------------------------------
    def start(self, config=None):
        """Bring HCCL up (npu_ops.initialize_system in a session of its own, as npu_init.init_resource
        does, master :198-203; the session carries the GE init options: precision, profiling) and, with
        several ranks, check HCCL's view of rank and size; shut it down in close()."""
        if self._system is not None:
            return
        graph = tf.Graph()
        with graph.as_default():
            init_op = self._npu["npu_ops"].initialize_system()
            shutdown_op = self._npu["npu_ops"].shutdown_system()
        for path in debug_directories(self.debug_plan):
            os.makedirs(path, exist_ok=True)
        sess = tf.compat.v1.Session(graph=graph, config=self.session_config(config))
        try:
            sess.run(init_op)
        except Exception:
            sess.close()
            raise
        self._system = (graph, sess, shutdown_op)
        if self.size > 1:  # one card may run without a rank table, and then HCCL is never set up
            self.verify_with_hccl()

    def hccl_rank_and_size(self):
        """(rank, size) as HCCL sees them (hccl.manage.api); valid only once start() has brought HCCL up."""
        if self._system is None:
            raise BackendError("HCCL is not up yet: call start() (npu_ops.initialize_system) first")
        try:
            from hccl.manage.api import get_rank_id, get_rank_size
        except ImportError as exc:
            raise BackendError("CANN's hccl Python package is missing (%s); source the CANN set_env.sh"
                               % exc) from None
        return int(get_rank_id()), int(get_rank_size())

    def verify_with_hccl(self):
        """BackendError when HCCL's rank or size differs from this worker's (a rank table mismatch)."""
        rank, size = self.hccl_rank_and_size()
        if (rank, size) != (self.rank, self.size):
            raise BackendError("HCCL says rank %d of %d but this worker is rank %d of %d; RANK_ID must equal "
                               "the rank_id of this device in RANK_TABLE_FILE"
                               % (rank, size, self.rank, self.size))
        return rank, size

    def close(self):
        if self._system is None:
            return
        _, sess, shutdown_op = self._system
        self._system = None
        try:
            sess.run(shutdown_op)
        finally:
            sess.close()

    # -- session -----------------------------------------------------------------------------------
    def _add_to_config(self, config):
        options = npu_session_options(self.precision_mode, self.iterations_per_loop, hcom_parallel=True,
                                      debug=self.debug)
        return add_npu_optimizer(config, options)

    def loop_op(self, sess, train_op):
        """The op to sess.run once per loop and the steps it runs: util.set_iteration_per_loop's
        IterationOp for N > 1 (after variable initialisation: it loads its loop variables into
        ``sess``), the train op itself for N = 1."""
        if self.iterations_per_loop == 1:
            return train_op, 1
        op = self._npu["util"].set_iteration_per_loop(sess, train_op, self.iterations_per_loop)
        if op.name != "IterationOp":
            raise BackendError("the loop op is named %r, but GE loops only for an op named IterationOp "
                               "(geop_npu.cc); build the graph without another op of that name" % op.name)
        return op, self.iterations_per_loop

    # -- graph -------------------------------------------------------------------------------------
    def loss_scale_manager(self):
        """npu_bridge's loss-scale manager for the flag, or None when loss scaling is off."""
        scaling = self.loss_scaling()
        if scaling == "off":
            return None
        if scaling == "dynamic":
            return self._npu["ExponentialUpdateLossScaleManager"](**DYNAMIC_LOSS_SCALE)
        return self._npu["FixedLossScaleManager"](scaling)

    def skips_nonfinite_updates(self):
        """NPULossScaleOptimizer applies an update inside a cond on the float status with either manager
        (npu_bridge npu_loss_scale_optimizer.py; FixedLossScaleManager's enable_overflow_check defaults to
        True and is left so here), so every loss-scaled run skips an overflow step."""
        return self.loss_scaling() != "off"

    def wrap_optimizer(self, optimizer):
        manager = self.loss_scale_manager()
        self.loss_scale_manager_used = manager
        if manager is not None:
            optimizer = self._npu["NPULossScaleOptimizer"](optimizer, manager, is_distributed=self.size > 1)
        if self.size > 1:
            optimizer = self._npu["NPUDistributedOptimizer"](optimizer)
        return optimizer

    def loss_scale_tensor(self):
        """The current loss scale (the manager's variable or constant), or None without loss scaling."""
        if self.loss_scale_manager_used is None:
            return None
        return tf.cast(self.loss_scale_manager_used.get_loss_scale(), tf.float32)

    def allreduce_sum(self, tensors):
        if self.size == 1:
            return [tf.identity(t) for t in tensors]
        return [self._npu["hccl_ops"].allreduce(t, "sum") for t in tensors]

    def allreduce_mean(self, tensors):
        summed = self.allreduce_sum([t for t in tensors if t is not None])
        means = iter([s / tf.cast(self.size, s.dtype) for s in summed])
        return [None if t is None else next(means) for t in tensors]

    def broadcast_variables_op(self, variables):
        """hccl_ops.broadcast takes and returns a list; rank 0's float variables are assigned on every rank.
        Counters (global_step, the manager's good/bad steps) are never broadcast as integers: their values
        travel in one float32 tensor and are set from it."""
        if self.size == 1:
            return tf.no_op(name="broadcast_from_rank0")
        ops = []
        for var in floating_variables(variables):
            outputs = self._npu["hccl_ops"].broadcast(tensor=[var], root_rank=0)
            ops.append(tf.compat.v1.assign(var, outputs[0]))
        counters = counter_variables(variables)
        if counters:
            carried = self._npu["hccl_ops"].broadcast(tensor=[counters_to_floats(counters)], root_rank=0)
            ops.append(set_counters_op(counters, carried[0]))
        return tf.group(*ops, name="broadcast_from_rank0")


def debug_dirs(args, rank_dir):
    """debug_options' keyword arguments for ModelZoo's flags (pure): {} without any; directories under
    the rank's directory unless --profiling_dump_path / --over_dump_path / --data_dump_path name one.
    The adapter has one dump_path, so an overflow dump and a data dump share it."""
    plan = {}
    if args.profiling:
        plan["profiling_dir"] = args.profiling_dump_path or os.path.join(rank_dir, "profiling")
    over, data = bool(args.over_dump), bool(args.data_dump_flag)
    if over or data:
        pairs = ((args.over_dump_path, over), (args.data_dump_path, data))
        given = [path for path, on in pairs if on and path]
        if len(set(given)) > 1:
            raise BackendError("--over_dump_path and --data_dump_path differ, but the adapter writes both "
                               "dumps to one dump_path; give one directory")
        default = "overflow_dump" if over and not data else "data_dump" if data and not over else "dump"
        plan.update(dump_dir=given[0] if given else os.path.join(rank_dir, default), data_dump=data,
                    data_dump_step=args.data_dump_step if data else None, over_dump=over)
    return plan


def debug_directories(plan):
    """The directories a debug plan writes to (created before the session starts: the adapter refuses a
    dump_path that is not an existing directory, npu_attrs.cc CheckPath)."""
    return [path for path in (plan.get("profiling_dir"), plan.get("dump_dir")) if path]
