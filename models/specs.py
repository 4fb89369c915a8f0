"""Architecture tables and channel rules, free of TensorFlow.

Both the Keras builders and the pure-Python counter (``models.complexity``) read the plans made here, so
the parameter and multiply-add figures the launcher lists are those of the network that is built.

Sources: MobileNetV3, arXiv:1905.02244 Tables 1-2 (latest revision); ShuffleNetV1, arXiv:1707.01083
Table 1 and megvii-model/ShuffleNet-Series (the official reproduction) for the 0.5x-2.0x channel tables.
The smoke model is ours: no paper, no accuracy to expect.
"""
import collections

from models.errors import ModelError

# The layer that maps features to logits in every model here (fine-tuning finds and skips it by name).
HEAD_NAME = "classifier"
RELU = "relu"
HSWISH = "hswish"

# ---------------------------------------------------------------------------------------------- MobileNetV3
# Paper rows: (kernel, expansion size, output channels, squeeze-and-excite, non-linearity, stride).
MOBILENETV3_LARGE_ROWS = (
    (3, 16, 16, False, RELU, 1),
    (3, 64, 24, False, RELU, 2),
    (3, 72, 24, False, RELU, 1),
    (5, 72, 40, True, RELU, 2),
    (5, 120, 40, True, RELU, 1),
    (5, 120, 40, True, RELU, 1),
    (3, 240, 80, False, HSWISH, 2),
    (3, 200, 80, False, HSWISH, 1),
    (3, 184, 80, False, HSWISH, 1),
    (3, 184, 80, False, HSWISH, 1),
    (3, 480, 112, True, HSWISH, 1),
    (3, 672, 112, True, HSWISH, 1),
    (5, 672, 160, True, HSWISH, 2),
    (5, 960, 160, True, HSWISH, 1),
    (5, 960, 160, True, HSWISH, 1),
)
MOBILENETV3_SMALL_ROWS = (
    (3, 16, 16, True, RELU, 2),
    (3, 72, 24, False, RELU, 2),
    (3, 88, 24, False, RELU, 1),
    (5, 96, 40, True, HSWISH, 2),
    (5, 240, 40, True, HSWISH, 1),
    (5, 240, 40, True, HSWISH, 1),
    (5, 120, 48, True, HSWISH, 1),
    (5, 144, 48, True, HSWISH, 1),
    (5, 288, 96, True, HSWISH, 2),
    (5, 576, 96, True, HSWISH, 1),
    (5, 576, 96, True, HSWISH, 1),
)
MOBILENETV3_STEM = 16
HEAD_EXPANSION = 6  # the 1x1 conv before pooling has 6x the last block's width: 960 = 6*160, 576 = 6*96
LAST_POINT = {"large": 1280, "small": 1024}  # the paper's latest revision (Small: 1024, not 1280)
MOBILENETV3_ROWS = {"large": MOBILENETV3_LARGE_ROWS, "small": MOBILENETV3_SMALL_ROWS}
WIDTH_RANGE = (0.25, 2.0)

# BatchNorm as in the references: decay 0.99 is the paper's (section 6.1.1) and the official TF TPU
# implementation's; epsilon 1e-3 is TensorFlow's and keras.applications' (the paper does not state it).
MOBILENETV3_BN = {"momentum": 0.99, "epsilon": 1e-3}

Bneck = collections.namedtuple(
    "Bneck", "in_ch exp out kernel stride se_ch act expand residual")
Bneck.__doc__ = """One inverted-residual block after the width multiplier: se_ch is 0 without SE."""

MobileNetV3Arch = collections.namedtuple("MobileNetV3Arch", "variant width stem blocks head last_point")


