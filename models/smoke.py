"""The smoke model as a tf.keras functional model, built from a ``specs.smoke_arch`` plan.

Why: a job's wiring (devices, rank table, collectives, data, checkpoints, export, the summary) fails the
same way with any network, and this one builds, compiles and trains in seconds where MobileNetV3 and
ShuffleNetV1 take tens of seconds on a CPU and minutes of graph compilation on Ascend. It learns a little
(the classes of a small image folder); it is not an ImageNet model.
"""
from models.specs import HEAD_NAME as CLASSIFIER
from models.specs import SMOKE_BN
from tfcompat import tf


def build_smoke(arch, num_classes, input_shape, dropout=0.0):
    """A functional tf.keras.Model: float32 images ``input_shape`` (H, W, 3) -> logits [N, num_classes]."""
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    x = inputs
    for index, channels in enumerate(arch.channels, 1):
        x = layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name="conv%d" % index)(x)
        x = layers.BatchNormalization(momentum=SMOKE_BN["momentum"], epsilon=SMOKE_BN["epsilon"],
                                      name="conv%d_bn" % index)(x)
        x = layers.ReLU(name="conv%d_relu" % index)(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, name=CLASSIFIER)(x)
    return tf.keras.Model(inputs, logits, name="smoke")
