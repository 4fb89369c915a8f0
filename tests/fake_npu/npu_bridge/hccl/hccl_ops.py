"""Fake npu_bridge.hccl.hccl_ops: the adapter's signatures and checks; every rank holds the same tensor.

Rules (Ascend/tensorflow): dtypes and reductions as the ops are registered (master
tf_adapter/ops/hccl/hccl_ops.cc, development tf_adapter/ops/hccl_ops.cc); allgather has no fusion
arguments on development (hccl/hccl_ops.py :40) but has them on master (:58); broadcast takes and returns
a list (op attr `T: list(type)`, master :98-101, development :95-98).
"""
import os

from tfcompat import tf

from .. import branch, record

# HcomAllReduce T: development :38, master :28; reduction: development :39, master :29
ALLREDUCE_DTYPES = {
    "development": (tf.int8, tf.int16, tf.int32, tf.float16, tf.float32),
    "master": (tf.int8, tf.int16, tf.int32, tf.int64, tf.float16, tf.float32, tf.bfloat16),
}
REDUCTIONS = ("min", "max", "prod", "sum")
# HcomAllGather T: development :64, master :54
ALLGATHER_DTYPES = {
    "development": (tf.int8, tf.int16, tf.int32, tf.float16, tf.float32, tf.int64, tf.uint64),
    "master": (tf.int8, tf.int16, tf.int32, tf.float16, tf.float32, tf.int64, tf.uint64, tf.uint8, tf.uint16,
               tf.uint32, tf.float64, tf.bfloat16),
}
# HcomBroadcast's T is list(type) on both branches; HCCL itself had only these data types when the
# development branch was cut (the allreduce list above, :38). The fake refuses the others on every
# branch: what the project broadcasts must work on every CANN release.
BROADCAST_DTYPES = ALLREDUCE_DTYPES["development"]


def _size():
    return int(os.environ.get("RANK_SIZE", "1"))


def _check_dtype(op, tensor, allowed):
    if tensor.dtype.base_dtype not in allowed:
        raise TypeError("Value passed to parameter 'input' has DataType %s not in list of allowed values "
                        "for %s: %s" % (tensor.dtype.name, op, ", ".join(d.name for d in allowed)))


def allreduce(tensor, reduction, fusion=1, fusion_id=-1, group="hccl_world_group"):
    record("hccl_ops.allreduce", reduction=reduction, fusion=fusion, fusion_id=fusion_id, group=group)
    tensor = tf.convert_to_tensor(tensor)  # the loss-scale optimizer passes a list of one status tensor
    _check_dtype("HcomAllReduce", tensor, ALLREDUCE_DTYPES[branch()])
    if reduction not in REDUCTIONS:
        raise ValueError("reduction %r is not in %s (HcomAllReduce attr)" % (reduction, REDUCTIONS))
    if reduction == "sum":
        return tf.multiply(tensor, tf.cast(_size(), tensor.dtype), name="HcomAllReduce")
    if reduction == "prod":
        return tf.pow(tensor, tf.cast(_size(), tensor.dtype), name="HcomAllReduce")
    return tf.identity(tensor, name="HcomAllReduce")


def _allgather(tensor, rank_size, group, fusion, fusion_id):
    record("hccl_ops.allgather", rank_size=rank_size, group=group, fusion=fusion, fusion_id=fusion_id)
    tensor = tf.convert_to_tensor(tensor)
    _check_dtype("HcomAllGather", tensor, ALLGATHER_DTYPES[branch()])
    if tensor.shape.rank == 0:  # shape fn WithRankAtLeast(input, 1): development :69-71, master :73
        raise ValueError("HcomAllGather: scalar input is not supported")
    if rank_size <= 0:  # master :61-64
        raise ValueError("rank_size should be greater than 0.")
    return tf.concat([tensor] * rank_size, axis=0, name="HcomAllGather")


if branch() == "development":
    def allgather(tensor, rank_size, group="hccl_world_group"):
        return _allgather(tensor, rank_size, group, None, None)
else:
    def allgather(tensor, rank_size, group="hccl_world_group", fusion=0, fusion_id=-1):
        return _allgather(tensor, rank_size, group, fusion, fusion_id)


def broadcast(tensor, root_rank, fusion=2, fusion_id=0, group="hccl_world_group"):
    if not isinstance(tensor, (list, tuple)):
        raise TypeError("Expected list for 'input' argument to 'HcomBroadcast' Op, not %r." % (tensor,))
    for item in tensor:
        _check_dtype("HcomBroadcast", tf.convert_to_tensor(item), BROADCAST_DTYPES)
    record("hccl_ops.broadcast", count=len(tensor), root_rank=root_rank, fusion=fusion, group=group,
           dtypes=[t.dtype.base_dtype.name for t in tensor])
    return [tf.identity(t, name="HcomBroadcast") for t in tensor]
