"""How much float16 / bfloat16 on the wire changes the gradients, on a real dataset (the digits).

Why: ``--allreduce-dtype float16`` rounds every gradient element before the allreduce. This trains the
model the trainer trains (same loss: label smoothing 0.1 and weight decay; Nesterov momentum) on
scikit-learn's digits (``python -m data.digits``) and, at a few steps, compares the float32 gradient
vector with its float16 and bfloat16 roundings: the relative L2 error, the share of elements rounded to
zero and the share below float16's smallest normal number (6.1e-5, where its precision drops). The
accuracy effect of whole training runs is measured with the launcher (commands in bench/RESULTS.md).

    .venv/bin/python -m data.digits --dst /tmp/digits
    .venv/bin/python bench/bench_wire_dtype.py --data-path /tmp/digits --steps 0 100 300
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def round_bfloat16(values):
    """float32 -> bfloat16 (round to nearest even) -> float32, in numpy (pure)."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def rounding_report(grads):
    """{dtype: (relative L2 error, share rounded to zero)} for the flat float32 gradient vector (pure)."""
    flat = np.asarray(grads, np.float32)
    report = {}
    for name, rounded in (("float16", flat.astype(np.float16).astype(np.float32)),
                          ("bfloat16", round_bfloat16(flat))):
        error = np.linalg.norm(rounded - flat) / max(np.linalg.norm(flat), 1e-30)
        zeroed = float(np.mean((rounded == 0) & (flat != 0)))
        report[name] = (float(error), zeroed)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-path", required=True, help="the digits image folder (python -m data.digits)")
    parser.add_argument("--model", default="mobilenetv3_small")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 100, 300], help="where to compare")
    args = parser.parse_args(argv)
    from data import layout, pipeline
    from models import registry
    from tfcompat import tf

    info = layout.inspect(args.data_path)
    with tf.Graph().as_default():
        dataset = pipeline.train_dataset(info, args.batch_size, args.image_size, 0, 1, seed=1)
        images, labels = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        model = registry.build(args.model, info.num_classes, args.image_size, weight_decay=4e-5)
        logits = model(images, training=True)
        onehot = tf.one_hot(labels, info.num_classes)
        loss = tf.compat.v1.losses.softmax_cross_entropy(onehot, logits, label_smoothing=0.1) + \
            registry.regularization_loss(model)
        grads = tf.gradients(loss, model.trainable_weights)
        optimizer = tf.compat.v1.train.MomentumOptimizer(args.learning_rate, 0.9, use_nesterov=True)
        train = optimizer.apply_gradients(zip(grads, model.trainable_weights))
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            print("model %s, %dx%d digits, batch %d, %d gradient elements"
                  % (args.model, args.image_size, args.image_size, args.batch_size,
                     sum(int(np.prod(w.shape)) for w in model.trainable_weights)))
            for step in range(max(args.steps) + 1):
                if step in args.steps:
                    values, loss_value = sess.run([grads, loss])
                    flat = np.concatenate([v.ravel() for v in values])
                    small = float(np.mean(np.abs(flat) < 6.1e-5))
                    for name, (error, zeroed) in sorted(rounding_report(flat).items()):
                        print("step %4d loss %.3f %-8s relative L2 error %.2e, rounded to zero %.3f%%, "
                              "below 6.1e-5 %.1f%%"
                              % (step, loss_value, name, error, 100 * zeroed, 100 * small))
                sess.run(train)
    return 0


if __name__ == "__main__":
    sys.exit(main())
