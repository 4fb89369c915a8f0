"""Fake npu_bridge.estimator.npu.npu_loss_scale_manager with the adapter's variables and update rules.

ExponentialUpdateLossScaleManager keeps float32 `loss_scale` and int32 `good_steps`/`bad_steps`
variables (development npu_loss_scale_manager.py :140-148; master inherits them from
tf.contrib.mixed_precision's manager, :48-66) and updates them as both branches do (development
:159-200, master :70-96): a finite step counts a good step and multiplies the scale by incr_ratio after
incr_every_n_steps of them (unless that passes 3.4e38); an overflow counts a bad step and multiplies the
scale by decr_ratio (never below 1) after decr_every_n_nan_or_inf of them; a change of scale resets both
counts, an overflow resets the good count. FixedLossScaleManager takes enable_overflow_check only on master
(:34 vs development :79).
"""
from tfcompat import tf

from ... import branch, record


class _FixedLossScaleManager:
    """A constant loss scale (the float32 tensor of the contrib manager)."""

    def _setup(self, loss_scale, enable_overflow_check):
        if loss_scale < 1:
            raise ValueError("loss scale must be at least 1.")
        record("FixedLossScaleManager", loss_scale=loss_scale, enable_overflow_check=enable_overflow_check)
        self._loss_scale = tf.convert_to_tensor(loss_scale, dtype=tf.float32, name="loss_scale")
        self._enable_overflow_check = enable_overflow_check

    def get_loss_scale(self):
        return self._loss_scale

    def update_loss_scale(self, finite_grads):
        del finite_grads
        return tf.no_op()


if branch() == "development":
    class FixedLossScaleManager(_FixedLossScaleManager):
        def __init__(self, loss_scale):
            self._setup(loss_scale, True)
else:
    class FixedLossScaleManager(_FixedLossScaleManager):
        def __init__(self, loss_scale, enable_overflow_check=True):
            self._setup(loss_scale, enable_overflow_check)

        def get_enable_overflow_check(self):
            return self._enable_overflow_check


class ExponentialUpdateLossScaleManager:
    """Grows the scale after incr_every_n_steps finite steps, shrinks it after overflows."""

    def __init__(self, init_loss_scale, incr_every_n_steps, decr_every_n_nan_or_inf=2, incr_ratio=2,
                 decr_ratio=0.8):
        record("ExponentialUpdateLossScaleManager", init_loss_scale=init_loss_scale,
               incr_every_n_steps=incr_every_n_steps, decr_every_n_nan_or_inf=decr_every_n_nan_or_inf,
               incr_ratio=incr_ratio, decr_ratio=decr_ratio)
        self._incr_every_n_steps = incr_every_n_steps
        self._decr_every_n_nan_or_inf = decr_every_n_nan_or_inf
        self._incr_ratio = incr_ratio
        self._decr_ratio = decr_ratio
        self._loss_scale = tf.compat.v1.Variable(
            tf.convert_to_tensor(init_loss_scale, tf.float32), name="loss_scale", dtype=tf.float32,
            trainable=False)
        self._num_good_steps = tf.compat.v1.Variable(0, name="good_steps", dtype=tf.int32, trainable=False)
        self._num_bad_steps = tf.compat.v1.Variable(0, name="bad_steps", dtype=tf.int32, trainable=False)

    def _reset_stats(self):
        return tf.group(tf.compat.v1.assign(self._num_good_steps, 0),
                        tf.compat.v1.assign(self._num_bad_steps, 0))

    def get_loss_scale(self):
        return self._loss_scale

    def update_loss_scale(self, finite_grads):
        def update_if_finite_grads():
            def incr_loss_scale():
                new = tf.cond(tf.less(self._loss_scale, 3.4e38 / self._incr_ratio),
                              lambda: self._loss_scale * self._incr_ratio, lambda: self._loss_scale)
                return tf.group(tf.compat.v1.assign(self._loss_scale, new), self._reset_stats())

            return tf.cond(self._num_good_steps + 1 >= self._incr_every_n_steps, incr_loss_scale,
                           lambda: tf.compat.v1.assign_add(self._num_good_steps, 1).op)

        def update_if_not_finite_grads():
            def decr_loss_scale():
                new = tf.maximum(1.0, self._loss_scale * self._decr_ratio)
                return tf.group(tf.compat.v1.assign(self._loss_scale, new), self._reset_stats())

            def just_update_steps():
                return tf.group(tf.compat.v1.assign_add(self._num_bad_steps, 1),
                                tf.compat.v1.assign(self._num_good_steps, 0))

            return tf.cond(self._num_bad_steps + 1 >= self._decr_every_n_nan_or_inf, decr_loss_scale,
                           just_update_steps)

        return tf.cond(finite_grads, update_if_finite_grads, update_if_not_finite_grads)
