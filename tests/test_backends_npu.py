"""The hccl backend (train/npu_backend.py) against tests/fake_npu, a fake of CANN's TF 1.15 adapter.

The fake imitates both adapter branches (FAKE_NPU_BRANCH=master or development; Ascend/tensorflow
tf_adapter/python/npu_bridge, master @085a7b2e 2023-12-15 and development @82507eb2 2021-02-20) and is at
least as strict as they are where the project depends on them; each of its rules cites the adapter's
file and line. The expected signatures below were read in those files; hccl.manage.api from the CANN docs
(hcclpython_07_0005..0010).
"""
import importlib
import importlib.util
import inspect
import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tfcompat import tf
from train.backends import BackendError, make_backend
from train.npu_backend import DYNAMIC_LOSS_SCALE, debug_dirs, debug_options

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_npu")
BRANCHES = ("master", "development")

COMMON_SIGNATURES = [
    ("npu_bridge.estimator.npu.npu_optimizer", "NPUDistributedOptimizer",
     "(self, optimizer, is_weight_update_sharding=False, name=None)"),
    ("npu_bridge.estimator.npu.npu_optimizer", "allreduce", "(tensor, average=True)"),
    ("npu_bridge.estimator.npu.npu_loss_scale_optimizer", "NPULossScaleOptimizer",
     "(self, opt, loss_scale_manager, is_distributed=False)"),
    ("npu_bridge.estimator.npu.npu_loss_scale_manager", "ExponentialUpdateLossScaleManager",
     "(self, init_loss_scale, incr_every_n_steps, decr_every_n_nan_or_inf=2, incr_ratio=2, decr_ratio=0.8)"),
    ("npu_bridge.estimator.npu.npu_common", "NPUBasics", "(self, file_name)"),
    ("npu_bridge.estimator.npu.util", "get_ranksize", "()"),
    ("npu_bridge.estimator.npu.util", "set_iteration_per_loop", "(sess, train_op, iterations_per_loop=1)"),
    ("npu_bridge.estimator.npu_ops", "initialize_system", "(name=None)"),
    ("npu_bridge.estimator.npu_ops", "shutdown_system", "(name=None)"),
    ("npu_bridge.hccl.hccl_ops", "allreduce",
     "(tensor, reduction, fusion=1, fusion_id=-1, group='hccl_world_group')"),
    ("npu_bridge.hccl.hccl_ops", "broadcast",
     "(tensor, root_rank, fusion=2, fusion_id=0, group='hccl_world_group')"),
    ("hccl.manage.api", "get_rank_id", "(group='hccl_world_group')"),
    ("hccl.manage.api", "get_rank_size", "(group='hccl_world_group')"),
]
BRANCH_SIGNATURES = {
    "master": [  # npu_loss_scale_manager.py :34, hccl_ops.py :58, npu_optimizer.py (wrapper: master only)
        ("npu_bridge.estimator.npu.npu_loss_scale_manager", "FixedLossScaleManager",
         "(self, loss_scale, enable_overflow_check=True)"),
        ("npu_bridge.hccl.hccl_ops", "allgather",
         "(tensor, rank_size, group='hccl_world_group', fusion=0, fusion_id=-1)"),
        ("npu_bridge.estimator.npu.npu_optimizer", "npu_distributed_optimizer_wrapper", "(optimizer)"),
    ],
    "development": [  # npu_loss_scale_manager.py :79, hccl_ops.py :40
        ("npu_bridge.estimator.npu.npu_loss_scale_manager", "FixedLossScaleManager", "(self, loss_scale)"),
        ("npu_bridge.hccl.hccl_ops", "allgather", "(tensor, rank_size, group='hccl_world_group')"),
    ],
}
SIGNATURES = [(b,) + item for b in BRANCHES for item in COMMON_SIGNATURES + BRANCH_SIGNATURES[b]]


def _forget_fake():
    for name in list(sys.modules):
        if name.split(".")[0] in ("npu_bridge", "hccl"):
            del sys.modules[name]


