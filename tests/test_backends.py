"""Backends in one process: plans from the environment, session configs, buckets, the none backend."""
import numpy as np
import pytest

from tfcompat import tf
from train import session_config
from train.backends import (
    Backend,
    BackendError,
    backend_from_env,
    make_backend,
    parse_loss_scale,
    plan_from_env,
)
from train.collective_backend import CollectiveBackend, parse_peers, plan_buckets


def test_plan_buckets_fuses_in_order_and_splits_at_the_limit():
    sizes = [(40, "f"), (40, "f"), (40, "f"), (200, "f"), (8, "f")]
    assert plan_buckets(sizes, 100) == [[0, 1], [2], [3], [4]]
    assert plan_buckets(sizes, 0) == [[0], [1], [2], [3], [4]]
    assert plan_buckets(sizes, 10 ** 9) == [[0, 1, 2, 3, 4]]


def test_plan_buckets_never_mixes_dtypes():
    assert plan_buckets([(4, "f32"), (4, "f32"), (4, "i32"), (4, "f32")], 1000) == [[0, 1], [2], [3]]


def test_parse_peers_validates_addresses():
    assert parse_peers("a:1, b:2") == ["a:1", "b:2"]
    with pytest.raises(BackendError, match="host:port"):
        parse_peers("a:1,nohost")


def test_parse_loss_scale():
    assert parse_loss_scale(None) is None
    assert parse_loss_scale("off") == "off"
    assert parse_loss_scale("Dynamic") == "dynamic" and parse_loss_scale("True") == "dynamic"
    assert parse_loss_scale("False") == "off"
    assert parse_loss_scale("1024") == 1024.0
    with pytest.raises(BackendError, match="dynamic"):
        parse_loss_scale("0.5")


def test_plan_from_env_picks_backend_by_device_and_size():
    base = {"RANK_ID": "1", "RANK_SIZE": "2", "LAUNCH_PEERS": "h:1,h:2", "LAUNCH_COLLECTIVE_TIMEOUT": "7.5",
            "LAUNCH_INTRA_OP_THREADS": "3", "LAUNCH_INTER_OP_THREADS": "2"}
    plan = plan_from_env(dict(base, LAUNCH_BACKEND="cpu"), bucket_bytes=10)
    assert plan == dict(kind="collective", rank=1, size=2, device="cpu", intra_op_threads=3,
                        inter_op_threads=2, peers="h:1,h:2", timeout=7.5, bucket_bytes=10)
    assert plan_from_env(dict(base, LAUNCH_BACKEND="npu"))["kind"] == "hccl"
    assert plan_from_env({"LAUNCH_BACKEND": "gpu", "RANK_SIZE": "1"})["kind"] == "none"
    assert plan_from_env({})["kind"] == "none"


@pytest.mark.parametrize("env, words", [
    ({"LAUNCH_BACKEND": "tpu"}, "LAUNCH_BACKEND"),
    ({"RANK_SIZE": "two"}, "RANK_SIZE"),
    ({"RANK_SIZE": "2", "LAUNCH_BACKEND": "cpu"}, "LAUNCH_PEERS"),
    ({"LAUNCH_INTRA_OP_THREADS": "x"}, "LAUNCH_INTRA_OP_THREADS"),
    ({"RANK_SIZE": "2", "LAUNCH_PEERS": "h:1,h:2", "LAUNCH_COLLECTIVE_TIMEOUT": "soon"},
     "LAUNCH_COLLECTIVE_TIMEOUT"),
])
def test_env_mistakes_name_the_variable(env, words):
    with pytest.raises(BackendError, match=words):
        plan_from_env(env)


def test_user_mistakes_in_make_backend_are_backend_errors():
    with pytest.raises(BackendError, match="one of"):
        make_backend("mpi")
    with pytest.raises(BackendError, match="RANK_ID"):
        make_backend("none", rank=1, size=1)
    with pytest.raises(BackendError, match="precision mode"):
        make_backend("none", device="gpu", precision_mode="fp8")
    with pytest.raises(BackendError, match="one address|one host:port"):
        make_backend("collective", rank=0, size=2, peers="h:1")


