"""tfcompat is the one door to TensorFlow: Keras 2 chosen before the import, graph mode on TF 2."""
import subprocess
import sys

PROBE = (
    "import os, sys\n"
    "os.environ['TF_USE_LEGACY_KERAS'] = '0'\n"
    "from tfcompat import tf, IS_TF2, TF_VERSION\n"
    "print(os.environ['TF_USE_LEGACY_KERAS'])\n"
    "print(tf.executing_eagerly())\n"
    "print(tf.keras.__name__)\n"
    "print(tf.compat.v1.control_flow_v2_enabled())\n"
    "print('keras' in sys.modules and not sys.modules['keras'].__name__.startswith('tf_keras'))\n"
)


def test_tfcompat_sets_legacy_keras_and_graph_mode():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    legacy, eager, keras_name, control_flow_v2, _ = proc.stdout.split()
    assert legacy == "1"           # forced, whatever the shell had
    assert eager == "False"        # TF1-style graph mode
    assert keras_name.startswith(("tf_keras", "tensorflow"))  # Keras 2, never Keras 3
    assert control_flow_v2 == "False"  # TF 1.15's control flow (Switch/Merge), as on the Ascend stack


SEEDED = (
    "import sys\n"
    "from tfcompat import set_graph_seed, tf\n"
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


def test_the_seed_fixes_the_keras_initial_weights():
    """--seed reproduces a model's initial weights (tf_keras on TF 2 ignores the graph seed alone)."""
    proc = subprocess.run([sys.executable, "-c", SEEDED], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["True", "False"]