def _use_fake(monkeypatch, branch, size=2, rank=1):
    _forget_fake()
    monkeypatch.syspath_prepend(FAKE)
    monkeypatch.setenv("FAKE_NPU_BRANCH", branch)
    monkeypatch.setenv("JOB_ID", "10087")
    monkeypatch.setenv("RANK_SIZE", str(size))
    monkeypatch.setenv("RANK_ID", str(rank))
    monkeypatch.delenv("CM_WORKER_SIZE", raising=False)
    return importlib.import_module("npu_bridge")


@pytest.fixture(params=BRANCHES)
def fake(request, monkeypatch):
    """The fake adapter (each branch) on sys.path for a two-rank job seen from rank 1."""
    module = _use_fake(monkeypatch, request.param)
    yield module
    _forget_fake()


@pytest.fixture(params=BRANCHES)
def fake_1p(request, monkeypatch):
    """The fake adapter (each branch) for a one-rank job."""
    module = _use_fake(monkeypatch, request.param, size=1, rank=0)
    yield module
    _forget_fake()


def calls(module, name):
    return [details for called, details in module.FAKE_CALLS if called == name]


def check_config(config, **kwargs):
    return importlib.import_module("npu_bridge.session_check").check_config(config, **kwargs)


@pytest.mark.parametrize("branch, module, name, signature", SIGNATURES,
                         ids=["%s-%s.%s" % (b, m.rsplit(".", 1)[1], n) for b, m, n, _ in SIGNATURES])
def test_fake_keeps_the_adapter_signatures(monkeypatch, branch, module, name, signature):
    _use_fake(monkeypatch, branch)
    try:
        target = getattr(importlib.import_module(module), name)
        if inspect.isclass(target):
            target = target.__init__
        assert str(inspect.signature(target)) == signature
    finally:
        _forget_fake()


# -- session config ------------------------------------------------------------------------------------
def _params(config):
    customs = [item for item in config.graph_options.rewrite_options.custom_optimizers
               if item.name == "NpuOptimizer"]
    assert len(customs) == 1
    return customs[0].parameter_map


def test_session_config_sets_the_npu_optimizer_and_loop_sinking(fake):
    backend = make_backend("hccl", rank=1, size=2, iterations_per_loop=10, intra_op_threads=2)
    config = tf.compat.v1.ConfigProto()
    config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.OFF
    config = backend.session_config(backend.session_config(config))  # twice: still one NpuOptimizer
    params = check_config(config, iterations_per_loop=10)
    assert params["use_off_line"].b is True
    assert params["hcom_parallel"].HasField("b") and params["hcom_parallel"].b is True
    assert params["precision_mode"].s == b"allow_mix_precision"
    assert params["iterations_per_loop"].i == 10
    assert params["enable_data_pre_proc"].b is True
    rewrite = config.graph_options.rewrite_options
    assert rewrite.remapping == rewrite.OFF
    assert rewrite.memory_optimization == rewrite.OFF
    assert rewrite.auto_mixed_precision != rewrite.ON  # NPU precision is the adapter's, not TF's rewrite
    assert config.graph_options.optimizer_options.global_jit_level == tf.compat.v1.OptimizerOptions.OFF
    assert config.intra_op_parallelism_threads == 2
    assert backend.session_target() == ""


def test_one_step_per_run_leaves_the_input_on_the_host(fake):
    backend = make_backend("hccl", rank=1, size=2, precision_mode="must_keep_origin_dtype")
    params = check_config(backend.session_config())
    assert params["precision_mode"].s == b"must_keep_origin_dtype"
    assert "iterations_per_loop" not in params and "enable_data_pre_proc" not in params


