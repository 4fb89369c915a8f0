"""Fake npu_bridge.estimator.npu.util: rank size from the environment and set_iteration_per_loop, with the
adapter's checks (util.py master :54-62, :173-238; development :133-197).

What the fake cannot do: GE's loop. The real IterationOp makes the device run the train op
iterations_per_loop times per sess.run (geop_npu.cc master :1221-1224, :1432-1434, only for an op named
exactly "IterationOp"); the fake's runs it once. So global_step advances by 1 per sess.run here and the
trainer must take the step count from global_step, never assume N.
"""
import os

from tfcompat import tf

from ... import record
from ...session_check import check_config

_NPU_RUNCONFIG = "npu_runconfig"
_ITERATIONS_PER_LOOP_VAR = "iterations_per_loop"
_LOOP_COND_VAR = "loop_cond"
_CONST_ZERO = "zero"
_CONST_ONE = "one"


def check_positive_integer(value, name):
    """master :54-62: TypeError for a non-int, ValueError for <= 0."""
    if not isinstance(value, int):  # six.integer_types on Python 3
        raise TypeError("{} must be int, got {}".format(name, type(value)))
    if value <= 0:
        raise ValueError("{} must be positive, got {}".format(name, value))


def create_or_get_var(var_name):
    """master :173-194: an int64 resource variable in LOCAL_VARIABLES and its own collection."""
    graph = tf.compat.v1.get_default_graph()
    collection_name = "{}_{}".format(_NPU_RUNCONFIG, var_name)
    iter_vars = graph.get_collection(collection_name)
    if len(iter_vars) == 1:
        return iter_vars[0]
    if len(iter_vars) > 1:
        raise RuntimeError("Multiple var in collection.")
    with tf.compat.v1.variable_scope(_NPU_RUNCONFIG, reuse=tf.compat.v1.AUTO_REUSE):
        return tf.compat.v1.get_variable(
            var_name, initializer=tf.compat.v1.zeros_initializer(), shape=[], dtype=tf.int64,
            trainable=False, collections=[collection_name, tf.compat.v1.GraphKeys.LOCAL_VARIABLES],
            use_resource=True)


def set_iteration_per_loop(sess, train_op, iterations_per_loop=1):
    """master :197-231 (development :163-197): checks, loop variables loaded into ``sess``, and
    tf.group(train_op, name="IterationOp"). The fake also checks the session's NpuOptimizer settings."""
    if not isinstance(train_op, tf.Operation):
        raise ValueError("The incoming 'train_op' type is '%s', and the need type is 'Operation'"
                         % (train_op.dtype.name))
    check_positive_integer(iterations_per_loop, "iterations_per_loop")
    record("util.set_iteration_per_loop", iterations_per_loop=iterations_per_loop, train_op=train_op.name)
    if iterations_per_loop == 1:
        return train_op
    check_config(sess._config, iterations_per_loop)
    graph = train_op.graph
    for op in graph.get_operations():
        if op.type == "OneShotIterator":  # om_partition_subgraphs_pass.cc master :2207-2210 (FATAL)
            raise ValueError("iterator_per_loop only support 1 when using OneShotIterator")
    with graph.as_default():
        iterations_per_loop_var = create_or_get_var(_ITERATIONS_PER_LOOP_VAR)
        loop_cond_var = create_or_get_var(_LOOP_COND_VAR)
        const_zero = create_or_get_var(_CONST_ZERO)
        const_one = create_or_get_var(_CONST_ONE)
        iterations_per_loop_var.load(iterations_per_loop - 1, session=sess)
        loop_cond_var.load(0, session=sess)
        const_zero.load(0, session=sess)
        const_one.load(1, session=sess)
        return tf.group(train_op, name="IterationOp")


def get_ranksize():
    if os.getenv("CM_WORKER_SIZE") is not None and os.getenv("RANK_SIZE") is not None:
        raise ValueError("RANK_SIZE and CM_WORK_SIZE cannot be configured at the same time")
    return os.getenv("RANK_SIZE") if os.getenv("RANK_SIZE") is not None else os.getenv("CM_WORKER_SIZE", "1")
