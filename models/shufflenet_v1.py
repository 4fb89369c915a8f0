"""ShuffleNetV1 as a tf.keras functional model, built from a ``specs.shufflenet_v1_arch`` plan.

Layout per arXiv:1707.01083 (Table 1, Fig. 2) and megvii's official reproduction: stem 3x3/2 conv + BN +
ReLU, 3x3/2 max pool; units of 1x1 GConv + BN + ReLU -> channel shuffle -> 3x3 depthwise (stride) + BN
(no ReLU) -> 1x1 GConv + BN; stride 1: ReLU(x + branch); stride 2: concat(3x3/2 avg-pooled x, ReLU(branch)).
The first unit's first 1x1 conv is not grouped (paper, section 3.3), and no shuffle follows it (a fixed
permutation after an ungrouped conv only renames channels). Global average pool, optional dropout,
classifier without bias (megvii's Linear(bias=False)).
Known difference: TF's 'same' average pool excludes padding from the mean; PyTorch's AvgPool2d(3, 2, 1)
used by megvii includes it (border pixels only; no weights involved).
"""
from models.complexity import SHUFFLENET_CLASSIFIER_BIAS
from models.layers import ChannelShuffle, GroupedPointwiseConv
from models.specs import HEAD_NAME as CLASSIFIER
from models.specs import SHUFFLENET_BN, SHUFFLENET_REPEATS
from tfcompat import tf


def _batch_norm(name):
    return tf.keras.layers.BatchNormalization(momentum=SHUFFLENET_BN["momentum"],
                                              epsilon=SHUFFLENET_BN["epsilon"], name=name)


def _pointwise(filters, groups, name, implementation):
    if groups == 1:
        return tf.keras.layers.Conv2D(filters, 1, use_bias=False, name=name)
    return GroupedPointwiseConv(filters, groups, implementation=implementation, name=name)


def _unit(x, unit, prefix, implementation):
    layers = tf.keras.layers
    y = _pointwise(unit.mid, unit.first_groups, prefix + "gconv1", implementation)(x)
    y = _batch_norm(prefix + "gconv1_bn")(y)
    y = layers.ReLU(name=prefix + "gconv1_relu")(y)
    if unit.shuffle:
        y = ChannelShuffle(unit.groups, name=prefix + "shuffle")(y)
    y = layers.DepthwiseConv2D(3, strides=unit.stride, padding="same", use_bias=False,
                               name=prefix + "depthwise")(y)
    y = _batch_norm(prefix + "depthwise_bn")(y)
    y = _pointwise(unit.branch_out, unit.groups, prefix + "gconv2", implementation)(y)
    y = _batch_norm(prefix + "gconv2_bn")(y)
    if unit.stride == 1:
        y = layers.Add(name=prefix + "add")([x, y])
        return layers.ReLU(name=prefix + "relu")(y)
    shortcut = layers.AveragePooling2D(3, strides=2, padding="same", name=prefix + "shortcut_pool")(x)
    y = layers.ReLU(name=prefix + "relu")(y)
    return layers.Concatenate(name=prefix + "concat")([shortcut, y])


def unit_names(arch):
    """'stage2_unit1_' ... for each unit of the plan, in order."""
    names = []
    for stage, repeats in enumerate(SHUFFLENET_REPEATS, 2):
        names.extend("stage%d_unit%d_" % (stage, index) for index in range(1, repeats + 1))
    return names[:len(arch.units)]


def build_shufflenet_v1(arch, num_classes, input_shape, dropout=0.0, implementation=None):
    """A functional tf.keras.Model: float32 images ``input_shape`` (H, W, 3) -> logits [N, num_classes].

    ``implementation`` picks the grouped 1x1 form ('native' or 'split'; default: the one that runs on
    every host, see ``models.layers.default_grouped_implementation``).
    """
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    x = layers.Conv2D(arch.stem, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _batch_norm("stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for unit, prefix in zip(arch.units, unit_names(arch)):
        x = _unit(x, unit, prefix, implementation)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, use_bias=SHUFFLENET_CLASSIFIER_BIAS, name=CLASSIFIER)(x)
    name = "shufflenetv1_g%d_%s" % (arch.groups, ("%gx" % arch.scale).replace(".", "_"))
    return tf.keras.Model(inputs, logits, name=name)
