"""tf.data input pipelines for training and evaluation, sharded by rank (TensorFlow 1.15 API).

Why: every rank must read a disjoint part of the data, see a new order every epoch, and get batches of
one static shape (the graph is compiled once on Ascend); evaluation must count every example exactly
once across ranks. Use with tf.compat.v1.data.make_one_shot_iterator (or an initializable one).

- train_dataset: endless (images float32 [B,S,S,3], labels int32 [B]) (+ skipped int64 [] with
  return_skipped=True: the running count of unreadable images this rank dropped; log it).
- calibration_dataset: endless training-split batches with the evaluation preprocessing, one fixed
  shuffled order (for re-estimating BatchNorm statistics: the distribution the model sees at inference).
- eval_dataset: eval_steps(...) batches of (images, labels, valid float32 [B]) on every rank; padding
  examples have valid = 0.
Sharding: image folders by example (rank r takes examples r, r+N, ...), TFRecords by whole file.
Large folder shards are read from file lists written to `list_dir` (default: the temp dir), see file_lists.py.
"""
from data import augment, file_lists, preprocess, robust
from data.errors import DataError
from data.layout import folder_shard as _folder_shard
from data.layout import record_shard as _record_shard
from tfcompat import tf

AUTOTUNE = tf.data.experimental.AUTOTUNE
DEFAULT_PARALLEL = 8  # images decoded at once per rank
RECORD_BUFFER_BYTES = 8 << 20
SYNTHETIC_SALT = 7919  # seeds evaluation data apart from training data


def eval_steps(info, batch_size, size):
    """Evaluation batches per rank, the same on every rank: enough for the largest shard."""
    counts = _eval_shard_counts(info, size)
    largest = max(counts) if counts else 0
    return (largest + int(batch_size) - 1) // int(batch_size)


def train_dataset(info, batch_size, image_size, rank=0, size=1, seed=0, bad_images="skip",
                  shuffle_buffer=10000, parallel=DEFAULT_PARALLEL, return_skipped=False, list_dir=None,
                  augment_mode="imagenet"):
    """Endless training batches of this rank's disjoint shard, reshuffled every epoch from `seed`,
    augmented by `augment_mode` (augment.MODES: imagenet, light, none)."""
    robust.check_policy(bad_images)
    augment.check_mode(augment_mode)
    _check_rank(rank, size)
    if info.kind == "synthetic":
        dataset = _synthetic_train(info, batch_size, image_size, rank, seed)
        if return_skipped:
            dataset = dataset.map(lambda images, labels: (images, labels, tf.constant(0, tf.int64)))
        return dataset.prefetch(1)
    rank_seed = seed * 1000003 + rank
    if info.kind == "folder":
        files, labels = _folder_shard(info.train_files, info.train_labels, rank, size, "training")
        source = file_lists.list_dataset(files, labels, list_dir)
        source = source.shuffle(len(files), seed=rank_seed, reshuffle_each_iteration=True).repeat()
        source = source.map(lambda path, label: (path, path, label, _no_boxes()))
    else:
        records = _record_shard(info.train_records, info.train_record_counts, rank, size, "train")
        files = tf.data.Dataset.from_tensor_slices(records)
        files = files.shuffle(len(records), seed=rank_seed, reshuffle_each_iteration=True)
        source = files.interleave(lambda name: _records_of(name, info), cycle_length=min(len(records), 8),
                                  block_length=1, num_parallel_calls=AUTOTUNE)
        # shuffled within the epoch, then repeated: every epoch holds each of this rank's records once
        source = source.shuffle(shuffle_buffer, seed=rank_seed + 1, reshuffle_each_iteration=True).repeat()
    draws_seed = rank_seed + 2
    source = source.map(lambda key, data, label, boxes: (key, data, label, boxes, augment.draws(draws_seed)))
    is_folder = info.kind == "folder"

    def decode(data, label, boxes, uniforms):
        encoded = tf.io.read_file(data) if is_folder else data
        return (preprocess.train_image(encoded, image_size, uniforms, boxes, mode=augment_mode),
                tf.cast(label, tf.int32))

    decoded = robust.decode_or_flag(source, decode, [image_size, image_size, 3], parallel)
    kept = robust.apply_policy(decoded, bad_images)
    batches = kept.batch(int(batch_size), drop_remainder=True)
    if return_skipped:
        batches = batches.map(lambda images, labels, skipped: (images, labels, tf.reduce_max(skipped)))
    else:
        batches = batches.map(lambda images, labels, skipped: (images, labels))
    return batches.prefetch(2)


