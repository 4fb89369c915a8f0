"""Keras layers the two architectures need and TF 1.15 lacks: hard-sigmoid/hard-swish as the MobileNetV3
paper defines them, channel shuffle, and a grouped 1x1 convolution (1.15's Conv2D has no ``groups``).

They are plain ``tf.keras.layers.Layer`` subclasses (not Lambda) so that graphs stay small, configs
serialize, and nothing depends on how a Keras version maps the string 'hard_sigmoid' (Keras 2 uses
clip(0.2x + 0.5), not the paper's ReLU6(x + 3) / 6).
"""
from tfcompat import IS_TF2, tf

SPLIT = "split"
NATIVE = "native"
IMPLEMENTATIONS = (SPLIT, NATIVE)


def default_grouped_implementation():
    """The grouped 1x1 form that runs everywhere: split into g convolutions.

    TF 2.x's Conv2D takes grouped kernels (input depth = groups * kernel depth) only where a grouped
    kernel exists: cuDNN on GPU and oneDNN on CPU. Eigen's CPU kernels (TF's default where oneDNN is off,
    e.g. on AMD EPYC hosts) refuse the gradient ("filter_size does not have enough elements") and
    grappler's fused Conv2D+BatchNorm refuses the inference graph ("Fused conv implementation does not
    support grouped convolutions"); TF 1.15 (the Ascend stack) has no grouped Conv2D at all.
    ``native`` stays available for hosts known to have the kernels.
    """
    return SPLIT


def hard_sigmoid(x):
    """ReLU6(x + 3) / 6 (arXiv:1905.02244, section 5.2)."""
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


class HardSigmoid(tf.keras.layers.Layer):
    """ReLU6(x + 3) / 6: the SE gate of MobileNetV3."""

    def call(self, inputs):
        return hard_sigmoid(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


class HardSwish(tf.keras.layers.Layer):
    """x * ReLU6(x + 3) / 6: MobileNetV3's h-swish."""

    def call(self, inputs):
        return inputs * hard_sigmoid(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


class ChannelShuffle(tf.keras.layers.Layer):
    """ShuffleNet's channel shuffle (arXiv:1707.01083, section 3.1): view the channels as (g, n),
    transpose to (n, g) and flatten, so each group of the next grouped conv sees every previous group."""

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)

    def call(self, inputs):
        channels = int(inputs.shape[-1])
        static = inputs.shape.as_list()
        dynamic = tf.shape(inputs)
        height = static[1] if static[1] is not None else dynamic[1]
        width = static[2] if static[2] is not None else dynamic[2]
        x = tf.reshape(inputs, [-1, height, width, self.groups, channels // self.groups])
        x = tf.transpose(x, [0, 1, 2, 4, 3])
        return tf.reshape(x, [-1, height, width, channels])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["groups"] = self.groups
        return config


class GroupedPointwiseConv(tf.keras.layers.Layer):
    """A 1x1 convolution with ``groups`` groups and no bias.

    The kernel has Conv2D(groups=g)'s layout, [1, 1, in/g, filters], with output channels ordered by
    group, so one set of weights means the same function in both forms: ``native`` (one Conv2D op, which
    TF 2.x runs grouped) and ``split`` (g convolutions on channel slices, concatenated; any TF version).
    """

    def __init__(self, filters, groups, implementation=None, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.groups = int(groups)
        self.implementation = implementation or default_grouped_implementation()
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError("implementation must be one of %s" % (IMPLEMENTATIONS,))
        if self.implementation == NATIVE and not IS_TF2:
            raise ValueError("native grouped convolution needs TensorFlow 2; use 'split'")
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        if self.filters % self.groups:
            raise ValueError("filters=%d is not divisible by groups=%d" % (self.filters, self.groups))

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ValueError("%d input channels are not divisible by groups=%d" % (channels, self.groups))
        self.kernel = self.add_weight(name="kernel", shape=(1, 1, channels // self.groups, self.filters),
                                      initializer=self.kernel_initializer, trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        strides = [1, 1, 1, 1]
        if self.groups == 1 or self.implementation == NATIVE:
            return tf.nn.conv2d(inputs, self.kernel, strides, "VALID")
        pieces = tf.split(inputs, self.groups, axis=3)
        kernels = tf.split(self.kernel, self.groups, axis=3)
        outputs = [tf.nn.conv2d(piece, kernel, strides, "VALID") for piece, kernel in zip(pieces, kernels)]
        return tf.concat(outputs, axis=3)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(list(input_shape)[:-1] + [self.filters])

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "groups": self.groups, "implementation": self.implementation,
                       "kernel_initializer": tf.keras.initializers.serialize(self.kernel_initializer)})
        return config


CUSTOM_OBJECTS = {
    "HardSigmoid": HardSigmoid,
    "HardSwish": HardSwish,
    "ChannelShuffle": ChannelShuffle,
    "GroupedPointwiseConv": GroupedPointwiseConv,
}