def test_the_fake_refuses_a_loop_without_the_device_side_input(fake):
    config = tf.compat.v1.ConfigProto()
    custom = config.graph_options.rewrite_options.custom_optimizers.add()
    custom.name = "NpuOptimizer"
    custom.parameter_map["iterations_per_loop"].i = 10
    config.graph_options.rewrite_options.remapping = config.graph_options.rewrite_options.OFF
    with pytest.raises(ValueError, match="enable_data_pre_proc"):
        check_config(config)
    custom.parameter_map["enable_data_pre_proc"].b = True
    check_config(config)
    with pytest.raises(ValueError, match="set_iteration_per_loop"):
        check_config(config, iterations_per_loop=5)
    custom.parameter_map["precision_mode"].s = b"mixed"
    with pytest.raises(ValueError, match="precision_mode"):
        check_config(config)


def _args(**flags):
    base = dict(profiling=False, profiling_dump_path=None, over_dump=False, over_dump_path=None,
                data_dump_flag=False, data_dump_path=None, data_dump_step=None)
    base.update(flags)
    return SimpleNamespace(**base)


def test_modelzoo_debug_flags_become_the_adapters_options(fake, tmp_path):
    rank_dir = str(tmp_path / "0")
    flags = _args(profiling=True, over_dump=True, data_dump_flag=True, data_dump_step="0|5|10-20")
    plan = debug_dirs(flags, rank_dir)
    assert plan == dict(profiling_dir=os.path.join(rank_dir, "profiling"),
                        dump_dir=os.path.join(rank_dir, "dump"), data_dump=True,
                        data_dump_step="0|5|10-20", over_dump=True)
    backend = make_backend("hccl", rank=1, size=2, debug_plan=plan)
    config = backend.session_config()
    with pytest.raises(ValueError, match="not directory"):  # the adapter wants dump_path to exist
        check_config(config)
    backend.start()  # creates the directories, brings HCCL up
    try:
        params = check_config(config)
        profiling = json.loads(params["profiling_options"].s.decode())
        assert params["profiling_mode"].b is True
        assert profiling["output"] == os.path.join(rank_dir, "profiling")
        assert profiling["training_trace"] == "on" and profiling["task_trace"] == "on"
        assert params["dump_path"].s.decode() == os.path.join(rank_dir, "dump")
        assert params["enable_dump"].b and params["dump_step"].s == b"0|5|10-20"
        assert params["dump_mode"].s == b"all"
        assert params["enable_dump_debug"].b and params["dump_debug_mode"].s == b"all"
        assert os.path.isdir(os.path.join(rank_dir, "profiling"))
    finally:
        backend.close()
    assert debug_dirs(_args(), rank_dir) == {}
    assert debug_dirs(_args(over_dump=True, over_dump_path="/x"), rank_dir)["dump_dir"] == "/x"
    with pytest.raises(BackendError, match="one directory"):
        debug_dirs(_args(over_dump=True, over_dump_path="/x", data_dump_flag=True, data_dump_path="/y"),
                   rank_dir)


def test_the_fake_refuses_what_the_adapter_refuses_in_dumps_and_profiling(fake, tmp_path):
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.remapping = config.graph_options.rewrite_options.OFF
    custom = config.graph_options.rewrite_options.custom_optimizers.add()
    custom.name = "NpuOptimizer"
    custom.parameter_map["enable_dump"].b = True
    with pytest.raises(ValueError, match="dump_path must be set"):
        check_config(config)
    custom.parameter_map["dump_path"].s = str(tmp_path).encode()
    custom.parameter_map["dump_step"].s = b"10-5"
    with pytest.raises(ValueError, match="dump_step"):
        check_config(config)
    custom.parameter_map["dump_step"].s = b"10"
    custom.parameter_map["profiling_mode"].b = True
    if fake.branch() == "development":  # npu_attrs.cc development :977-985
        with pytest.raises(ValueError, match="profiling_options must be set"):
            check_config(config)
    else:
        check_config(config)  # master falls back to its default options (:1865-1871)


# -- loss scaling ----------------------------------------------------------------------------------------
def _model():
    var = tf.compat.v1.get_variable("v", initializer=tf.constant([1.0, -2.0, 3.0]))
    loss = tf.reduce_sum(var * var) * 0.5
    return var, loss