def calibration_dataset(info, batch_size, image_size, rank=0, size=1, seed=0, bad_images="skip",
                        shuffle_buffer=10000, parallel=DEFAULT_PARALLEL, list_dir=None):
    """Endless (images, labels) of this rank's training shard with the evaluation preprocessing, in one
    order fixed by `seed` (every pass the same), for re-estimating BatchNorm statistics."""
    robust.check_policy(bad_images)
    _check_rank(rank, size)
    if info.kind == "synthetic":
        return _synthetic_train(info, batch_size, image_size, rank, seed).prefetch(1)
    rank_seed = seed * 1000003 + rank
    if info.kind == "folder":
        files, labels = _folder_shard(info.train_files, info.train_labels, rank, size, "training")
        source = file_lists.list_dataset(files, labels, list_dir)
        source = source.shuffle(len(files), seed=rank_seed, reshuffle_each_iteration=False).repeat()
        source = source.map(lambda path, label: (path, path, label))
    else:
        records = _record_shard(info.train_records, info.train_record_counts, rank, size, "train")
        files = tf.data.Dataset.from_tensor_slices(records)
        source = files.interleave(lambda name: _records_of(name, info), cycle_length=min(len(records), 8),
                                  block_length=1)
        source = source.shuffle(shuffle_buffer, seed=rank_seed, reshuffle_each_iteration=False).repeat()
        source = source.map(lambda key, data, label, boxes: (key, data, label))
    is_folder = info.kind == "folder"

    def decode(data, label):
        encoded = tf.io.read_file(data) if is_folder else data
        return preprocess.eval_image(encoded, image_size), tf.cast(label, tf.int32)

    decoded = robust.decode_or_flag(source, decode, [image_size, image_size, 3], parallel)
    kept = robust.apply_policy(decoded, bad_images)
    batches = kept.batch(int(batch_size), drop_remainder=True)
    return batches.map(lambda images, labels, skipped: (images, labels)).prefetch(1)


def eval_dataset(info, batch_size, image_size, rank=0, size=1, bad_images="skip", parallel=DEFAULT_PARALLEL,
                 list_dir=None):
    """eval_steps() batches of (images, labels, valid); the last ones padded with valid = 0."""
    robust.check_policy(bad_images)
    _check_rank(rank, size)
    if not info.eval_count:
        raise DataError("%s has no validation data; add validation/<class>/ images (or validation-* "
                        "TFRecords)" % info.path)
    steps = eval_steps(info, batch_size, size)
    shape = [image_size, image_size, 3]
    if info.kind == "synthetic":
        real = _synthetic_eval(info, image_size, rank, size)
    else:
        if info.kind == "folder":
            files = info.eval_files[rank::size]
            labels = info.eval_labels[rank::size]
            source = file_lists.list_dataset(files, labels, list_dir) if files else None
            if source is not None:
                source = source.map(lambda path, label: (path, path, label))
        else:
            records = info.eval_records[rank::size]
            source = None
            if records:
                source = tf.data.Dataset.from_tensor_slices(records).flat_map(
                    lambda name: _records_of(name, info))
                source = source.map(lambda key, data, label, boxes: (key, data, label))
        is_folder = info.kind == "folder"

        def decode(data, label):
            encoded = tf.io.read_file(data) if is_folder else data
            return preprocess.eval_image(encoded, image_size), tf.cast(label, tf.int32)

        if source is None:
            real = None
        else:
            decoded = robust.decode_or_flag(source, decode, shape, parallel)
            real = robust.apply_policy(decoded, bad_images).map(
                lambda image, label, skipped: (image, label, tf.constant(1.0, tf.float32)))
    padding = tf.data.Dataset.from_tensors(
        (tf.zeros(shape, tf.float32), tf.constant(0, tf.int32), tf.constant(0.0, tf.float32))).repeat()
    dataset = padding if real is None else real.concatenate(padding)
    dataset = dataset.take(steps * int(batch_size)).batch(int(batch_size), drop_remainder=True)
    return dataset.prefetch(2)


