"""BatchNorm statistics re-estimated before evaluation and export (train/bn_recalibrate.py).

The check is independent of the implementation: the tiny stand-in model's only BN layer follows a conv
on the input, so the statistics it should hold after a run are the mean and variance of that conv's
output over the training images, computed here from the checkpoint's kernel with a plain tf.nn.conv2d.
"""
import os

import numpy as np
import pytest
from helpers import records
from helpers import trainer_parts as standins
from helpers.checkpoints import checkpoint_values, latest

from train import bn_recalibrate
from train.__main__ import main

TINY = ["--model", "tiny", "--image-size", "32", "--batch-size", "16", "--log-every", "1", "--no-export",
        "--no-eval"]


def one(values, suffix):
    found = [value for name, value in values.items() if name.endswith(suffix) and "/." not in name
             and "Momentum" not in name]
    assert len(found) == 1, sorted(values)
    return found[0]


def conv_statistics(kernel, count, seed):
    """Per-channel mean and variance of the stand-in's first conv over training images 0..count-1."""
    from tfcompat import tf
    graph = tf.Graph()
    with graph.as_default():
        index = tf.constant(np.arange(count), tf.int64)
        images = tf.map_fn(lambda i: standins._example(i, 4, 32, tf.constant(seed, tf.int64))[0], index,
                           dtype=tf.float32)
        out = tf.nn.conv2d(images, tf.constant(kernel), strides=[1, 2, 2, 1], padding="SAME")
        with tf.compat.v1.Session(graph=graph) as sess:
            values = sess.run(out).astype(np.float64)
    return values.mean(axis=(0, 1, 2)), values.var(axis=(0, 1, 2))


def run(output, *flags):
    return main(TINY + ["--output-dir", str(output)] + list(flags), env={"LAUNCH_OUTPUT_DIR": str(output)},
                parts=standins.parts())


def test_plan_bounds_the_batch_and_the_count():
    assert bn_recalibrate.plan(1000, 1, 16, None, 0) is None  # off
    assert bn_recalibrate.plan(1000, 1, 16, None, 100) == (32, 31)  # at least 32 images, one pass at most
    assert bn_recalibrate.plan(1000, 2, 64, 128, 3) == (128, 3)  # the evaluation batch, 3 batches
    assert bn_recalibrate.plan(40, 2, 2, None, 100) == (20, 1)  # never more than the rank's share


@pytest.mark.slow
def test_statistics_describe_the_trained_weights_however_short_the_run(tmp_path):
    # 64 images, a calibration batch of 32: two batches are exactly the training split, once.
    common = ["--data-path", "tiny:4:64:8", "--max-steps", "3", "--bn-momentum", "0.999"]
    assert run(tmp_path / "on", *common) == 0
    values = checkpoint_values(latest(tmp_path / "on" / "checkpoints"))
    mean, variance = conv_statistics(_conv_kernel(values), 64, 1234 + 7)
    assert np.allclose(one(values, "moving_mean"), mean, rtol=1e-3, atol=1e-5)
    assert np.allclose(one(values, "moving_variance"), variance, rtol=1e-3, atol=1e-5)
    metrics = str(tmp_path / "on" / "0" / "metrics.jsonl")
    told = records(metrics, "bn_recalibrate")
    assert [(r["step"], r["batches"], r["batch_size"], r["layers"]) for r in told] == [(3, 2, 32, 1)]

    # Off: after 3 steps at decay 0.999 the moving averages still hold almost their initial values.
    assert run(tmp_path / "off", *(common + ["--bn-recalibrate-batches", "0"])) == 0
    values = checkpoint_values(latest(tmp_path / "off" / "checkpoints"))
    mean, _ = conv_statistics(_conv_kernel(values), 64, 1234 + 7)
    assert np.abs(one(values, "moving_mean")).max() < 0.05 * np.abs(mean).max()
    assert np.allclose(one(values, "moving_variance"), 1.0, atol=0.05)
    assert not records(str(tmp_path / "off" / "0" / "metrics.jsonl"), "bn_recalibrate")


def _conv_kernel(values):
    kernels = [value for name, value in values.items()
               if name.endswith("kernel") and value.ndim == 4 and "Momentum" not in name]
    assert len(kernels) == 1
    return kernels[0]


def test_bad_flag_values_are_one_line_errors(tmp_path, capsys):
    assert run(tmp_path, "--data-path", "tiny:4:64:8", "--bn-recalibrate-batches", "-1") == 2
    assert "--bn-recalibrate-batches must be 0 (off) or more" in capsys.readouterr().err
    assert run(tmp_path, "--data-path", "tiny:4:64:8", "--bn-momentum", "1.5") == 2
    assert "--bn-momentum must be in [0, 1)" in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / "checkpoints"))
