"""Each compatibility gate passes on the tree and catches a violation planted in a temporary copy."""
import os
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

SHARED_REFERENCE = os.path.join(os.path.dirname(ROOT), "shared", "reference")
COPIED = ("tfcompat", "tools", "launcher", "models", "data", "train", "rank_table", "pyproject.toml")


@pytest.fixture
def tree(tmp_path):
    """A copy of the project's code (no venv, no outputs) to plant violations in."""
    dst = tmp_path / "project"
    dst.mkdir()
    for name in COPIED:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, str(dst / name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif os.path.exists(src):
            shutil.copy(src, str(dst / name))
    return dst


def run_gate(module, root):
    """Run a gate the way `make check` does; returns (exit code, output)."""
    proc = subprocess.run([sys.executable, "-m", module, str(root)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


def plant(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


GATES = ["tools.check_py37", "tools.check_tf_api", "tools.check_imports"]


@pytest.mark.parametrize("gate", GATES)
def test_gate_passes_on_the_real_tree(gate):
    code, out = run_gate(gate, ROOT)
    assert code == 0, out


@pytest.mark.parametrize("gate", GATES)
def test_gate_passes_on_the_unmodified_copy(gate, tree):
    code, out = run_gate(gate, tree)
    assert code == 0, out


@pytest.mark.parametrize("source, needs", [
    ("if (n := len('ab')) > 1:\n    pass\n", "3.8"),                  # walrus
    ("def first(items: list[int]) -> int:\n    return items[0]\n", "3.9"),  # builtin generic
    ("def f(a, /, b):\n    return a + b\n", "3.8"),                   # positional-only parameters
    ("match 1:\n    case 1:\n        pass\n", "3.10"),                # match statement
    ("print('abc'.removeprefix('a'))\n", "3.9"),                     # newer str method
])
def test_py37_gate_catches_newer_python(tree, source, needs):
    plant(tree, "data/planted.py", source)
    code, out = run_gate("tools.check_py37", tree)
    assert code == 1, out
    assert "planted.py" in out and needs in out


@pytest.mark.parametrize("source, name", [
    ("from tfcompat import tf\nx = tf.keras.layers.Conv2D(8, 1, groups=2)\n", "groups"),
    ("from tfcompat import tf\nlayers = tf.keras.layers\ny = layers.DepthwiseConv2D(3, dilation_rate=2)\n",
     "dilation_rate"),
    ("from tfcompat import tf\nz = tf.experimental.numpy.ones(3)\n", "tf.experimental.numpy"),
    ("from tfcompat import tf\nd = tf.data.experimental.AUTOTUNE\ne = tf.data.AUTOTUNE\n",
     "tf.data.AUTOTUNE"),
    ("from tfcompat import tf\nopt = tf.keras.optimizers.legacy.SGD(0.1)\n", "tf.keras.optimizers.legacy"),
])
def test_tf_api_gate_catches_names_missing_from_tf115(tree, source, name):
    plant(tree, "models/planted.py", source)
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 1, out
    assert "planted.py" in out and name in out


def test_tf_api_gate_accepts_tf115_names_and_class_attributes(tree):
    plant(tree, "models/fine.py", (
        "from tfcompat import tf\n"
        "ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)\n"
        "conv = tf.keras.layers.Conv2D(8, 3, strides=2, padding='same', use_bias=False, name='c')\n"
        "bn = tf.keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name='bn')\n"
        "pool = tf.keras.layers.GlobalAveragePooling2D(name='gap')\n"
        "add = tf.keras.layers.Add(name='add')\n"
        "auto = tf.data.experimental.AUTOTUNE\n"
        "version = tf.__version__\n"))
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 0, out


def test_tf_api_allowlist_needs_a_reason_and_an_actual_use(tree):
    plant(tree, "train/branch.py", "from tfcompat import tf\nif 1:\n    a = tf.data.AUTOTUNE\n")
    allow = tree / "tools" / "tf2_only_allowlist.txt"
    allow.write_text("train/branch.py | tf.data.AUTOTUNE | TF 2 name behind a version check\n")
    assert run_gate("tools.check_tf_api", tree)[0] == 0
    allow.write_text("train/branch.py | tf.data.AUTOTUNE |\n")
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 1 and "want `path | tf.name | reason`" in out
    allow.write_text("train/branch.py | tf.data.AUTOTUNE | reason\ntrain/gone.py | tf.foo | stale\n")
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 1 and "unused entry train/gone.py" in out


@pytest.mark.parametrize("rel, source, message", [
    ("data/planted.py", "import tensorflow as tf\n", "imports tensorflow directly"),
    ("models/planted.py", "from tensorflow.keras import layers\n", "imports tensorflow directly"),
    ("models/planted2.py", "import tf_keras\n", "imports tf_keras directly"),
    ("train/planted.py", "from npu_bridge.npu_init import *\n", "imports npu_bridge directly"),
    ("launcher/planted.py", "from tfcompat import tf\n", "must start without TensorFlow"),
    ("rank_table/planted.py", "import tfcompat\n", "must start without TensorFlow"),
])
def test_import_gate_catches_direct_imports(tree, rel, source, message):
    plant(tree, rel, source)
    code, out = run_gate("tools.check_imports", tree)
    assert code == 1, out
    assert message in out


def test_ruff_gate_catches_lint(tree):
    ruff = [sys.executable, "-m", "ruff", "check", "--no-cache", "data/planted.py"]
    plant(tree, "data/planted.py", "import os\n\n\ndef f():\n    return os.sep\n")
    assert subprocess.run(ruff, cwd=str(tree)).returncode == 0
    plant(tree, "data/planted.py", "import os\n\n\ndef f():\n    return undefined_name\n")
    proc = subprocess.run(ruff, cwd=str(tree), stdout=subprocess.PIPE, text=True)
    assert proc.returncode == 1
    assert "F401" in proc.stdout and "F821" in proc.stdout


@pytest.mark.skipif(not os.path.isdir(SHARED_REFERENCE), reason="no ../shared/reference beside this checkout")
@pytest.mark.parametrize("name", ["tf1_15_api.txt", "tf1_15_keras_layer_kwargs.txt"])
def test_vendored_reference_matches_shared(name):
    with open(os.path.join(ROOT, "tools", "reference", name)) as ours:
        with open(os.path.join(SHARED_REFERENCE, name)) as theirs:
            assert ours.read() == theirs.read()
