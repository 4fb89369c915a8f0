"""The Ascend backend: HCCL allreduce through npu_bridge (CANN's TF 1.15 adapter).

Why one module: npu_bridge and hccl exist only in the CANN image, so this is the only place that imports
them, and only when an ``hccl`` backend is made. Everything follows the adapter's sess.run recipe:
the ``NpuOptimizer`` custom graph optimizer in the session config (use_off_line, precision_mode,
hcom_parallel set explicitly because its default differs between adapter versions, iterations_per_loop),
remapping and memory optimisation off, NPUDistributedOptimizer for averaged gradients (with
NPULossScaleOptimizer and a loss-scale manager when loss scaling is on), and rank 0's variables sent
with hccl_ops.broadcast after initialisation. Names and signatures are those of
Ascend/tensorflow tf_adapter/python/npu_bridge (branches master and development).
"""
from tfcompat import tf
from train.backend_base import Backend, BackendError

# ExponentialUpdateLossScaleManager settings used for "dynamic" (ModelZoo's usual choice).
DYNAMIC_LOSS_SCALE = dict(init_loss_scale=2 ** 32, incr_every_n_steps=1000, decr_every_n_nan_or_inf=2,
                          decr_ratio=0.5)


def _import_npu():
    """npu_bridge's pieces, imported lazily; a clear error outside the CANN image."""
    try:
        import npu_bridge  # noqa: F401  (loads the adapter's op library)
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
                NPUDistributedOptimizer=NPUDistributedOptimizer, hccl_ops=hccl_ops)


def npu_session_options(precision_mode, iterations_per_loop=1, hcom_parallel=True):
    """The NpuOptimizer parameter_map entries as (name, field, value) triples (pure)."""
    options = [("use_off_line", "b", True),
               ("precision_mode", "s", precision_mode.encode("utf-8")),
               ("hcom_parallel", "b", bool(hcom_parallel))]
    if int(iterations_per_loop) > 1:
        options.append(("iterations_per_loop", "i", int(iterations_per_loop)))
    return options


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

    def __init__(self, rank, size, iterations_per_loop=1, **options):
        options.setdefault("device", "npu")
        super().__init__(rank, size, **options)
        if self.device_kind != "npu":
            raise BackendError("the hccl backend runs on npu, not %s; use collective for cpu/gpu"
                               % self.device_kind)
        self.iterations_per_loop = int(iterations_per_loop)
        if self.iterations_per_loop < 1:
            raise BackendError("iterations_per_loop must be >= 1")
        self._npu = _import_npu()
        if self.size > 1:
            self._check_job_info()

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

    def hccl_rank_and_size(self):
        """(rank, size) as HCCL sees them (hccl.manage.api); valid once HCCL is up, i.e. after the first
        NPU session has been created. The launcher's RANK_ID/RANK_SIZE must agree with the rank table."""
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

    def _add_to_config(self, config):
        options = npu_session_options(self.precision_mode, self.iterations_per_loop, hcom_parallel=True)
        return add_npu_optimizer(config, options)

    def loss_scale_manager(self):
        """npu_bridge's loss-scale manager for the flag, or None when loss scaling is off."""
        if self.loss_scale in (None, "off"):
            return None
        if self.loss_scale == "dynamic":
            return self._npu["ExponentialUpdateLossScaleManager"](**DYNAMIC_LOSS_SCALE)
        return self._npu["FixedLossScaleManager"](self.loss_scale)

    def wrap_optimizer(self, optimizer):
        manager = self.loss_scale_manager()
        if manager is not None:
            optimizer = self._npu["NPULossScaleOptimizer"](optimizer, manager, is_distributed=self.size > 1)
        if self.size > 1:
            optimizer = self._npu["NPUDistributedOptimizer"](optimizer)
        return optimizer

    def allreduce_sum(self, tensors):
        if self.size == 1:
            return [tf.identity(t) for t in tensors]
        return [self._npu["hccl_ops"].allreduce(t, "sum") for t in tensors]

    def allreduce_mean(self, tensors):
        summed = self.allreduce_sum([t for t in tensors if t is not None])
        means = iter([s / tf.cast(self.size, s.dtype) for s in summed])
        return [None if t is None else next(means) for t in tensors]

    def broadcast_variables_op(self, variables):
        """hccl_ops.broadcast takes and returns a list; assign rank 0's value on every rank."""
        if self.size == 1:
            return tf.no_op(name="broadcast_from_rank0")
        ops = []
        for var in variables:
            outputs = self._npu["hccl_ops"].broadcast(tensor=[var], root_rank=0)
            ops.append(tf.compat.v1.assign(var, outputs[0]))
        return tf.group(*ops, name="broadcast_from_rank0")
