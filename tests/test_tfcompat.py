"""tfcompat is the one door to TensorFlow: Keras 2 chosen before the import, graph mode on TF 2.

Both checks run in one fresh process (what tfcompat does happens at its import), each printing its line."""
import subprocess
import sys

import pytest

PROBE = (
    "import os, sys\n"
    "os.environ['TF_USE_LEGACY_KERAS'] = '0'\n"
    "from tfcompat import tf, IS_TF2, TF_VERSION\n"
    "print(os.environ['TF_USE_LEGACY_KERAS'], tf.executing_eagerly(), tf.keras.__name__,\n"
    "      tf.compat.v1.control_flow_v2_enabled(),\n"
    "      'keras' in sys.modules and not sys.modules['keras'].__name__.startswith('tf_keras'))\n"
)


@pytest.fixture(scope="module")
def probed():
    """The two probes' lines, PROBE's first (it must import tfcompat before anything else does)."""
    proc = subprocess.run([sys.executable, "-c", PROBE + SEEDED], capture_output=True, text=True, check=True)
    return proc.stdout.splitlines()


def test_tfcompat_sets_legacy_keras_and_graph_mode(probed):
    legacy, eager, keras_name, control_flow_v2, _ = probed[0].split()
    assert legacy == "1"           # forced, whatever the shell had
    assert eager == "False"        # TF1-style graph mode
    assert keras_name.startswith(("tf_keras", "tensorflow"))  # Keras 2, never Keras 3
    assert control_flow_v2 == "False"  # TF 1.15's control flow (Switch/Merge), as on the Ascend stack


SEEDED = (
    "from tfcompat import set_graph_seed\n"
    "def kernel(seed):\n"
    "    with tf.Graph().as_default():\n"
    "        set_graph_seed(seed)\n"
    "        layer = tf.keras.layers.Dense(3)\n"
    "        layer(tf.zeros([1, 4]))\n"
    "        with tf.compat.v1.Session() as sess:\n"
    "            sess.run(tf.compat.v1.global_variables_initializer())\n"
    "            return sess.run(layer.kernel).tolist()\n"
    "print(kernel(7) == kernel(7), kernel(7) == kernel(8))\n"
)


def test_the_seed_fixes_the_keras_initial_weights(probed):
    """--seed reproduces a model's initial weights (tf_keras on TF 2 ignores the graph seed alone)."""
    assert probed[1].split() == ["True", "False"]
