"""Decoding that survives a corrupt image, and the bad-image policy (skip with a count, or stop).

Why: one corrupt JPEG found at step 90,000 must not kill a week's run with an error deep inside a
training step. Each image is decoded inside its own one-element dataset with ignore_errors(); if that
yields nothing, a fallback element marked ok=False (carrying the file's name) takes its place. The
policy then either stops with the file's name in the message, or drops the element and keeps a
running count of dropped images that the trainer can fetch and log. A run where too many images are
bad stops too (it would otherwise spin forever on a folder of unreadable files).
"""
from data.errors import BAD_IMAGE_POLICIES as POLICIES
from tfcompat import tf

MAX_BAD_FRACTION = 0.05  # skip: stop anyway once more than this fraction (plus a few) is unreadable
MAX_BAD_GRACE = 10
STOP_HINT = ("list every bad file with: python -m data --check DATA_PATH; or train with bad images "
             "skipped (bad_images=skip)")


def check_policy(policy):
    from data.errors import DataError

    if policy not in POLICIES:
        raise DataError("unknown bad-image policy %r; use one of: %s" % (policy, ", ".join(POLICIES)))


def decode_or_flag(dataset, decode, image_shape, parallel):
    """(key, *inputs) elements -> (image, label, ok, key); decode(*inputs) -> (image, label).

    A failing decode gives a zero image with ok=False instead of an error. Order is preserved.
    """
    def one(key, *inputs):
        good = tf.data.Dataset.from_tensors(inputs).map(
            lambda *args: decode(*args) + (tf.constant(True), key))
        good = good.apply(tf.data.experimental.ignore_errors())
        label = tf.cast(inputs[1], tf.int32) if len(inputs) > 1 else tf.constant(0, tf.int32)
        fallback = (tf.zeros(image_shape, tf.float32), label, tf.constant(False), key)
        bad = tf.data.Dataset.from_tensors(fallback)
        return good.concatenate(bad).take(1)

    return dataset.interleave(one, cycle_length=parallel, block_length=1, num_parallel_calls=parallel)


def apply_policy(dataset, policy):
    """(image, label, ok, key) -> (image, label, skipped) where skipped counts dropped images so far."""
    check_policy(policy)
    if policy == "stop":
        def stop_on_bad(image, label, ok, key):
            check = tf.debugging.Assert(ok, ["Unreadable or corrupt image:", key, STOP_HINT])
            with tf.control_dependencies([check]):
                return tf.identity(image), label, tf.constant(0, tf.int64)
        return dataset.map(stop_on_bad)

    def count(state, element):
        image, label, ok, key = element
        seen, bad = state
        seen = seen + 1
        bad = bad + 1 - tf.cast(ok, tf.int64)
        limit = tf.cast(MAX_BAD_FRACTION * tf.cast(seen, tf.float32), tf.int64) + MAX_BAD_GRACE
        check = tf.debugging.Assert(
            bad <= limit, ["Too many unreadable or corrupt images (", bad, "of", seen, "), the latest:", key,
                           "; check the dataset with: python -m data --check DATA_PATH"])
        with tf.control_dependencies([check]):
            bad = tf.identity(bad)
        return (seen, bad), (image, label, ok, bad)

    initial = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    counted = dataset.apply(tf.data.experimental.scan(initial, count))
    kept = counted.filter(lambda image, label, ok, bad: ok)
    return kept.map(lambda image, label, ok, bad: (image, label, bad))
