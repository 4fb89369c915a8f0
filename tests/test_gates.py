"""Each compatibility gate passes on the tree and catches a violation planted in a temporary copy."""
import contextlib
import importlib
import io
import os
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

SHARED_REFERENCE = os.path.join(os.path.dirname(ROOT), "shared", "reference")
COPIED = ("tfcompat", "tools", "contract", "launcher", "models", "data", "train", "rank_table",
          "pyproject.toml")


def copy_tree(dst):
    """A copy of the project's code (no venv, no outputs) at `dst`, to plant violations in."""
    dst.mkdir()
    for name in COPIED:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, str(dst / name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif os.path.exists(src):
            shutil.copy(src, str(dst / name))
    return dst


@pytest.fixture
def tree(tmp_path):
    return copy_tree(tmp_path / "project")


def run_gate_as_make_check_does(module, root):
    """Run a gate the way `make check` does (its own process); returns (exit code, output)."""
    proc = subprocess.run([sys.executable, "-m", module, str(root)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


def run_gate(module, root):
    """Run a gate's main() in this process (the planted cases: ~80 of them, a Python start each saved);
    returns (exit code, everything it printed)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = importlib.import_module(module).main([str(root)])
    return code, printed.getvalue()


def plant(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


GATES = ["tools.check_py37", "tools.check_tf_api", "tools.check_imports"]


@pytest.mark.parametrize("gate", GATES)
def test_gate_passes_on_the_real_tree(gate):
    code, out = run_gate_as_make_check_does(gate, ROOT)
    assert code == 0, out


@pytest.mark.parametrize("gate", GATES)
def test_gate_passes_on_the_unmodified_copy(gate, tree):
    code, out = run_gate(gate, tree)
    assert code == 0, out


PLANTED_NAMES = [
    ("from tfcompat import tf\nx = tf.keras.layers.Conv2D(8, 1, groups=2)\n", "groups"),
    ("from tfcompat import tf\nlayers = tf.keras.layers\ny = layers.DepthwiseConv2D(3, dilation_rate=2)\n",
     "dilation_rate"),
    ("from tfcompat import tf\nz = tf.experimental.numpy.ones(3)\n", "tf.experimental.numpy"),
    ("from tfcompat import tf\nd = tf.data.experimental.AUTOTUNE\ne = tf.data.AUTOTUNE\n",
     "tf.data.AUTOTUNE"),
    ("from tfcompat import tf\nopt = tf.keras.optimizers.legacy.SGD(0.1)\n", "tf.keras.optimizers.legacy"),
]


NEWER_PYTHON = {
    "walrus": ("if (n := len('ab')) > 1:\n    pass\n", "3.8"),
    "builtin_generic": ("def first(items: list[int]) -> int:\n    return items[0]\n", "3.9"),
    "positional_only": ("def f(a, /, b):\n    return a + b\n", "3.8"),
    "match": ("match 1:\n    case 1:\n        pass\n", "3.10"),
    "str_method": ("print('abc'.removeprefix('a'))\n", "3.9"),
}


def test_py37_gate_catches_newer_python(tree):
    # one gate run over a tree with every case planted in a file of its own (vermin starts a process pool
    # per run): each file must be named, with the version it needs
    for name, (source, _) in NEWER_PYTHON.items():
        plant(tree, "data/planted_%s.py" % name, source)
    code, out = run_gate("tools.check_py37", tree)
    assert code == 1, out
    for name, (_, needs) in NEWER_PYTHON.items():
        lines = [line for line in out.splitlines() if "planted_%s.py" % name in line]
        assert lines and any(needs in line for line in lines), (name, out)


@pytest.mark.parametrize("source, name", PLANTED_NAMES)
def test_tf_api_gate_catches_names_missing_from_tf115(tf_api_planted, source, name):
    code, out = tf_api_planted
    rel = planted_path(source)
    assert code == 1, out
    assert name in "\n".join(line for line in out.splitlines() if line.startswith(rel + ":")), (rel, out)


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


PLANTED_ARGUMENTS = [
    # the three examples: TF 2.x-only arguments, fatal on 1.15
    ("dataset = tf.data.TFRecordDataset(['a'])\ndataset = dataset.batch(4, num_parallel_calls=2)\n",
     "tf.data.Dataset.batch has no argument 'num_parallel_calls'", "batch_size, drop_remainder"),
    ("def f(x):\n    return x\n\n\ndataset = tf.data.Dataset.range(8)\n"
     "dataset = dataset.map(f, deterministic=False)\n",
     "tf.data.Dataset.map has no argument 'deterministic'", "(map_func, num_parallel_calls)"),
    ("y = tf.image.resize(tf.zeros([1, 4, 4, 3]), [2, 2], antialias=True)\n",
     "tf.image.resize has no argument 'antialias'",
     "tf.image.resize(images, size, method, align_corners, preserve_aspect_ratio, name)"),
    # resolved through aliases and tf.compat.v1 (tf.X is the v1 API in 1.15)
    ("from tfcompat import tf as tf1\nv1 = tf1.compat.v1\n"
     "y = v1.image.resize_images(1, [2, 2], antialias=True)\n",
     "tf.compat.v1.image.resize_images has no argument 'antialias'", "preserve_aspect_ratio"),
    ("y = tf.reduce_mean([1.0], axis=0, keepdims=True, dtype='float32')\n",
     "tf.reduce_mean has no argument 'dtype'", "reduction_indices"),
    # too many positional arguments, on a function and on a dataset method
    ("y = tf.image.resize(1, [2, 2], 'bilinear', False, False, 'name', True)\n",
     "tf.image.resize takes at most 6 positional argument(s) in TensorFlow 1.15, 7 given", "align_corners"),
    ("d = tf.data.Dataset.range(8).shuffle(8, 1, True, 4)\n",
     "tf.data.Dataset.shuffle takes at most 3 positional argument(s) in TensorFlow 1.15, 4 given",
     "(buffer_size, seed, reshuffle_each_iteration)"),
    # a dataset method 1.15's DatasetV1 lacks
    ("n = tf.compat.v1.data.Dataset.from_tensors([1]).cardinality()\n", "tf.data.Dataset.cardinality is not",
     "DatasetV1"),
    # a name bound to a dataset on every path, in a branch, in a loop, and seen from a nested function
    ("def pipe(files, flag):\n"
     "    if flag:\n        source = tf.data.TextLineDataset(files)\n"
     "    else:\n        source = tf.data.Dataset.from_tensor_slices(files).repeat()\n"
     "    for _ in range(2):\n        source = source.prefetch(1)\n"
     "    return source.interleave(tf.data.TFRecordDataset, cycle_length=2, deterministic=True)\n",
     "tf.data.Dataset.interleave has no argument 'deterministic'", "block_length"),
    ("def pipe(files):\n    listed = tf.data.Dataset.list_files(files)\n"
     "    return lambda: listed.padded_batch(2, [None], padding_values=0, drop_remainder=True, name='b')\n",
     "tf.data.Dataset.padded_batch has no argument 'name'", "padding_values"),
]


def planted_path(source):
    """Where tf_api_planted put the case with this source: a file of its own, so that one gate run checks
    every case (names under models/, arguments under data/)."""
    names = [case[0] for case in PLANTED_NAMES]
    if source in names:
        return "models/planted_name_%d.py" % names.index(source)
    return "data/planted_argument_%d.py" % [case[0] for case in PLANTED_ARGUMENTS].index(source)


@pytest.fixture(scope="module")
def tf_api_planted(tmp_path_factory):
    """One run of the TF API gate over a copy with every PLANTED_NAMES and PLANTED_ARGUMENTS case planted
    in a file of its own (each run scans the whole tree); each test reads its own file's lines."""
    root = copy_tree(tmp_path_factory.mktemp("tf_api") / "project")
    for source, _ in PLANTED_NAMES:
        plant(root, planted_path(source), source)
    for source, _, _ in PLANTED_ARGUMENTS:
        plant(root, planted_path(source), "from tfcompat import tf\n" + source)
    return run_gate("tools.check_tf_api", root)


@pytest.mark.parametrize("source, message, signature", PLANTED_ARGUMENTS)
def test_tf_api_gate_catches_arguments_missing_from_tf115(tf_api_planted, source, message, signature):
    code, out = tf_api_planted
    rel = planted_path(source)
    assert code == 1, out
    lines = [line for line in out.splitlines() if line.startswith(rel + ":")]
    assert len(lines) == 1, (rel, out)
    assert message in lines[0] and "1.15" in lines[0] and signature in lines[0], out
    line = int(lines[0].split(":")[1])
    assert 1 < line <= source.count("\n") + 1


def test_tf_api_gate_sees_datasets_returned_by_project_functions(tree):
    plant(tree, "data/planted_make.py", (
        "from tfcompat import tf\n"
        "\n"
        "\n"
        "def records(files):\n"
        "    return tf.data.TFRecordDataset(files)\n"
        "\n"
        "\n"
        "def maybe(files):  # a dataset on one path only: callers cannot be sure\n"
        "    if files:\n"
        "        return tf.data.TFRecordDataset(files)\n"
        "    return None\n"))
    plant(tree, "data/planted.py", (
        "from data import planted_make\n"
        "from data.planted_make import maybe\n"
        "\n"
        "\n"
        "def _local(files):\n"
        "    return planted_make.records(files).shuffle(8)\n"
        "\n"
        "\n"
        "def pipe(files):\n"
        "    maybe(files).map(len, deterministic=True)\n"
        "    return _local(files).map(len, num_parallel_calls=2, deterministic=True)\n"))
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 1, out
    lines = [line for line in out.splitlines() if "planted" in line]
    assert len(lines) == 1 and lines[0].startswith("data/planted.py:11: tf.data.Dataset.map has no argument "
                                                   "'deterministic'"), out


def test_tf_api_gate_accepts_tf115_arguments_and_unknown_objects(tree):
    plant(tree, "data/fine.py", (
        "import concurrent.futures\n"
        "from tfcompat import tf\n"
        "\n"
        "\n"
        "def pipe(files, pool, layer, x, ops):\n"
        "    d = tf.data.TFRecordDataset(files, buffer_size=1 << 20, num_parallel_reads=2)\n"
        "    d = d.map(len, num_parallel_calls=tf.data.experimental.AUTOTUNE).batch(4, drop_remainder=True)\n"
        "    d = d.apply(tf.data.experimental.ignore_errors()).prefetch(buffer_size=2)\n"
        "    it = tf.compat.v1.data.make_initializable_iterator(d.repeat(count=2))\n"
        "    r = tf.data.Dataset.range(0, 10, 2).window(2, shift=1, stride=1, drop_remainder=True)\n"
        "    y = tf.image.resize(x, [2, 2], method=tf.image.ResizeMethod.BILINEAR, align_corners=False)\n"
        "    y = tf.compat.v1.image.resize(y, [2, 2], 'bilinear', False, False, 'r')\n"
        "    g = tf.group(*ops, name='g')\n"
        "    p = tf.print(x, y, output_stream='file://x')\n"
        "    c = tf.keras.layers.Conv2D(8, 3, 1, 'same', name='c')(x, training=False)\n"
        "    layer(x, training=True)  # a layer instance: its type is not known here\n"
        "    pool.map(len, files, chunksize=2)  # not a dataset\n"
        "    d = concurrent.futures.ThreadPoolExecutor(2)  # rebound: no longer a dataset\n"
        "    d.map(len, files, timeout=3)\n"
        "    e = tf.data.Dataset.from_tensors(1) if x else pool\n"
        "    e.map(len, timeout=3)  # a dataset on one path only\n"
        "    if x:\n        k = tf.data.Dataset.range(3)\n    else:\n        k = pool\n"
        "    k.map(len, timeout=3)  # likewise\n"
        "    for f in [pool]:\n"
        "        f.map(len, chunksize=1)\n"
        "    h = tf.data.Dataset.range(3)\n"
        "    h = [h.map(len, timeout=1) for h in [pool]]  # the comprehension's own h\n"
        "    return it, r, y, g, p, c, h, tf.data.Dataset.batch(d, 4, True)\n"))
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 0, out


def test_tf_api_gate_names_an_unparsable_file_in_one_line(tree):
    plant(tree, "data/planted.py", "from tfcompat import tf\ndef f(:\n    return tf.constant(1)\n")
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 1 and "Traceback" not in out, out
    assert "data/planted.py:2: cannot parse" in out, out


def test_tf_api_allowlist_admits_a_reasoned_argument(tree):
    plant(tree, "data/branch.py", ("from tfcompat import IS_TF2, tf\n"
                                   "if IS_TF2:\n"
                                   "    y = tf.image.resize(tf.zeros([1, 3, 3, 3]), [2, 2], antialias=True)\n"
                                   "else:\n"
                                   "    y = tf.image.resize(tf.zeros([1, 3, 3, 3]), [2, 2])\n"))
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 1 and "data/branch.py:3: tf.image.resize has no argument 'antialias'" in out, out
    allow = tree / "tools" / "tf2_only_allowlist.txt"
    allow.write_text("data/branch.py | tf.image.resize(antialias=) | TF 2 branch behind IS_TF2\n")
    code, out = run_gate("tools.check_tf_api", tree)
    assert code == 0, out


DIRECT_IMPORTS = [
    ("data/planted.py", "import tensorflow as tf\n", "imports tensorflow directly"),
    ("models/planted.py", "from tensorflow.keras import layers\n", "imports tensorflow directly"),
    ("models/planted2.py", "import tf_keras\n", "imports tf_keras directly"),
    ("train/planted.py", "from npu_bridge.npu_init import *\n", "imports npu_bridge directly"),
    ("launcher/planted.py", "from tfcompat import tf\n", "must start without TensorFlow"),
    ("rank_table/planted.py", "import tfcompat\n", "must start without TensorFlow"),
]


@pytest.fixture(scope="module")
def imports_planted(tmp_path_factory):
    """One run of the import gate over a copy with every DIRECT_IMPORTS case planted, each in its file."""
    root = copy_tree(tmp_path_factory.mktemp("imports") / "project")
    for rel, source, _ in DIRECT_IMPORTS:
        plant(root, rel, source)
    return run_gate("tools.check_imports", root)


@pytest.mark.parametrize("rel, source, message", DIRECT_IMPORTS)
def test_import_gate_catches_direct_imports(imports_planted, rel, source, message):
    code, out = imports_planted
    assert code == 1, out
    assert [line for line in out.splitlines() if rel in line and message in line], (rel, out)


@pytest.mark.parametrize("planted", [
    # a cycle through lazy (function-level) imports counts too
    {"train/planted_a.py": "def f():\n    from train import planted_b\n    return planted_b\n",
     "train/planted_b.py": "from train.planted_a import f\n"},
    {"launcher/planted_a.py": "from . import planted_b\n",
     "launcher/planted_b.py": "import launcher.planted_a\n"},
])
def test_import_gate_catches_import_cycles(tree, planted):
    for rel, source in planted.items():
        plant(tree, rel, source)
    code, out = run_gate("tools.check_imports", tree)
    assert code == 1, out
    assert "import cycle: " in out and "planted_a -> " in out and "planted_b" in out


def test_import_graph_follows_the_real_trees_seams():
    from tools.import_graph import cycles, import_graph
    graph = import_graph(ROOT)
    assert cycles(graph) == []
    assert "train.backend_base" in graph["train.collective_backend"]
    assert {"train.collective_backend", "train.npu_backend"} <= graph["train.backends"]
    assert "launcher.cli" in graph["launcher.k8s"] and "launcher.k8s" not in graph["launcher.cli"]


def test_ruff_gate_catches_lint(tree):
    ruff = [sys.executable, "-m", "ruff", "check", "--no-cache", "data/planted.py"]
    plant(tree, "data/planted.py", "import os\n\n\ndef f():\n    return os.sep\n")
    assert subprocess.run(ruff, cwd=str(tree)).returncode == 0
    plant(tree, "data/planted.py", "import os\n\n\ndef f():\n    return undefined_name\n")
    proc = subprocess.run(ruff, cwd=str(tree), stdout=subprocess.PIPE, text=True)
    assert proc.returncode == 1
    assert "F401" in proc.stdout and "F821" in proc.stdout


@pytest.mark.skipif(not os.path.isdir(SHARED_REFERENCE), reason="no ../shared/reference beside this checkout")
@pytest.mark.parametrize("name", ["tf1_15_api.txt", "tf1_15_keras_layer_kwargs.txt", "tf1_15_signatures.txt"])
def test_vendored_reference_matches_shared(name):
    with open(os.path.join(ROOT, "tools", "reference", name)) as ours:
        with open(os.path.join(SHARED_REFERENCE, name)) as theirs:
            assert ours.read() == theirs.read()
