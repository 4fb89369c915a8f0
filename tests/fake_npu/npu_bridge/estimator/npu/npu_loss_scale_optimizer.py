"""Fake npu_bridge.estimator.npu.npu_loss_scale_optimizer.NPULossScaleOptimizer (adapter signature).

As the adapter (master npu_loss_scale_optimizer.py :38-98, development :24-185): compute_gradients scales
the loss by the manager's scale and the gradients back by its reciprocal; apply_gradients reads the
overflow from the float status after the gradients (master npu_get_float_status_v2 :64-67, development
npu_get_float_status :145-147), sums it over ranks with hccl_ops.allreduce([status], "sum", fusion=0) when
is_distributed (master :69-74, development :150-154), applies the update (and the global step it was
given) only inside a cond on "no overflow" (master :83-88, development :158-169), and groups that with the
manager's update_loss_scale. On master a FixedLossScaleManager with enable_overflow_check=False turns the
check off (:94-98, :80-81).

The fake's float status: the 910's saturation flag cannot exist on CPU, so "overflow" is any non-finite
value in the unscaled gradients (float32 on CPU overflows to inf where the NPU saturates and flags).
"""
from tfcompat import tf

from ... import branch, record
from ...hccl import hccl_ops
from .npu_loss_scale_manager import FixedLossScaleManager


class NPULossScaleOptimizer(tf.compat.v1.train.Optimizer):
    """Scales the loss, unscales the gradients, skips the update when the float status shows an overflow."""

    def __init__(self, opt, loss_scale_manager, is_distributed=False):
        record("NPULossScaleOptimizer", opt=opt, loss_scale_manager=loss_scale_manager,
               is_distributed=is_distributed)
        self._opt = opt
        self._loss_scale_manager = loss_scale_manager
        self._is_distributed = is_distributed
        super().__init__(name="NPULossScaleOptimizer", use_locking=False)

    def compute_gradients(self, loss, var_list=None, **kwargs):
        scale = self._loss_scale_manager.get_loss_scale()
        grads_and_vars = self._opt.compute_gradients(loss * tf.cast(scale, loss.dtype.base_dtype),
                                                     var_list=var_list, **kwargs)
        inverse = tf.math.reciprocal(scale)
        return [(None if g is None else g * tf.cast(inverse, g.dtype.base_dtype), v)
                for g, v in grads_and_vars]

    def _enable_overflow_check(self):
        if branch() == "master" and isinstance(self._loss_scale_manager, FixedLossScaleManager):
            return self._loss_scale_manager.get_enable_overflow_check()
        return True

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        grads = [g for g, _ in grads_and_vars if g is not None]
        if self._enable_overflow_check():
            with tf.control_dependencies(grads):
                flags = [tf.reduce_any(tf.logical_not(tf.math.is_finite(g))) for g in grads]
                local_float_status = tf.reshape(tf.cast(tf.reduce_any(tf.stack(flags)), tf.float32), [1])
            if self._is_distributed:
                aggregated = hccl_ops.allreduce([local_float_status], "sum", fusion=0)
                is_overall_finite = tf.reduce_all(tf.equal(aggregated, 0.0),
                                                  name="overflow_status_reduce_all")
            else:
                is_overall_finite = tf.reduce_all(tf.equal(0.0, local_float_status),
                                                  name="overflow_status_reduce_all")
        else:
            is_overall_finite = tf.constant(True, dtype=tf.bool)

        def true_apply_grads_fn():
            return tf.group(self._opt.apply_gradients(grads_and_vars, global_step, name))

        update_variables = tf.cond(is_overall_finite, true_apply_grads_fn, tf.no_op)
        return tf.group(update_variables, self._loss_scale_manager.update_loss_scale(is_overall_finite))
