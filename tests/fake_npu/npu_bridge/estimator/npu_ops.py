"""Fake npu_bridge.estimator.npu_ops: initialize_system/shutdown_system (master :65-80, development :70-85).

Running the init op brings the fake HCCL up; hccl.manage.api answers only while it is up (the CANN docs:
"must be called after collective communication initialization is complete", hcclpython_07_0005..0010).
"""
import numpy as np

from tfcompat import tf

from .. import record

HCCL = {"up": False}


def _set(up):
    def run():
        HCCL["up"] = up
        return np.int64(0)
    return run


def initialize_system(name=None):
    record("npu_ops.initialize_system", op_name=name)
    return tf.compat.v1.py_func(_set(True), [], tf.int64, stateful=True, name=name or "NPUInit").op


def shutdown_system(name=None):
    record("npu_ops.shutdown_system", op_name=name)
    return tf.compat.v1.py_func(_set(False), [], tf.int64, stateful=True, name=name or "NPUShutdown").op
