"""The only module that imports TensorFlow.

Why one place: on TF 2.x the trainer needs Keras 2 (``tf_keras``) in graph mode, and that is chosen by
``TF_USE_LEGACY_KERAS=1`` *before* TensorFlow is imported; eager execution must also be switched off
before any graph is built, and control flow is TF 1.15's (v1 cond/while: Switch/Merge, not the v2
functional ops). That last one keeps the CPU/GPU graphs the same kind the Ascend stack builds, and it halves
the graph build here: Keras' BatchNormalization and Dropout put a cond on the learning phase in every
layer, and a v2 cond builds two function graphs each (MobileNetV3-Small: 8.1 s -> 4.6 s to build, 5.8 s
-> 2.3 s for the gradients, measured on the 2-core machine). On the Ascend stack (TF 1.15) these steps
are no-ops. Everything else does ``from tfcompat import tf``.
"""
import os
import random

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # after the environment above, never before

TF_VERSION = tuple(int(part) for part in tf.__version__.split(".")[:2])
IS_TF2 = TF_VERSION[0] >= 2

if IS_TF2:
    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.disable_control_flow_v2()
    # From TF 2.16 tf.keras is Keras 3 unless tf_keras is installed (and chosen by the variable above).
    if TF_VERSION >= (2, 16) and not tf.keras.__name__.startswith("tf_keras"):
        raise ImportError(
            "tf.keras is %s, not Keras 2; this project trains in graph mode and needs "
            "tf-keras: pip install 'tf-keras==%d.%d.*'" % (tf.keras.__name__, TF_VERSION[0], TF_VERSION[1])
        )


def set_graph_seed(seed):
    """Seed the default graph's random ops *and* the Keras initializers built in it.

    Why: TF 1.15's Keras initializers take their seeds from the graph seed, so the graph seed alone makes a
    model's initial weights follow --seed. tf_keras on TF 2 does not: an initializer without a seed draws
    one from Python's global `random` the first time it is called, so every process (and every model built
    in one process) started from different weights whatever --seed said. Seeding that generator here
    makes them follow --seed again (what tf.keras.utils.set_random_seed does, without a TF-2-only name).
    """
    tf.compat.v1.set_random_seed(seed)
    if IS_TF2:
        random.seed(seed)


__all__ = ["tf", "TF_VERSION", "IS_TF2", "set_graph_seed"]