def test_session_config_threads_and_collective_settings():
    backend = CollectiveBackend(1, 2, ["127.0.0.1:1", "127.0.0.1:2"], timeout=9, start_server=False,
                                intra_op_threads=2, inter_op_threads=1)
    config = backend.session_config()
    assert config.intra_op_parallelism_threads == 2
    assert config.inter_op_parallelism_threads == 1
    assert config.experimental.collective_group_leader == "/job:worker/replica:0/task:0"
    assert list(config.device_filters) == ["/job:worker/replica:0/task:1"]
    assert backend.session_target() == ""


def test_without_op_timeouts_the_session_timeout_bounds_collectives():
    config = session_config.add_collective(tf.compat.v1.ConfigProto(), 0, timeout=2.5, op_level_timeout=False)
    assert config.operation_timeout_in_ms == 2500
    config = session_config.add_collective(tf.compat.v1.ConfigProto(), 0, timeout=2.5, op_level_timeout=True)
    assert config.operation_timeout_in_ms == 0


def test_threads_from_env():
    assert session_config.threads_from_env({}) == (0, 0)
    env = {"LAUNCH_INTRA_OP_THREADS": "4", "LAUNCH_INTER_OP_THREADS": "1"}
    assert session_config.threads_from_env(env) == (4, 1)
    with pytest.raises(ValueError, match="LAUNCH_INTER_OP_THREADS"):
        session_config.threads_from_env({"LAUNCH_INTER_OP_THREADS": "-1"})


def test_tf_own_thread_variables_cap_the_launchers_pools():
    env = {"LAUNCH_INTRA_OP_THREADS": "4", "LAUNCH_INTER_OP_THREADS": "4"}
    assert session_config.threads_from_env(dict(env, TF_NUM_INTRAOP_THREADS="1")) == (1, 4)
    assert session_config.threads_from_env(dict(env, TF_NUM_INTEROP_THREADS="2")) == (4, 2)
    assert session_config.threads_from_env(dict(env, TF_NUM_INTRAOP_THREADS="8")) == (4, 4)   # a cap only
    assert session_config.threads_from_env({"TF_NUM_INTRAOP_THREADS": "3"}) == (3, 0)  # nothing planned
    assert session_config.threads_from_env(dict(env, TF_NUM_INTRAOP_THREADS="x")) == (4, 4)  # TF ignores it


def test_mixed_precision_gpu_rewrite_and_cpu_float32():
    gpu = make_backend("none", device="gpu")
    rewrite = gpu.session_config().graph_options.rewrite_options
    assert rewrite.auto_mixed_precision == rewrite.ON
    cpu = make_backend("none", device="cpu", precision_mode="allow_mix_precision")
    assert cpu.precision_mode == "force_fp32" and not cpu.mixed_precision
    rewrite = cpu.session_config().graph_options.rewrite_options
    assert rewrite.auto_mixed_precision != rewrite.ON
    kept = make_backend("none", device="gpu", precision_mode="must_keep_origin_dtype")
    rewrite = kept.session_config().graph_options.rewrite_options
    assert rewrite.auto_mixed_precision != rewrite.ON
    with tf.Graph().as_default():
        plain = tf.compat.v1.train.GradientDescentOptimizer(0.1)
        assert cpu.wrap_optimizer(plain) is plain
        wrapped = gpu.wrap_optimizer(plain)
        assert isinstance(wrapped, tf.compat.v1.train.experimental.MixedPrecisionLossScaleOptimizer)
        assert make_backend("none", device="gpu", loss_scale="off").wrap_optimizer(plain) is plain


def test_loss_scaling_follows_the_flag_on_every_device():
    assert make_backend("none", device="gpu").loss_scaling() == "dynamic"
    assert make_backend("none", device="gpu", precision_mode="must_keep_origin_dtype").loss_scaling() == "off"
    assert make_backend("none", device="cpu").loss_scaling() == "off"
    assert make_backend("none", device="cpu", loss_scale="dynamic").loss_scaling() == "dynamic"
    assert make_backend("none", device="cpu", loss_scale="128").loss_scaling() == 128.0
    # TF's loss-scale optimizer skips a non-finite update with a dynamic scale only (a fixed one applies it)
    assert [make_backend("none", device="cpu", loss_scale=flag).skips_nonfinite_updates()
            for flag in ("dynamic", "128", "off")] == [True, False, False]
    with tf.Graph().as_default():
        plain = tf.compat.v1.train.GradientDescentOptimizer(0.1)
        backend = make_backend("none", device="cpu", loss_scale="128")
        assert backend.loss_scale_tensor() is None
        wrapped = backend.wrap_optimizer(plain)
        assert isinstance(wrapped, tf.compat.v1.train.experimental.MixedPrecisionLossScaleOptimizer)
        with tf.compat.v1.Session() as sess:
            assert sess.run(backend.loss_scale_tensor()) == 128.0


