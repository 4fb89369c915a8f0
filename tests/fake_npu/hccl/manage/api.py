"""Fake hccl.manage.api: rank and size from the environment (the real one asks HCCL), and only once the
fake HCCL is up (npu_bridge.estimator.npu_ops.initialize_system has run in a session), as the CANN docs
require (hcclpython_07_0005..0010)."""
import os


def _up():
    from npu_bridge.estimator import npu_ops
    if not npu_ops.HCCL["up"]:
        raise RuntimeError("HCCL is not initialized: run npu_ops.initialize_system() in a session first")


def get_rank_size(group="hccl_world_group"):
    _up()
    return int(os.environ.get("RANK_SIZE", "1"))


def get_rank_id(group="hccl_world_group"):
    _up()
    return int(os.environ.get("RANK_ID", "0"))


def get_local_rank_size(group="hccl_world_group"):
    _up()
    return int(os.environ.get("RANK_SIZE", "1"))


def get_local_rank_id(group="hccl_world_group"):
    _up()
    return int(os.environ.get("RANK_ID", "0"))
