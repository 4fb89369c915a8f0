"""The TensorFlow half of models/: built graphs match the counter and keras.applications, layers are
exact, and each model trains a few steps in tf.compat.v1 graph mode under a Session (the trainer's mode)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from models import registry
from tfcompat import tf

pytestmark = pytest.mark.slow


def _fresh_graph(seed=1):
    """A new graph with a fixed op seed base, so every run draws the same initial weights."""
    tf.keras.backend.clear_session()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
    return graph


def _native_grouped_kernels_missing():
    """Why this host cannot run a native grouped Conv2D (forward, gradient, inference BN fusion), or ''.

    TF 2's CPU kernels take grouped kernels only with oneDNN (on by default on some Intel hosts, off on
    AMD EPYC ones); the native form is an opt-in for such hosts, the split form is the default."""
    with _fresh_graph().as_default():
        x = tf.ones([1, 2, 2, 4])
        kernel = tf.ones([1, 1, 2, 4])
        y = tf.compat.v1.layers.batch_normalization(tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "VALID"),
                                                    training=False)
        grad = tf.gradients(tf.reduce_sum(y), [kernel])
        try:
            with tf.compat.v1.Session() as session:
                session.run(tf.compat.v1.global_variables_initializer())
                session.run([y] + grad)
        except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as error:
            return "no native grouped Conv2D kernels on this host (%s)" % type(error).__name__
    return ""


@pytest.fixture(scope="module")
def native_grouped():
    reason = _native_grouped_kernels_missing()
    if reason:
        pytest.skip(reason)


def test_default_grouped_form_is_split_everywhere():
    from models.layers import SPLIT, default_grouped_implementation
    assert default_grouped_implementation() == SPLIT


def graph_macs(graph):
    """Multiply-adds of one image, read from the ops of a built graph (independent of models.complexity)."""
    total = 0
    for op in graph.get_operations():
        if op.type not in ("Conv2D", "DepthwiseConv2dNative", "MatMul"):
            continue
        kernel = op.inputs[1].shape.as_list()
        if op.type == "MatMul":
            total += kernel[0] * kernel[1]
            continue
        out = op.outputs[0].shape.as_list()
        total += out[1] * out[2] * int(np.prod(kernel))
    return total


# keras.applications' MobileNetV3 builds ~10x faster eagerly than in graph mode (its `x + 3.0` layers
# re-initialize variables through a Session on every call), so a small separate program counts them.
KERAS_COUNTS = """
import json
from tfcompat import tf
tf.compat.v1.enable_eager_execution()
counts = {}
for name, cls in (("mobilenetv3_large", "MobileNetV3Large"), ("mobilenetv3_small", "MobileNetV3Small")):
    for alpha in (1.0, 0.75):
        model = getattr(tf.keras.applications, cls)(input_shape=(32, 32, 3), alpha=alpha, include_top=True,
                                                    weights=None, classes=1000)
        counts["%s/%g" % (name, alpha)] = model.count_params()
