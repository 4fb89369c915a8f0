"""Forward+backward training throughput (images/s) on CPU of each registered model, side by side with
tf_keras.applications' MobileNetV3 of the same variant and image size, in one run.

Every candidate trains in the trainer's mode (tf.compat.v1 graph, Session, BN updates, plain SGD) on a
batch generated inside the graph. Candidates are timed in interleaved rounds (A B C ... A B C ...) so that
load from other processes hits all of them alike; each figure is the median over rounds.

    .venv/bin/python -m bench.bench_models --sizes 224 128 --batch 16 --steps 5 --rounds 3
"""
import argparse
import statistics
import time

from models import registry
from models.shufflenet_v1 import build_shufflenet_v1
from tfcompat import tf

KERAS_TWIN = {"mobilenetv3_large": "MobileNetV3Large", "mobilenetv3_small": "MobileNetV3Small"}


class Candidate:
    """One model in its own graph and session, with a train op on a synthetic batch."""

    def __init__(self, label, make_model, batch, size, classes=1000):
        self.label = label
        self.graph = tf.Graph()
        tf.keras.backend.clear_session()
        with self.graph.as_default():
            started = time.time()
            model = make_model()
            images = tf.random.uniform([batch, size, size, 3], -1.0, 1.0)
            labels = tf.random.uniform([batch], 0, classes, dtype=tf.int32)
            logits = model(images, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
            updates = model.get_updates_for(images) + model.get_updates_for(None)
            with tf.control_dependencies(updates):
                self.train = tf.compat.v1.train.GradientDescentOptimizer(0.01).minimize(
                    loss, var_list=model.trainable_weights)
            self.session = tf.compat.v1.Session(graph=self.graph)
            self.session.run(tf.compat.v1.global_variables_initializer())
            self.session.run(self.train)  # warm-up: graph optimisation and first allocation
            self.build_seconds = time.time() - started
        self.batch = batch
        self.rates = []

    def time_steps(self, steps):
        started = time.time()
        for _ in range(steps):
            self.session.run(self.train)
        self.rates.append(self.batch * steps / (time.time() - started))

    def rate(self):
        return statistics.median(self.rates)


def candidates_for(size, batch, names):
    """(label, builder) pairs for one image size: ours, Keras' twin, and ShuffleNet's grouped-conv forms."""
    made = []
    for name in names:
        made.append(("%s" % name, lambda name=name: registry.build(name, 1000, size)))
        if name in KERAS_TWIN:
            made.append(("keras %s" % KERAS_TWIN[name], lambda name=name: getattr(
                tf.keras.applications, KERAS_TWIN[name])(input_shape=(size, size, 3), include_top=True,
                                                          weights=None, classes=1000,
                                                          include_preprocessing=False)))
        if name == "shufflenetv1":
            arch = registry.architecture(name)
            made.append(("shufflenetv1 [split grouped conv]", lambda arch=arch: build_shufflenet_v1(
                arch, 1000, (size, size, 3), implementation="split")))
    return [Candidate(label, make, batch, size) for label, make in made]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 128])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=registry.paper_model_names())
    args = parser.parse_args(argv)
    print("TensorFlow %s, batch %d, %d rounds x %d steps, median images/s (forward+backward+SGD)"
          % (tf.__version__, args.batch, args.rounds, args.steps))
    for size in args.sizes:
        candidates = candidates_for(size, args.batch, args.models)
        for _ in range(args.rounds):
            for candidate in candidates:
                candidate.time_steps(args.steps)
        rates = dict((c.label, c.rate()) for c in candidates)
        print("\nimage %dx%d" % (size, size))
        for candidate in candidates:
            print("  %-36s %8.1f images/s  (build+warm-up %.0f s)"
                  % (candidate.label, rates[candidate.label], candidate.build_seconds))
        for name in args.models:
            if name in KERAS_TWIN:
                print("  ratio %s / keras %s: %.2fx" % (name, KERAS_TWIN[name],
                                                         rates[name] / rates["keras " + KERAS_TWIN[name]]))
        if "shufflenetv1" in args.models:
            print("  ratio shufflenetv1 default (%s) / split grouped conv: %.2fx"
                  % (_default_form(), rates["shufflenetv1"] / rates["shufflenetv1 [split grouped conv]"]))
        for candidate in candidates:
            candidate.session.close()


def _default_form():
    from models.layers import default_grouped_implementation
    return default_grouped_implementation()


if __name__ == "__main__":
    main()