def test_broadcast_sends_floats_and_carries_counters_as_floats():
    from train.backends import counter_variables, counters_to_floats, floating_variables, set_counters_op
    with tf.Graph().as_default():
        weights = tf.compat.v1.get_variable("w", initializer=tf.constant([1.0]))
        half = tf.compat.v1.get_variable("h", initializer=tf.constant([1.0], tf.float16))
        step = tf.compat.v1.train.get_or_create_global_step()
        good = tf.compat.v1.get_variable("good_steps", initializer=0, dtype=tf.int32)
        assert floating_variables([weights, step, good, half]) == [weights, half]
        assert counter_variables([weights, step, good, half]) == [step, good]
        carried = counters_to_floats([step, good])
        assert carried.dtype == tf.float32
        other_step = tf.compat.v1.get_variable("other_step", initializer=tf.constant(0, tf.int64))
        other_good = tf.compat.v1.get_variable("other_good", initializer=0, dtype=tf.int32)
        copy = set_counters_op([other_step, other_good], carried)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run([step.assign(2 ** 47 + 2 ** 24 + 7), good.assign(2 ** 24 + 1)])
            sess.run(copy)
            assert sess.run([other_step, other_good]) == [2 ** 47 + 2 ** 24 + 7, 2 ** 24 + 1]
        backend = CollectiveBackend(1, 2, ["127.0.0.1:1", "127.0.0.1:2"], timeout=5, start_server=False)
        backend.broadcast_variables_op([weights, step, good, half])
        receives = [op for op in tf.compat.v1.get_default_graph().get_operations()
                    if op.type == "CollectiveBcastRecv"]
        assert sorted(op.get_attr("T").name for op in receives) == ["float16", "float32", "float32"]


@pytest.mark.slow
def test_none_backend_trains_and_counts():
    backend = backend_from_env({"LAUNCH_BACKEND": "cpu"})
    assert isinstance(backend, Backend) and backend.kind == "none" and backend.size == 1
    with tf.Graph().as_default():
        var = tf.compat.v1.get_variable("v", initializer=tf.constant([1.0, 2.0]))
        loss = tf.reduce_sum(var * var)
        train_op = backend.wrap_optimizer(tf.compat.v1.train.GradientDescentOptimizer(0.25)).minimize(loss)
        total = backend.allreduce_sum([tf.constant(5.0)])[0]
        with tf.compat.v1.Session(backend.session_target(), config=backend.session_config()) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(backend.broadcast_variables_op([var]))
            sess.run(train_op)
            assert np.allclose(sess.run(var), [0.5, 1.0])
            assert sess.run(total) == 5.0
    backend.close()


@pytest.mark.slow
def test_fused_buckets_give_exact_means_with_one_collective_per_bucket():
    backend = CollectiveBackend(0, 1, ["127.0.0.1:1"], timeout=5, bucket_bytes=64, start_server=False)
    values = [np.arange(n, dtype=np.float32).reshape(shape) * 0.37
              for n, shape in [(6, (2, 3)), (20, (20,)), (4, (2, 2)), (1, ())]]
    with tf.Graph().as_default() as graph:
        tensors = [tf.constant(v) for v in values]
        means = backend.allreduce_mean(tensors + [None])
        reduces = [op for op in graph.get_operations() if op.type == "CollectiveReduce"]
        # Reverse order (last gradients first), 64-byte buckets: [4+16 bytes], [80], [24].
        assert len(reduces) == 3
        assert means[-1] is None
        with tf.compat.v1.Session(config=tf.compat.v1.ConfigProto()) as sess:
            results = sess.run(means[:-1])
    for want, got in zip(values, results):
        assert got.shape == want.shape and np.array_equal(got, want)