def test_mixed_precision_defaults_to_dynamic_loss_scaling_as_modelzoo(fake):
    with tf.Graph().as_default():
        plain = tf.compat.v1.train.GradientDescentOptimizer(0.5)
        wrapped = make_backend("hccl", rank=1, size=2).wrap_optimizer(plain)
        optimizers = importlib.import_module("npu_bridge.estimator.npu.npu_optimizer")
        scaling = importlib.import_module("npu_bridge.estimator.npu.npu_loss_scale_optimizer")
        assert isinstance(wrapped, optimizers.NPUDistributedOptimizer)
        assert isinstance(wrapped._optimizer, scaling.NPULossScaleOptimizer)
        (manager,) = calls(fake, "ExponentialUpdateLossScaleManager")
        assert manager == dict(DYNAMIC_LOSS_SCALE, incr_ratio=2)
        assert manager["init_loss_scale"] == 2 ** 32 and manager["decr_ratio"] == 0.5
        assert calls(fake, "NPULossScaleOptimizer")[0]["is_distributed"] is True


@pytest.mark.parametrize("precision, flag, manager", [
    ("allow_mix_precision", "off", None),
    ("allow_fp32_to_fp16", None, "ExponentialUpdateLossScaleManager"),
    ("must_keep_origin_dtype", None, None),
    ("must_keep_origin_dtype", "dynamic", "ExponentialUpdateLossScaleManager"),
    ("force_fp32", "1024", "FixedLossScaleManager"),
])
def test_the_loss_scale_flag_on_one_npu(fake_1p, precision, flag, manager):
    with tf.Graph().as_default():
        plain = tf.compat.v1.train.GradientDescentOptimizer(0.5)
        backend = make_backend("hccl", rank=0, size=1, precision_mode=precision, loss_scale=flag)
        wrapped = backend.wrap_optimizer(plain)
        managers = [name for name, _ in fake_1p.FAKE_CALLS if name.endswith("LossScaleManager")]
        # NPULossScaleOptimizer skips an overflow step with either manager (the fixed one checks by default),
        # so the trainer's own non-finite-gradient stop is needed exactly without one.
        assert backend.skips_nonfinite_updates() is (manager is not None)
        if manager is None:
            assert wrapped is plain and managers == []  # one rank: no allreduce either
        else:
            assert managers == [manager]
            assert calls(fake_1p, "NPULossScaleOptimizer")[0]["is_distributed"] is False
        if manager == "FixedLossScaleManager":
            assert calls(fake_1p, manager)[0]["loss_scale"] == 1024.0
            assert calls(fake_1p, manager)[0].get("enable_overflow_check", True) is True


def test_the_managers_variables_and_update_rules(fake_1p):
    managers = importlib.import_module("npu_bridge.estimator.npu.npu_loss_scale_manager")
    with tf.Graph().as_default():
        manager = managers.ExponentialUpdateLossScaleManager(8.0, 2, decr_every_n_nan_or_inf=2,
                                                             decr_ratio=0.5)
        finite = tf.compat.v1.placeholder(tf.bool, [])
        update = manager.update_loss_scale(finite)
        kinds = {v.op.name: v.dtype.base_dtype for v in tf.compat.v1.global_variables()}
        assert kinds == {"loss_scale": tf.float32, "good_steps": tf.int32, "bad_steps": tf.int32}
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            scales = []
            for ok in (True, True, False, True, False, False, False, False):
                sess.run(update, {finite: ok})
                scales.append(float(sess.run(manager.get_loss_scale())))
    # 2 finite -> x2; an overflow breaks the good run; 2 overflows (not consecutive) -> x0.5; never below 1
    assert scales == [8.0, 16.0, 16.0, 16.0, 8.0, 8.0, 4.0, 4.0]