def _check_rank(rank, size):
    if size < 1 or not 0 <= rank < size:
        raise DataError("rank %r is outside 0..%r; check RANK_ID and RANK_SIZE" % (rank, size - 1))


def _eval_shard_counts(info, size):
    if info.kind == "tfrecord":
        if any(count is None for count in info.eval_record_counts):
            raise DataError("the validation records of %s were not counted; inspect it with "
                            "count_records=True" % info.path)
        return [sum(info.eval_record_counts[rank::size]) for rank in range(size)]
    total = info.eval_count or 0
    return [len(range(rank, total, size)) for rank in range(size)]


def _no_boxes():
    return tf.zeros([0, 4], tf.float32)


RECORD_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
}


def parse_record(serialized, record_file, label_offset):
    """(key, encoded, label - label_offset, boxes [N, 4]) of one serialized TF-Slim style Example."""
    features = tf.io.parse_single_example(serialized, RECORD_FEATURES)
    label = tf.cast(features["image/class/label"], tf.int32) - label_offset
    key = tf.strings.join([record_file, " (image/filename: ", features["image/filename"], ")"])
    coords = [tf.sparse.to_dense(features["image/object/bbox/" + name])
              for name in ("ymin", "xmin", "ymax", "xmax")]
    return key, features["image/encoded"], label, tf.stack(coords, axis=1)


def _records_of(record_file, info):
    """(key, encoded, label, boxes) of every record of one file; stops on a label outside the classes."""
    offset = info.label_offset
    num_classes = info.num_classes

    def parse(serialized):
        key, encoded, label, boxes = parse_record(serialized, record_file, offset)
        in_range = tf.logical_and(label >= 0, label < num_classes)
        check = tf.debugging.Assert(in_range, [
            "label out of range 0..%d after label offset %d:" % (num_classes - 1, offset), label, "in", key,
            "; check the label offset (TF-Slim ImageNet records need 1) and the class count"])
        with tf.control_dependencies([check]):
            label = tf.identity(label)
        return key, encoded, label, boxes

    return tf.data.TFRecordDataset(record_file, buffer_size=RECORD_BUFFER_BYTES).map(parse)


def _synthetic_batch(batch_size, image_size, num_classes, seed_pair):
    """A batch of class-dependent noise (learnable) from a stateless seed: no constants in the graph."""
    draws = tf.random.stateless_uniform([batch_size], seed=seed_pair)
    labels = tf.minimum(tf.cast(draws * num_classes, tf.int32), num_classes - 1)
    noise = tf.random.stateless_uniform([batch_size, image_size, image_size, 3], seed=seed_pair + 1,
                                        minval=-1.0, maxval=1.0)
    colours = _class_colours(labels)
    return noise + colours[:, None, None, :], labels


def _class_colours(labels):
    """float32 [B, 3] in [-1, 1]: a fixed colour per class, a function of the class index alone."""
    phase = tf.cast(labels, tf.float32)[:, None] * tf.constant([[1.0, 2.39996, 3.88322]], tf.float32)
    return tf.sin(phase)


def _synthetic_train(info, batch_size, image_size, rank, seed):
    base = tf.constant([seed, rank * 1000003], tf.int64)

    def make(step):
        return _synthetic_batch(int(batch_size), image_size, info.num_classes, base + tf.stack([0, step * 2]))
    return tf.data.Dataset.range(1 << 62).map(make)


def _synthetic_eval(info, image_size, rank, size):
    def make(index):
        pair = tf.stack([tf.constant(SYNTHETIC_SALT, tf.int64), index * 2])
        images, labels = _synthetic_batch(1, image_size, info.num_classes, pair)
        return images[0], labels[0], tf.constant(1.0, tf.float32)
    return tf.data.Dataset.range(rank, info.eval_count, size).map(make)
