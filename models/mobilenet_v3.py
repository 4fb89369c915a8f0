"""MobileNetV3-Large/Small as tf.keras functional models, built from a ``specs.mobilenet_v3_arch`` plan.

Layout per arXiv:1905.02244 (Fig. 4, section 5): stem 3x3/2 conv + BN + h-swish; bottlenecks of
[1x1 expansion + BN + NL] -> depthwise kxk + BN + NL -> [SE: pool, FC + ReLU, FC + hard-sigmoid, scale]
-> 1x1 projection + BN (linear), with a residual add when stride 1 and widths match; head 1x1 conv + BN +
h-swish, global average pool, 1x1 conv with bias and no BN + h-swish (a Dense layer on the pooled vector,
the same function and weights), dropout, classifier. Convolutions followed by BN have no bias.
'same' padding everywhere (for stride 2 it pads exactly like keras.applications' ZeroPadding2D+valid).
"""
from models.layers import HardSigmoid, HardSwish
from models.specs import HEAD_NAME as CLASSIFIER
from models.specs import HSWISH, MOBILENETV3_BN
from tfcompat import tf


def _batch_norm(name):
    return tf.keras.layers.BatchNormalization(momentum=MOBILENETV3_BN["momentum"],
                                              epsilon=MOBILENETV3_BN["epsilon"], name=name)


def _activation(kind, name):
    if kind == HSWISH:
        return HardSwish(name=name)
    return tf.keras.layers.ReLU(name=name)


def _conv1x1(filters, name):
    return tf.keras.layers.Conv2D(filters, 1, padding="same", use_bias=False, name=name)


def _squeeze_excite(x, channels, squeeze, prefix):
    layers = tf.keras.layers
    s = layers.GlobalAveragePooling2D(name=prefix + "se_pool")(x)
    s = layers.Dense(squeeze, activation="relu", name=prefix + "se_reduce")(s)
    s = layers.Dense(channels, name=prefix + "se_expand")(s)
    s = HardSigmoid(name=prefix + "se_gate")(s)
    s = layers.Reshape((1, 1, channels), name=prefix + "se_reshape")(s)
    return layers.Multiply(name=prefix + "se_scale")([x, s])


def _bottleneck(x, block, prefix):
    layers = tf.keras.layers
    shortcut = x
    if block.expand:
        x = _conv1x1(block.exp, prefix + "expand")(x)
        x = _batch_norm(prefix + "expand_bn")(x)
        x = _activation(block.act, prefix + "expand_" + block.act)(x)
    x = layers.DepthwiseConv2D(block.kernel, strides=block.stride, padding="same", use_bias=False,
                               name=prefix + "depthwise")(x)
    x = _batch_norm(prefix + "depthwise_bn")(x)
    x = _activation(block.act, prefix + "depthwise_" + block.act)(x)
    if block.se_ch:
        x = _squeeze_excite(x, block.exp, block.se_ch, prefix)
    x = _conv1x1(block.out, prefix + "project")(x)
    x = _batch_norm(prefix + "project_bn")(x)
    if block.residual:
        x = layers.Add(name=prefix + "add")([shortcut, x])
    return x


def build_mobilenet_v3(arch, num_classes, input_shape, dropout=0.2):
    """A functional tf.keras.Model: float32 images ``input_shape`` (H, W, 3) -> logits [N, num_classes]."""
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    x = layers.Conv2D(arch.stem, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _batch_norm("stem_bn")(x)
    x = HardSwish(name="stem_hswish")(x)
    for index, block in enumerate(arch.blocks, 1):
        x = _bottleneck(x, block, "block%d_" % index)
    x = _conv1x1(arch.head, "head_conv")(x)
    x = _batch_norm("head_bn")(x)
    x = HardSwish(name="head_hswish")(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dense(arch.last_point, name="head_point_conv")(x)
    x = HardSwish(name="head_point_hswish")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, name=CLASSIFIER)(x)
    name = "mobilenetv3_%s_%s" % (arch.variant, ("%g" % arch.width).replace(".", "_"))
    return tf.keras.Model(inputs, logits, name=name)