def test_an_overflow_read_from_the_float_status_skips_the_update_and_its_step(fake):
    backend = make_backend("hccl", rank=1, size=2, loss_scale="dynamic")
    with tf.Graph().as_default():
        var, loss = _model()
        poison = tf.compat.v1.placeholder_with_default(1.0, [])
        applied = tf.compat.v1.train.get_or_create_global_step()
        wrapped = backend.wrap_optimizer(tf.compat.v1.train.GradientDescentOptimizer(0.5))
        grads = wrapped.compute_gradients(loss * poison, var_list=[var])
        train_op = wrapped.apply_gradients(grads, global_step=applied)
        status = [d for d in calls(fake, "hccl_ops.allreduce") if d["fusion"] == 0]
        assert len(status) == 1 and status[0]["reduction"] == "sum"  # the float status summed over ranks
        scale = backend.loss_scale_tensor()
        with tf.compat.v1.Session(config=backend.session_config()) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(train_op, {poison: float("inf")})
            assert np.allclose(sess.run(var), [1.0, -2.0, 3.0]) and sess.run(applied) == 0
            sess.run(train_op)
            assert np.allclose(sess.run(var), [0.5, -1.0, 1.5]) and sess.run(applied) == 1
            assert sess.run(scale) == 2.0 ** 32  # one overflow: decr_every_n_nan_or_inf=2 not reached


# -- broadcast, allreduce, allgather --------------------------------------------------------------------
def test_broadcast_sends_floats_and_sets_counters_from_them(fake):
    backend = make_backend("hccl", rank=1, size=2)
    with tf.Graph().as_default():
        var, _ = _model()
        half = tf.compat.v1.get_variable("h", initializer=tf.constant([1.0], tf.float16))
        step = tf.compat.v1.train.get_or_create_global_step()
        good = tf.compat.v1.get_variable("good_steps", initializer=0, dtype=tf.int32)
        broadcast = backend.broadcast_variables_op([var, step, good, half])
        # the int64 and int32 counters travel in one float32 tensor; the fake refuses an int64 broadcast
        sent = [d["dtypes"] for d in calls(fake, "hccl_ops.broadcast")]
        assert sent == [["float32"], ["float16"], ["float32"]]
        total = backend.allreduce_sum([tf.constant(3.0)])[0]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run([step.assign(2 ** 40 + 12345), good.assign(999)])
            sess.run(broadcast)
            assert sess.run(total) == 6.0  # two fake ranks holding 3.0 each
            assert np.allclose(sess.run(var), [1.0, -2.0, 3.0])
            assert sess.run(step) == 2 ** 40 + 12345 and sess.run(good) == 999  # exact


def test_the_fake_hccl_ops_accept_what_the_adapter_accepts(fake):
    hccl_ops = importlib.import_module("npu_bridge.hccl.hccl_ops")
    with tf.Graph().as_default():
        with pytest.raises(TypeError, match="list"):
            hccl_ops.broadcast(tf.constant([1.0]), 0)
        with pytest.raises(TypeError, match="int64"):  # HCCL of every release: no int64 broadcast
            hccl_ops.broadcast([tf.constant([1], tf.int64)], 0)
        with pytest.raises(ValueError, match="reduction"):
            hccl_ops.allreduce(tf.constant([1.0]), "mean")
        with pytest.raises(TypeError, match="float64"):
            hccl_ops.allreduce(tf.constant([1.0], tf.float64), "sum")
        if fake.branch() == "development":  # HcomAllReduce T without int64 (ops/hccl_ops.cc :38)
            with pytest.raises(TypeError, match="int64"):
                hccl_ops.allreduce(tf.constant([1], tf.int64), "sum")
            with pytest.raises(TypeError):
                hccl_ops.allgather(tf.constant([1.0]), 2, fusion=0)  # no fusion arguments (:40)
        else:
            hccl_ops.allreduce(tf.constant([1], tf.int64), "sum")  # master :28
            hccl_ops.allgather(tf.constant([1.0]), 2, fusion=0)
        with pytest.raises(ValueError, match="scalar"):
            hccl_ops.allgather(tf.constant(1.0), 2)