def make_divisible(value, divisor=8, min_value=None):
    """Round ``value`` to a multiple of ``divisor`` (never below ``min_value`` nor under 90% of ``value``).

    The rule of TF-slim's and keras.applications' MobileNetV2/V3 (``_make_divisible`` / ``_depth``).
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2.0) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def mobilenet_v3_arch(variant, width=1.0):
    """The MobileNetV3 ``variant`` ('large' or 'small') at ``width``, every channel count resolved.

    Width rules (all reduce to the paper's tables at width 1.0):
    - stem and block outputs: make_divisible(paper * width, 8) (TF-slim's depth multiplier);
    - expansion: make_divisible(actual input channels * paper expansion / paper input channels, 8), the
      ratio form of TF-slim and keras.applications; no expansion conv when it would not widen the input;
    - SE bottleneck: make_divisible(expansion / 4, 8);
    - head conv: make_divisible(6 * last block width, 8) (960 / 576 at 1.0);
    - last point conv: 1280 / 1024, scaled by make_divisible only for width > 1 (as keras.applications
      and the paper's 0.75 models, which keep the full head).
    """
    if variant not in MOBILENETV3_ROWS:
        raise ModelError("unknown MobileNetV3 variant %r: use 'large' or 'small'" % (variant,))
    width = float(width)
    if not WIDTH_RANGE[0] <= width <= WIDTH_RANGE[1]:
        raise ModelError("width=%g is out of range: use a value from %g to %g (e.g. 0.75, 1.0, 1.25)"
                         % (width, WIDTH_RANGE[0], WIDTH_RANGE[1]))
    stem = make_divisible(MOBILENETV3_STEM * width)
    blocks = []
    in_ch, paper_in = stem, MOBILENETV3_STEM
    for kernel, paper_exp, paper_out, se, act, stride in MOBILENETV3_ROWS[variant]:
        out = make_divisible(paper_out * width)
        exp = make_divisible(in_ch * paper_exp / float(paper_in))
        se_ch = make_divisible(exp / 4.0) if se else 0
        blocks.append(Bneck(in_ch=in_ch, exp=exp, out=out, kernel=kernel, stride=stride, se_ch=se_ch,
                            act=act, expand=exp > in_ch, residual=stride == 1 and in_ch == out))
        in_ch, paper_in = out, paper_out
    head = make_divisible(in_ch * HEAD_EXPANSION)
    last_point = LAST_POINT[variant]
    if width > 1.0:
        last_point = make_divisible(last_point * width)
    return MobileNetV3Arch(variant=variant, width=width, stem=stem, blocks=tuple(blocks), head=head,
                           last_point=last_point)


# ---------------------------------------------------------------------------------------------- ShuffleNetV1
SHUFFLENET_GROUPS = (1, 2, 3, 4, 8)
SHUFFLENET_SCALES = (0.5, 1.0, 1.5, 2.0)
SHUFFLENET_REPEATS = (4, 8, 4)  # stages 2, 3, 4: one stride-2 unit then 3 / 7 / 3 stride-1 units
# Paper Table 1, Stage 2 output channels at 1.0x; Stage 3 and 4 double each time.
SHUFFLENET_STAGE2 = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
# Stem width per scale in megvii's official reproduction (12 at 0.5x for g=3, 16 for g=8; 24 at 1.0x and
# 1.5x; 48 at 2.0x). Our rule: the smallest multiple of g not below this base (gives 16 for g=8 at 0.5x).
SHUFFLENET_STEM_BASE = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
# BatchNorm as in megvii's reproduction (PyTorch defaults): momentum 0.1 there = decay 0.9 here, eps 1e-5.
SHUFFLENET_BN = {"momentum": 0.9, "epsilon": 1e-5}

ShuffleUnit = collections.namedtuple(
    "ShuffleUnit", "in_ch out mid stride first_groups groups branch_out shuffle")
ShuffleUnit.__doc__ = """One ShuffleNet unit: the main branch makes branch_out channels (out - in_ch when
stride 2, whose shortcut is a 3x3 average pool concatenated in front); first_groups is the first 1x1 conv's
group count (1 in the first unit of stage 2)."""

ShuffleNetV1Arch = collections.namedtuple("ShuffleNetV1Arch", "groups scale stem stages units")


def round_half_up(value, multiple):
    """The multiple of ``multiple`` nearest to ``value`` (halves round up), at least ``multiple``."""
    return max(multiple, int(value / float(multiple) + 0.5) * multiple)


def shufflenet_v1_stage_channels(groups, scale):
    """(stem, stage 2, stage 3, stage 4) output channels for ``groups`` at ``scale``.

    Stage widths are the paper's 1.0x widths times the scale, rounded half-up to a multiple of 4*g so
    that the bottleneck (out/4) divides by g; this reproduces megvii's tables for g=3 and g=8 exactly and
    only changes g=2 and g=4 at 0.5x and 1.5x (e.g. g=4 0.5x: 136 -> 144).
    """
    base = SHUFFLENET_STAGE2[groups]
    stem = -(-SHUFFLENET_STEM_BASE[scale] // groups) * groups
    stages = tuple(round_half_up(base * (2 ** i) * scale, 4 * groups) for i in range(3))
    return (stem,) + stages


def shufflenet_v1_arch(groups=3, scale=1.0):
    """ShuffleNetV1 with ``groups`` at ``scale``: every unit's channels, strides and group counts."""
    if groups not in SHUFFLENET_GROUPS:
        raise ModelError("groups=%s is not supported: use one of %s"
                         % (groups, ", ".join(str(g) for g in SHUFFLENET_GROUPS)))
    scale = float(scale)
    if scale not in SHUFFLENET_SCALES:
        raise ModelError("scale=%g is not supported: use one of %s"
                         % (scale, ", ".join(str(s) for s in SHUFFLENET_SCALES)))
    channels = shufflenet_v1_stage_channels(groups, scale)
    units = []
    in_ch = channels[0]
    for stage, (repeats, out) in enumerate(zip(SHUFFLENET_REPEATS, channels[1:])):
        for index in range(repeats):
            stride = 2 if index == 0 else 1
            first_groups = 1 if stage == 0 and index == 0 else groups
            branch_out = out - in_ch if stride == 2 else out
            units.append(ShuffleUnit(in_ch=in_ch, out=out, mid=out // 4, stride=stride,
                                     first_groups=first_groups, groups=groups, branch_out=branch_out,
                                     shuffle=first_groups > 1))
            in_ch = out
    return ShuffleNetV1Arch(groups=groups, scale=scale, stem=channels[0], stages=channels[1:],
                            units=tuple(units))


# ---------------------------------------------------------------------------------------------- smoke
# Three 3x3/2 conv + BN + ReLU layers, global average pool, classifier: the smallest network that still has
# what a job's wiring touches (convolutions, BatchNorm statistics to average, a classifier head to swap),
# so a job can be checked end to end -- devices, rank table, collectives, data, checkpoints, export,
# summary -- in seconds, and on Ascend without minutes of graph compilation.
SMOKE_CHANNELS = (16, 32, 64)
SMOKE_BN = {"momentum": 0.9, "epsilon": 1e-3}

SmokeArch = collections.namedtuple("SmokeArch", "channels")


def smoke_arch():
    """The smoke model's plan (it has no options)."""
    return SmokeArch(channels=SMOKE_CHANNELS)
