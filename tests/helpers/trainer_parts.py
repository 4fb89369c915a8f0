"""Tiny stand-ins for the model registry and the data pipeline, used by the trainer's tests.

Why: the trainer's tests must be small (a few steps on 32 px images) and must know the data exactly
(a learnable dataset, an eval split whose size does not divide the batch). The allreduce backend is the
real one (train.backends). Run as a script, this file is one rank of a job: the environment the
launcher would set (RANK_ID, RANK_SIZE, LAUNCH_*) and the trainer's flags, with these stand-ins.
"""
import os
import sys

# this file is tests/helpers/trainer_parts.py: the repository is three levels up
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tfcompat import tf


class Info:
    def __init__(self, num_classes, train_count, eval_count):
        self.kind = "synthetic"
        self.num_classes = num_classes
        self.class_names = ["c%d" % i for i in range(num_classes)]
        self.train_count = train_count
        self.eval_count = eval_count


def inspect_data(path):
    """'tiny:CLASSES:TRAIN:EVAL' -> Info."""
    _, classes, train, evaluation = path.split(":")
    return Info(int(classes), int(train), int(evaluation))


def _example(index, num_classes, image_size, seed):
    """A learnable image: the class sets the mean colour, plus noise (generated in the pipeline)."""
    label = tf.cast(index % num_classes, tf.int32)
    table = tf.constant([[((c * 7 + k * 3) % 5) / 2.0 - 1.0 for k in range(3)] for c in range(num_classes)])
    noise = tf.random.stateless_normal([image_size, image_size, 3], seed=tf.stack([index, seed]), stddev=0.5)
    return tf.gather(table, label) + noise, label


def train_dataset(info, batch_size, image_size, rank, size, seed):
    ds = tf.data.Dataset.range(info.train_count).shard(size, rank)
    ds = ds.shuffle(1024, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda i: _example(i, info.num_classes, image_size, tf.constant(seed, tf.int64)))
    return ds.batch(batch_size, drop_remainder=True)


def eval_dataset(info, batch_size, image_size, rank, size):
    ds = tf.data.Dataset.range(10 ** 6, 10 ** 6 + info.eval_count).shard(size, rank)
    ds = ds.map(lambda i: _example(i, info.num_classes, image_size, tf.constant(0, tf.int64)))

    def pad(images, labels):
        missing = batch_size - tf.shape(labels)[0]
        images = tf.pad(images, [[0, missing], [0, 0], [0, 0], [0, 0]])
        valid = tf.concat([tf.ones_like(labels, tf.float32), tf.zeros([missing], tf.float32)], 0)
        labels = tf.pad(labels, [[0, missing]])
        images.set_shape([batch_size, image_size, image_size, 3])
        labels.set_shape([batch_size])
        valid.set_shape([batch_size])
        return images, labels, valid

    return ds.batch(batch_size).map(pad)


def build_model(name, num_classes, image_size, weight_decay, dropout, options):
    if name == "crash":
        raise RuntimeError("stand-in crash while building the model")
    layers = tf.keras.layers
    reg = tf.keras.regularizers.l2(weight_decay) if weight_decay else None
    inputs = layers.Input(shape=(image_size, image_size, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, kernel_regularizer=reg)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    if name == "overflow":  # the gradient overflows at the updates listed in the option overflow_at=1:2
        x = layers.Lambda(_overflow_gradient(_overflow_steps(options)), name="overflow")(x)
    outputs = layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name=name)


def _overflow_steps(options):
    for option in options:
        key, _, value = option.partition("=")
        if key == "overflow_at":
            return [int(step) for step in value.split(":")]
    return []


def _overflow_gradient(steps):
    """Identity forward; backward multiplies the gradient by inf when the update starts at one of `steps`
    (global_step before the update): a gradient overflow the loss does not show, as fp16 on a device."""
    @tf.custom_gradient
    def overflow(x):
        def grad(dy):
            step = tf.cast(tf.compat.v1.train.get_global_step(), tf.int64)
            hit = tf.reduce_any(tf.equal(step, tf.constant(steps + [-1], tf.int64)))
            return dy * tf.where(hit, float("inf"), 1.0)
        return tf.identity(x), grad
    return overflow


def regularization_loss(model):
    losses = model.get_losses_for(None)
    return tf.add_n(losses) if losses else tf.constant(0.0)


def make_backend(args):
    from train.backends import backend_from_env
    from train.npu_backend import debug_dirs
    rank_dir = os.path.join(args.output_dir or "output", os.environ.get("RANK_ID", "0"))
    return backend_from_env(precision_mode=args.precision_mode, loss_scale=args.loss_scale,
                            iterations_per_loop=args.iterations_per_loop,
                            debug_plan=debug_dirs(args, rank_dir))


def preprocessing(image_size):
    return {"normalize": "none (stand-in data)", "image_size": image_size}


def parts():
    from train.trainer import Parts
    return Parts(inspect_data=inspect_data, train_dataset=train_dataset, eval_dataset=eval_dataset,
                 build_model=build_model, regularization_loss=regularization_loss, make_backend=make_backend,
                 preprocessing=preprocessing)


if __name__ == "__main__":
    from train.__main__ import main
    sys.exit(main(sys.argv[1:], parts=parts()))
