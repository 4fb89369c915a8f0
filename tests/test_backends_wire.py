"""What the collective backend puts on the wire: the NCCL hint on GPU (by graph inspection), the ring on
CPU (and it runs), float16/bfloat16 gradients, the mean done by the collective itself; the trainer flags."""
import logging

import numpy as np
import pytest

from tfcompat import tf
from train import config
from train.__main__ import backend_flags
from train.backends import BackendError, make_backend
from train.collective_backend import CollectiveBackend, choose_communication, parse_wire_dtype
from train.errors import TrainError

VALUES = [np.linspace(-3.0, 3.0, 12, dtype=np.float32).reshape(3, 4) * 1.2345,
          np.array([1e-3, 65.123, -7.77], np.float32)]


def offline_backend(**options):
    """A one-rank collective backend that builds graphs without starting its server."""
    return CollectiveBackend(0, 1, ["127.0.0.1:1"], timeout=5, start_server=False, **options)


def collectives(graph):
    return [op for op in graph.get_operations() if op.type.startswith("Collective")]


def test_choose_communication_nccl_only_on_gpu_with_nccl_and_the_hint():
    assert choose_communication("gpu", True, True)[0] == "nccl"
    assert choose_communication("gpu", True, False)[0] == "ring"
    assert choose_communication("cpu", True, True)[0] == "ring"
    hint, reason = choose_communication("gpu", False, True)
    assert hint is None and "no communication_hint" in reason


def test_gpu_collectives_carry_the_nccl_hint_in_the_graph(caplog):
    caplog.set_level(logging.INFO, logger="train.collective_backend")
    backend = offline_backend(device="gpu", nccl=True)
    with tf.Graph().as_default() as graph:
        var = tf.compat.v1.get_variable("v", initializer=tf.constant(VALUES[0]))
        backend.allreduce_mean([tf.constant(v) for v in VALUES])
        backend.allreduce_sum([tf.constant(1.0)])
        backend.broadcast_variables_op([var])
    ops = collectives(graph)
    assert {op.type for op in ops} == {"CollectiveReduce", "CollectiveBcastSend"}
    assert all(op.get_attr("communication_hint") == b"nccl" for op in ops)
    assert "collectives: nccl (GPU with NCCL)" in caplog.text
    assert "collectives nccl" in backend.describe()


@pytest.mark.slow
def test_cpu_falls_back_to_the_ring_and_the_collective_divides(caplog):
    caplog.set_level(logging.INFO, logger="train.collective_backend")
    backend = offline_backend(device="cpu")
    with tf.Graph().as_default() as graph:
        means = backend.allreduce_mean([tf.constant(v) for v in VALUES])
        reduces = [op for op in collectives(graph) if op.type == "CollectiveReduce"]
        with tf.compat.v1.Session() as sess:
            results = sess.run(means)
    assert "collectives: ring (cpu: ring)" in caplog.text
    assert [op.get_attr("communication_hint") for op in reduces] == [b"ring"]
    assert [op.get_attr("final_op") for op in reduces] == [b"Div"]  # the mean, in the collective
    for want, got in zip(VALUES, results):
        assert got.dtype == np.float32 and np.array_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("wire", ["float16", "bfloat16"])
def test_gradients_travel_in_the_wire_dtype_and_come_back_in_their_own(wire):
    backend = offline_backend(allreduce_dtype=wire)
    with tf.Graph().as_default() as graph:
        tensors = [tf.constant(v) for v in VALUES]
        means = backend.allreduce_mean(tensors)
        counts = backend.allreduce_sum([tf.constant([2.5, 3.25])])  # sums (evaluation) keep float32
        reduces = [op for op in collectives(graph) if op.type == "CollectiveReduce"]
        with tf.compat.v1.Session() as sess:
            results, want, total = sess.run([means, [tf.cast(tf.cast(t, wire), tf.float32) for t in tensors],
                                             counts])
    assert sorted(op.get_attr("T").name for op in reduces) == sorted([wire, "float32"])
    for got, rounded in zip(results, want):
        assert got.dtype == np.float32 and np.array_equal(got, rounded)
    assert not np.array_equal(results[0], VALUES[0])  # really rounded on the way
    assert np.array_equal(total[0], [2.5, 3.25])


def test_wire_dtype_and_trainer_flags():
    assert parse_wire_dtype(None) is None and parse_wire_dtype("float32") is None
    assert parse_wire_dtype("bfloat16") == "bfloat16"
    with pytest.raises(BackendError, match="float16"):
        parse_wire_dtype("int8")
    with pytest.raises(BackendError, match="float16"):
        make_backend("collective", 0, 2, peers="127.0.0.1:1,127.0.0.1:2", allreduce_dtype="fp8")
    args = config.parse_flags(["--model", "m", "--allreduce-dtype", "float16",
                               "--allreduce-bucket-mb", "0.5"])
    assert backend_flags(args) == {"precision_mode": None, "loss_scale": None, "allreduce_dtype": "float16",
                                   "bucket_bytes": 512 * 1024}
    defaults = config.parse_flags(["--model", "m"])
    assert "bucket_bytes" not in backend_flags(defaults) and defaults.allreduce_dtype == "float32"
    with pytest.raises(TrainError, match="allreduce-bucket-mb"):
        config.parse_flags(["--model", "m", "--allreduce-bucket-mb", "-1"])
    with pytest.raises(TrainError, match="allreduce-dtype"):
        config.parse_flags(["--model", "m", "--allreduce-dtype", "float8"])


def test_one_rank_ignores_the_wire_dtype_and_says_so(caplog):
    caplog.set_level(logging.INFO, logger="train.backends")
    backend = make_backend("none", allreduce_dtype="float16")
    assert backend.kind == "none"
    assert "ignored" in caplog.text