print(json.dumps(counts))
"""


@pytest.fixture(scope="module")
def keras_counts():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", KERAS_COUNTS], cwd=root, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name,width", [("mobilenetv3_large", 1.0), ("mobilenetv3_large", 0.75),
                                        ("mobilenetv3_small", 1.0), ("mobilenetv3_small", 0.75)])
def test_mobilenet_v3_params_equal_keras_applications_and_counter(keras_counts, name, width):
    expected = keras_counts["%s/%g" % (name, width)]
    with _fresh_graph().as_default() as graph:
        model = registry.build(name, 1000, 224, width=width)
        count = registry.complexity_at(name, num_classes=1000, image_size=224, width=width)
        # Exactly equal, BN moving statistics included; no differences to explain.
        assert model.count_params() == expected == count.params
        trainable = sum(int(np.prod(v.shape.as_list())) for v in model.trainable_weights)
        assert trainable == count.trainable_params
        assert graph_macs(graph) == count.madds == registry.describe(name, width=width)["madds"]


def test_shufflenet_v1_counter_equals_built_graph():
    options = {"groups": 4, "scale": 1.5}  # a width moved by the rounding rule
    with _fresh_graph().as_default() as graph:
        model = registry.build("shufflenetv1", 1000, 224, **options)
        count = registry.describe("shufflenetv1", **options)
        assert model.count_params() == count["params"]
        assert graph_macs(graph) == count["madds"]


def test_smoke_counter_equals_built_graph():
    with _fresh_graph().as_default() as graph:
        model = registry.build("smoke", 1000, 224)
        count = registry.describe("smoke")
        assert model.count_params() == count["params"]
        trainable = sum(int(np.prod(v.shape.as_list())) for v in model.trainable_weights)
        assert trainable == count["trainable_params"]
        assert graph_macs(graph) == count["madds"]
        head = [v.name for v in registry.head_variables(model)]
        assert head == ["classifier/kernel:0", "classifier/bias:0"]


@pytest.mark.host_kernels
def test_shufflenet_v1_split_form_for_tf_1_15_computes_the_same_network(native_grouped):
    from models.shufflenet_v1 import build_shufflenet_v1
    # stage 2 and the first unit of stage 3: every kind of unit (the ungrouped first one, grouped ones with a
    # shuffle, a grouped stride-2 one); the full network only repeats them (make test runs this test alone,
    # in its second pass, where each second counts)
    full = registry.architecture("shufflenetv1", groups=8, scale=0.5)
    arch = full._replace(units=full.units[:5])
    assert {(u.first_groups, u.stride, u.shuffle) for u in arch.units} == {
        (u.first_groups, u.stride, u.shuffle) for u in full.units}
    images = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    with _fresh_graph().as_default() as graph:
        native = build_shufflenet_v1(arch, 6, (32, 32, 3), implementation="native")
        split = build_shufflenet_v1(arch, 6, (32, 32, 3), implementation="split")
        assert split.count_params() == native.count_params()
        x = tf.constant(images)
        outputs = [native(x, training=False), split(x, training=False)]
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run([b.assign(a) for a, b in zip(native.weights, split.weights)])
            got_native, got_split = session.run(outputs)
    np.testing.assert_allclose(got_native, got_split, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,options,size,classes", [
    ("mobilenetv3_small", {"width": 1.25}, (57, 40), 1000),
    ("shufflenetv1", {"groups": 8, "scale": 0.5}, 33, 5),
    ("smoke", {}, (48, 35), 7),
])
def test_output_is_logits_of_the_right_shape(name, options, size, classes):
    with _fresh_graph().as_default():
        model = registry.build(name, classes, size, **options)
        height, width = size if isinstance(size, tuple) else (size, size)
        # Parameters do not depend on the image size: the counter at 224 must agree at any size.
        assert model.count_params() == registry.complexity_at(name, num_classes=classes, **options).params
        assert model.input.shape.as_list() == [None, height, width, 3]
        images = tf.random.uniform([2, height, width, 3], seed=1)
        logits = model(images, training=False)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            values = session.run(logits)
    assert values.shape == (2, classes)
    assert np.isfinite(values).all()
    assert model.get_layer("classifier").activation is tf.keras.activations.linear  # logits, no softmax


@pytest.mark.host_kernels
def test_grouped_pointwise_native_and_split_give_identical_outputs(native_grouped):
    from models.layers import GroupedPointwiseConv
    rng = np.random.RandomState(0)
    images = rng.standard_normal((2, 5, 5, 24)).astype("float32")
    with _fresh_graph().as_default():
        x = tf.constant(images)
        native = GroupedPointwiseConv(36, 3, implementation="native", name="native")
        split = GroupedPointwiseConv(36, 3, implementation="split", name="split")
        y_native, y_split = native(x), split(x)
        grads = tf.gradients(tf.reduce_sum(y_native * y_native), [native.kernel]) + \
            tf.gradients(tf.reduce_sum(y_split * y_split), [split.kernel])
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(split.kernel.assign(native.kernel))
            a, b, kernel, g_native, g_split = session.run([y_native, y_split, native.kernel] + grads)
    assert kernel.shape == (1, 1, 8, 36)
    # Reference: group i maps input channels [8i, 8i+8) to output channels [12i, 12i+12).
    expected = np.concatenate([np.einsum("nhwc,cd->nhwd", images[..., 8 * i:8 * i + 8],
                                         kernel[0, 0, :, 12 * i:12 * i + 12]) for i in range(3)], axis=-1)
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g_native, g_split, rtol=1e-5, atol=1e-5)


def test_channel_shuffle_and_hard_activations_follow_the_papers():
    from models.layers import ChannelShuffle, HardSigmoid, HardSwish
    values = np.linspace(-5, 5, 41).astype("float32").reshape(1, 1, 41, 1)
    channels = np.arange(12, dtype="float32").reshape(1, 1, 1, 12)
    with _fresh_graph().as_default():
        shuffled = ChannelShuffle(3)(tf.constant(channels))
        sigmoid = HardSigmoid()(tf.constant(values))
        swish = HardSwish()(tf.constant(values))
        with tf.compat.v1.Session() as session:
            got_shuffle, got_sigmoid, got_swish = session.run([shuffled, sigmoid, swish])
    # (g, n) = (3, 4) -> transpose -> (4, 3): 0 4 8 1 5 9 2 6 10 3 7 11
    assert got_shuffle.ravel().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    relu6 = np.clip(values + 3, 0, 6) / 6
    np.testing.assert_allclose(got_sigmoid, relu6, atol=1e-6)
    np.testing.assert_allclose(got_swish, values * relu6, atol=1e-6)


def test_weight_decay_covers_conv_and_dense_kernels_only():
    with _fresh_graph().as_default():
        model = registry.build("shufflenetv1", 10, 32, weight_decay=4e-5, groups=3)
        from models.weight_decay import decayed_kernels
        kernels = decayed_kernels(model)
        names = [v.name for v in kernels]
        assert all(name.split("/")[-1].startswith(("kernel", "depthwise_kernel")) for name in names)
        assert not any("bn" in name or "bias" in name for name in names)
        # stem conv + 3 convs per unit (16 units) + classifier
        assert len(kernels) == 1 + 3 * 16 + 1
        loss = registry.regularization_loss(model)
        model.get_layer("classifier").trainable = False
        frozen_loss = registry.weight_decay_loss(model, 4e-5)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            got, got_frozen, values = session.run([loss, frozen_loss, kernels])
            head = session.run(model.get_layer("classifier").kernel)
    expected = 4e-5 * sum(float((v.astype("float64") ** 2).sum()) / 2 for v in values)
    assert got == pytest.approx(expected, rel=1e-5)
    assert got_frozen == pytest.approx(expected - 4e-5 * float((head.astype("float64") ** 2).sum()) / 2,
                                       rel=1e-5)


def test_only_the_classifier_changes_with_the_class_count():
    shapes = {}
    for classes in (10, 20):
        with _fresh_graph().as_default():
            model = registry.build("mobilenetv3_small", classes, 32)
            head = {v.name for v in registry.head_variables(model)}
            shapes[classes] = {v.name: tuple(v.shape.as_list()) for v in model.weights}
            assert head == {"classifier/kernel:0", "classifier/bias:0"}
            assert all(name.startswith(registry.head_variable_prefix("mobilenetv3_small")) for name in head)
    changed = {name for name in shapes[10] if shapes[10][name] != shapes[20][name]}
    assert changed == {"classifier/kernel:0", "classifier/bias:0"}
    assert set(shapes[10]) == set(shapes[20])


@pytest.mark.parametrize("name,options", [("mobilenetv3_small", {}), ("mobilenetv3_large", {"width": 0.5}),
                                          ("shufflenetv1", {"groups": 2, "scale": 1.5})])
def test_a_few_graph_mode_steps_lower_the_loss_and_update_batch_norm(name, options):
    rng = np.random.RandomState(0)
    images = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    labels = np.arange(4) % 4
    with _fresh_graph().as_default() as graph:
        x, y = tf.constant(images), tf.constant(labels, dtype=tf.int32)
        model = registry.build(name, 4, 32, weight_decay=1e-5, dropout=0.0, **options)
        # built at a fixed learning phase: no cond per BatchNormalization layer in the construction pass
        assert not [op.name for op in graph.get_operations() if op.type in ("Switch", "Merge")]
        logits = model(x, training=True)
        assert logits.shape.as_list() == [4, 4]
        data_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        loss = data_loss + registry.regularization_loss(model)
        # The trainer's rule: BN updates bound to the real input, plus the unconditional ones.
        updates = model.get_updates_for(x) + model.get_updates_for(None)
        assert updates
        optimizer = tf.compat.v1.train.AdamOptimizer(0.001)
        with tf.control_dependencies(updates):
            train = optimizer.minimize(loss, var_list=model.trainable_weights)
        moving_mean = [v for v in model.weights if "moving_mean" in v.name][0]
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            before = session.run(moving_mean)
            # One fetch signature for every step: each run reports the loss before its own update.
            losses = [session.run([data_loss, train])[0] for _ in range(5)]
            after = session.run(moving_mean)
    first, last = losses[0], losses[-1]
    assert np.isfinite(last)
    assert last < 0.5 * first, (first, last)
    assert not np.allclose(before, after)
