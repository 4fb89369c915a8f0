"""Re-estimate BatchNorm moving statistics from training images before evaluation and export.

Why: BN layers keep exponential moving averages (decay 0.99 for MobileNetV3) of their batch statistics;
after a short run (a few hundred steps) those averages still remember their initial values (mean 0,
variance 1) and no longer describe the trained weights, so evaluation and the exported model run with
the wrong statistics and can predict one class for everything. Here the statistics are measured instead
(the "precise BN" recipe): a bounded number of training batches goes through the network computing
batch statistics only (no weight update, no optimizer), each BN layer's per-channel mean and mean of
squares are averaged over the batches on the host, summed over ranks with the backend's allreduce and
divided by the rank count, then assigned to the moving mean and variance. Every rank receives the same
reduced bytes and does the same arithmetic, so the ranks stay bit-identical; on one device there is no
collective at all.

The images come from the training split with the evaluation preprocessing (the distribution the model
sees at inference), shuffled once with a fixed seed, so the estimate does not depend on the training
stream and is the same at every evaluation point of a run.
"""
from collections import namedtuple

import numpy as np

from tfcompat import tf

MIN_BATCH = 32  # batch statistics of tiny batches are noisy; a forward pass needs far less memory than a step

Plan = namedtuple("Plan", ["batch_size", "batches"])
Ops = namedtuple("Ops", ["initializer", "batch_stats", "accumulated", "assign", "layers", "batches",
                         "batch_size"])


def plan(train_count, size, batch_size, eval_batch_size, batches):
    """(batch size, batches per rank) of the re-estimation, or None when it is off (pure).

    The batch is the evaluation batch (default: the training batch), at least MIN_BATCH, and no larger
    than this rank's share of the training split; the count is at most one pass over that share.
    """
    if not batches or batches <= 0:
        return None
    share = max(int(train_count) // max(int(size), 1), 1)
    batch = min(max(int(eval_batch_size or batch_size), MIN_BATCH), share)
    return Plan(batch, max(min(int(batches), share // batch), 1))


def batch_norm_layers(model):
    """The model's BatchNormalization layers that are trainable (a frozen layer keeps its statistics)."""
    return [layer for layer in model.layers
            if isinstance(layer, tf.keras.layers.BatchNormalization) and layer.trainable]


def set_momentum(model, momentum):
    """Override every BN layer's moving-average decay (``--bn-momentum``) before the model is called;
    returns how many layers were changed."""
    layers = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = float(momentum)
    return len(layers)


def _channel_axis(layer, rank):
    axis = layer.axis[0] if isinstance(layer.axis, (list, tuple)) else layer.axis
    return axis % rank


def build(model, images, backend, size, batches, batch_size, initializer):
    """The ops of one re-estimation over `images` (a batch tensor of an initializable iterator).

    Returns Ops or None when the model has no trainable BN layer.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return None
    with tf.compat.v1.name_scope("bn_recalibrate"):
        probe = tf.keras.Model(model.inputs, [layer.get_input_at(0) for layer in layers],
                               name="bn_recalibrate_probe")
        features = probe(images, training=True)
        if not isinstance(features, (list, tuple)):
            features = [features]
        pieces, widths = [], []
        for layer, feature in zip(layers, features):
            rank = feature.shape.ndims
            channel = _channel_axis(layer, rank)
            axes = [axis for axis in range(rank) if axis != channel]
            mean, variance = tf.nn.moments(tf.cast(feature, tf.float32), axes=axes)
            pieces += [mean, variance + tf.square(mean)]  # E[x] and E[x^2] of this batch
            widths.append(int(mean.shape[0]))
        batch_stats = tf.concat(pieces, axis=0)
        total = 2 * sum(widths)
        accumulated = tf.compat.v1.placeholder(tf.float32, [total], name="accumulated_statistics")
        reduced = accumulated
        if size > 1:
            reduced = backend.allreduce_sum([accumulated])[0] / float(size)
        parts = tf.split(reduced, [w for w in widths for _ in (0, 1)], axis=0)
        assigns = []
        for index, layer in enumerate(layers):
            mean, mean_sq = parts[2 * index], parts[2 * index + 1]
            variance = tf.maximum(mean_sq - tf.square(mean), 0.0)
            assigns.append(tf.compat.v1.assign(layer.moving_mean, tf.cast(mean, layer.moving_mean.dtype)))
            assigns.append(tf.compat.v1.assign(layer.moving_variance,
                                               tf.cast(variance, layer.moving_variance.dtype)))
        assign = tf.group(*assigns, name="assign_statistics")
    return Ops(initializer, batch_stats, accumulated, assign, len(layers), int(batches), int(batch_size))


def run(sess, ops):
    """Measure the statistics on this rank's batches, average over ranks and assign them; returns the
    number of batches this rank used."""
    sess.run(ops.initializer)
    total = None
    used = 0
    for _ in range(ops.batches):
        try:
            values = sess.run(ops.batch_stats).astype(np.float64)
        except tf.errors.OutOfRangeError:
            break
        total = values if total is None else total + values
        used += 1
    if not used:  # every rank must join the collective: an empty share contributes zeros
        total = np.zeros(int(ops.accumulated.shape[0]), np.float64)
    sess.run(ops.assign, feed_dict={ops.accumulated: (total / max(used, 1)).astype(np.float32)})
    return used