# -- loop sinking --------------------------------------------------------------------------------------
def test_loop_op_is_the_adapters_iteration_op(fake_1p):
    backend = make_backend("hccl", rank=0, size=1, iterations_per_loop=4)
    with tf.Graph().as_default():
        var, loss = _model()
        step = tf.compat.v1.train.get_or_create_global_step()
        train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
        with tf.compat.v1.Session(config=backend.session_config()) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            op, steps = backend.loop_op(sess, train_op)
            assert (op.name, steps) == ("IterationOp", 4)
            names = {v.op.name: sess.run(v) for v in tf.compat.v1.local_variables()}
            assert names == {"npu_runconfig/iterations_per_loop": 3, "npu_runconfig/loop_cond": 0,
                             "npu_runconfig/zero": 0, "npu_runconfig/one": 1}
            sess.run(op)
        with tf.compat.v1.Session() as plain:  # a session without the NpuOptimizer loop settings
            plain.run(tf.compat.v1.global_variables_initializer())
            with pytest.raises(ValueError, match="NpuOptimizer"):
                backend.loop_op(plain, train_op)
        with pytest.raises(ValueError, match="Operation"):
            backend.loop_op(sess, loss)
    single = make_backend("hccl", rank=0, size=1)
    assert single.loop_op(None, "train") == ("train", 1)


# -- HCCL up, its view of rank and size ----------------------------------------------------------------
def test_hccl_is_asked_for_rank_and_size_only_once_it_is_up(fake, monkeypatch):
    backend = make_backend("hccl", rank=1, size=2)
    with pytest.raises(BackendError, match="start"):
        backend.verify_with_hccl()
    backend.start()
    assert [name for name, _ in fake.FAKE_CALLS if name.startswith("npu_ops")] == [
        "npu_ops.initialize_system", "npu_ops.shutdown_system"]
    assert backend.verify_with_hccl() == (1, 2)
    monkeypatch.setenv("RANK_ID", "0")  # the fake's HCCL now disagrees with the worker's rank
    with pytest.raises(BackendError, match="RANK_TABLE_FILE"):
        backend.verify_with_hccl()
    backend.close()
    api = importlib.import_module("hccl.manage.api")
    with pytest.raises(RuntimeError, match="initialize_system"):  # shut down again
        api.get_rank_id()


def test_start_fails_when_hccl_disagrees(fake, monkeypatch):
    monkeypatch.setenv("RANK_SIZE", "2")
    backend = make_backend("hccl", rank=1, size=2)
    monkeypatch.setenv("RANK_ID", "0")
    with pytest.raises(BackendError, match="HCCL says rank 0 of 2"):
        backend.start()
    backend.close()


def test_one_card_starts_without_asking_hccl(fake_1p, monkeypatch):
    api = importlib.import_module("hccl.manage.api")

    def no_hccl(group="hccl_world_group"):
        raise RuntimeError("no rank table: HCCL was never set up")

    monkeypatch.setattr(api, "get_rank_id", no_hccl)
    backend = make_backend("hccl", rank=0, size=1)
    backend.start()
    backend.close()
    assert [name for name, _ in fake_1p.FAKE_CALLS if name.startswith("npu_ops")] == [
        "npu_ops.initialize_system", "npu_ops.shutdown_system"]


def test_job_info_must_match(fake, monkeypatch):
    monkeypatch.delenv("JOB_ID")
    with pytest.raises(BackendError, match="JOB_ID"):
        make_backend("hccl", rank=1, size=2)
    _forget_fake()
    monkeypatch.setenv("JOB_ID", "1")
    monkeypatch.setenv("RANK_SIZE", "4")
    with pytest.raises(BackendError, match="RANK_SIZE 4"):
        make_backend("hccl", rank=1, size=2)


def test_hccl_backend_only_on_npu(fake):
    with pytest.raises(BackendError, match="collective"):
        make_backend("hccl", rank=0, size=2, device="cpu")


def test_debug_options_are_pure(tmp_path):
    assert debug_options() == []
    with pytest.raises(BackendError, match="directory"):
        debug_options(data_dump=True)


def test_without_the_adapter_the_error_says_what_to_do():
    _forget_fake()
    assert importlib.util.find_spec("npu_bridge") is None
    with pytest.raises(BackendError, match="npu_bridge.*CANN"):
        make_backend("hccl", rank=0, size=1)
