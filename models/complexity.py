"""Parameter and multiply-add counts in pure Python, walking the same plans the builders read.

Conventions: parameters are every weight ``Model.count_params()`` counts (BatchNorm's moving mean and
variance included, as in Keras summaries); multiply-adds count convolutions (grouped and depthwise
included) and fully connected layers, one per multiply-accumulate, the way both papers count
(activations, BatchNorm, pooling, additions and the SE scaling are not counted). Spatial sizes follow
'same' padding: a stride-2 layer gives ceil(size / 2).
"""
import collections

Complexity = collections.namedtuple("Complexity", "params trainable_params madds")


class _Tally:
    """Accumulates weights and multiply-adds layer by layer."""

    def __init__(self):
        self.params = 0
        self.frozen = 0
        self.madds = 0

    def conv(self, size, cin, cout, kernel=1, stride=1, groups=1, bias=False):
        """A (grouped) convolution on a size x size map; returns the output size."""
        out = -(-size // stride)
        weights = kernel * kernel * (cin // groups) * cout
        self.params += weights + (cout if bias else 0)
        self.madds += out * out * weights
        return out

    def depthwise(self, size, channels, kernel, stride):
        out = -(-size // stride)
        self.params += kernel * kernel * channels
        self.madds += out * out * kernel * kernel * channels
        return out

    def dense(self, cin, cout, bias=True):
        self.params += cin * cout + (cout if bias else 0)
        self.madds += cin * cout

    def batch_norm(self, channels):
        self.params += 4 * channels  # gamma, beta (trained) + moving mean, moving variance (not trained)
        self.frozen += 2 * channels

    def result(self):
        return Complexity(params=self.params, trainable_params=self.params - self.frozen, madds=self.madds)


def _size(image_size):
    if isinstance(image_size, (tuple, list)):
        if image_size[0] != image_size[1]:
            raise ValueError("counting assumes square images, got %r" % (image_size,))
        return int(image_size[0])
    return int(image_size)


def mobilenet_v3_complexity(arch, num_classes=1000, image_size=224):
    """Complexity of a ``specs.mobilenet_v3_arch`` plan with a ``num_classes`` classifier."""
    tally = _Tally()
    size = tally.conv(_size(image_size), 3, arch.stem, kernel=3, stride=2)
    tally.batch_norm(arch.stem)
    for block in arch.blocks:
        if block.expand:
            tally.conv(size, block.in_ch, block.exp)
            tally.batch_norm(block.exp)
        size = tally.depthwise(size, block.exp, block.kernel, block.stride)
        tally.batch_norm(block.exp)
        if block.se_ch:
            tally.dense(block.exp, block.se_ch)
            tally.dense(block.se_ch, block.exp)
        tally.conv(size, block.exp, block.out)
        tally.batch_norm(block.out)
    tally.conv(size, arch.blocks[-1].out, arch.head)
    tally.batch_norm(arch.head)
    tally.dense(arch.head, arch.last_point)  # the 1x1 conv after pooling: no BN, with bias
    tally.dense(arch.last_point, num_classes)
    return tally.result()


def shufflenet_v1_complexity(arch, num_classes=1000, image_size=224):
    """Complexity of a ``specs.shufflenet_v1_arch`` plan with a ``num_classes`` classifier."""
    tally = _Tally()
    size = tally.conv(_size(image_size), 3, arch.stem, kernel=3, stride=2)
    tally.batch_norm(arch.stem)
    size = -(-size // 2)  # 3x3 max pool, stride 2
    for unit in arch.units:
        tally.conv(size, unit.in_ch, unit.mid, groups=unit.first_groups)
        tally.batch_norm(unit.mid)
        size = tally.depthwise(size, unit.mid, 3, unit.stride)
        tally.batch_norm(unit.mid)
        tally.conv(size, unit.mid, unit.branch_out, groups=unit.groups)
        tally.batch_norm(unit.branch_out)
    tally.dense(arch.stages[-1], num_classes, bias=SHUFFLENET_CLASSIFIER_BIAS)
    return tally.result()


def smoke_complexity(arch, num_classes=1000, image_size=224):
    """Complexity of a ``specs.smoke_arch`` plan with a ``num_classes`` classifier."""
    tally = _Tally()
    size, channels = _size(image_size), 3
    for out in arch.channels:
        size = tally.conv(size, channels, out, kernel=3, stride=2)
        tally.batch_norm(out)
        channels = out
    tally.dense(channels, num_classes)
    return tally.result()


# megvii's reproduction ends with Linear(bias=False); we keep that so counts match its published sizes.
SHUFFLENET_CLASSIFIER_BIAS = False
