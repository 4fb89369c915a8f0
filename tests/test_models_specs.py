"""The TensorFlow-free half of models/: architecture tables, channel rules, counts, registry, options."""
import os
import subprocess
import sys

import pytest

from models import registry, specs
from models.complexity import mobilenet_v3_complexity, shufflenet_v1_complexity
from models.errors import ModelError

# arXiv:1905.02244 Table 1 / Table 2 (latest revision): (kernel, exp, out, SE, NL, stride) per bneck.
PAPER_LARGE = [
    (3, 16, 16, 0, "RE", 1), (3, 64, 24, 0, "RE", 2), (3, 72, 24, 0, "RE", 1), (5, 72, 40, 1, "RE", 2),
    (5, 120, 40, 1, "RE", 1), (5, 120, 40, 1, "RE", 1), (3, 240, 80, 0, "HS", 2), (3, 200, 80, 0, "HS", 1),
    (3, 184, 80, 0, "HS", 1), (3, 184, 80, 0, "HS", 1), (3, 480, 112, 1, "HS", 1), (3, 672, 112, 1, "HS", 1),
    (5, 672, 160, 1, "HS", 2), (5, 960, 160, 1, "HS", 1), (5, 960, 160, 1, "HS", 1),
]
PAPER_SMALL = [
    (3, 16, 16, 1, "RE", 2), (3, 72, 24, 0, "RE", 2), (3, 88, 24, 0, "RE", 1), (5, 96, 40, 1, "HS", 2),
    (5, 240, 40, 1, "HS", 1), (5, 240, 40, 1, "HS", 1), (5, 120, 48, 1, "HS", 1), (5, 144, 48, 1, "HS", 1),
    (5, 288, 96, 1, "HS", 2), (5, 576, 96, 1, "HS", 1), (5, 576, 96, 1, "HS", 1),
]
NL = {"RE": specs.RELU, "HS": specs.HSWISH}


def test_make_divisible_follows_the_slim_and_keras_rule():
    assert [specs.make_divisible(v) for v in (16, 12, 18, 20, 30, 60, 120, 184 * 0.75, 3)] == \
        [16, 16, 24, 24, 32, 64, 120, 136, 8]
    assert specs.make_divisible(10) == 16  # 8 would be under 90% of 10


@pytest.mark.parametrize("variant,paper,head,last", [("large", PAPER_LARGE, 960, 1280),
                                                     ("small", PAPER_SMALL, 576, 1024)])
def test_mobilenet_v3_at_width_1_is_the_papers_table(variant, paper, head, last):
    arch = specs.mobilenet_v3_arch(variant, 1.0)
    assert arch.stem == 16
    got = [(b.kernel, b.exp, b.out, int(b.se_ch > 0), b.act, b.stride) for b in arch.blocks]
    assert got == [(k, e, o, se, NL[nl], s) for k, e, o, se, nl, s in paper]
    for block in arch.blocks:
        assert block.se_ch == (specs.make_divisible(block.exp / 4.0) if block.se_ch else 0)
        assert block.residual == (block.stride == 1 and block.in_ch == block.out)
    assert not arch.blocks[0].expand  # 16 -> 16: no expansion conv, as in keras.applications and slim
    assert all(block.expand for block in arch.blocks[1:])
    assert (arch.head, arch.last_point) == (head, last)


def test_mobilenet_v3_se_widths_match_keras_applications():
    large = [b.se_ch for b in specs.mobilenet_v3_arch("large").blocks if b.se_ch]
    small = [b.se_ch for b in specs.mobilenet_v3_arch("small").blocks if b.se_ch]
    assert large == [24, 32, 32, 120, 168, 168, 240, 240]
    assert small == [8, 24, 64, 64, 32, 40, 72, 144, 144]


def test_mobilenet_v3_width_multiplier_rounds_every_width_to_8():
    for width in (0.75, 1.25, 0.5):
        arch = specs.mobilenet_v3_arch("large", width)
        widths = [arch.stem, arch.head, arch.last_point]
        for block in arch.blocks:
            widths += [block.exp, block.out] + ([block.se_ch] if block.se_ch else [])
        assert all(w % 8 == 0 for w in widths)
    assert specs.mobilenet_v3_arch("large", 0.75).last_point == 1280  # full head below 1.0 (paper's 4.0M)
    assert specs.mobilenet_v3_arch("large", 1.25).last_point == 1600
    assert specs.mobilenet_v3_arch("large", 1.25).stem == 24


def test_mobilenet_v3_counts_match_papers_and_keras_figures():
    large = mobilenet_v3_complexity(specs.mobilenet_v3_arch("large"))
    small = mobilenet_v3_complexity(specs.mobilenet_v3_arch("small"))
    # keras.applications totals / trainable (the build test compares with the real Keras models).
    assert (large.params, large.trainable_params) == (5507432, 5483032)
    assert (small.params, small.trainable_params) == (2554968, 2542856)
    # Paper Table 3: 219M / 56M MAdds (slim README: 217M); within 2%.
    assert abs(large.madds / 219e6 - 1) < 0.02
    assert abs(small.madds / 56e6 - 1) < 0.02
    assert abs(mobilenet_v3_complexity(specs.mobilenet_v3_arch("large", 0.75)).madds / 155e6 - 1) < 0.02
    assert abs(mobilenet_v3_complexity(specs.mobilenet_v3_arch("small", 0.75)).madds / 44e6 - 1) < 0.02


@pytest.mark.parametrize("groups,paper_mflops", [(1, 143), (2, 140), (3, 137), (4, 133), (8, 137)])
def test_shufflenet_v1_madds_within_2_percent_of_paper_table_1(groups, paper_mflops):
    madds = shufflenet_v1_complexity(specs.shufflenet_v1_arch(groups, 1.0)).madds
    assert abs(madds / (paper_mflops * 1e6) - 1) < 0.02


def test_shufflenet_v1_other_scales_match_paper_and_megvii_complexity():
    # Paper Table 5 (g=3 2.0x 524, 1.5x 292; g=4 0.5x 38) and megvii's README (g=8 0.5x 40, 2.0x 522).
    for groups, scale, mflops in ((3, 2.0, 524), (3, 1.5, 292), (4, 0.5, 38), (8, 0.5, 40), (8, 2.0, 522)):
        madds = shufflenet_v1_complexity(specs.shufflenet_v1_arch(groups, scale)).madds
        assert abs(madds / (mflops * 1e6) - 1) < 0.02, (groups, scale, madds)


def test_shufflenet_v1_channels_match_paper_and_megvii_tables():
    paper = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
    for groups, stage2 in paper.items():
        assert specs.shufflenet_v1_stage_channels(groups, 1.0) == (24, stage2, 2 * stage2, 4 * stage2)
    megvii = {  # ShuffleNet-Series/ShuffleNetV1/network.py stage_out_channels
        (3, 0.5): (12, 120, 240, 480), (3, 1.0): (24, 240, 480, 960), (3, 1.5): (24, 360, 720, 1440),
        (3, 2.0): (48, 480, 960, 1920), (8, 0.5): (16, 192, 384, 768), (8, 1.0): (24, 384, 768, 1536),
        (8, 1.5): (24, 576, 1152, 2304), (8, 2.0): (48, 768, 1536, 3072),
    }
    for (groups, scale), channels in megvii.items():
        assert specs.shufflenet_v1_stage_channels(groups, scale) == channels
    # The rounding rule (nearest multiple of 4g, halves up) only moves g=2 and g=4 at 0.5x and 1.5x.
    assert specs.shufflenet_v1_stage_channels(4, 0.5) == (12, 144, 272, 544)
    assert specs.shufflenet_v1_stage_channels(2, 1.5) == (24, 304, 600, 1200)


@pytest.mark.parametrize("groups", specs.SHUFFLENET_GROUPS)
@pytest.mark.parametrize("scale", specs.SHUFFLENET_SCALES)
def test_shufflenet_v1_every_grouped_conv_divides(groups, scale):
    arch = specs.shufflenet_v1_arch(groups, scale)
    assert [u.stride for u in arch.units] == [2, 1, 1, 1] + [2] + [1] * 7 + [2, 1, 1, 1]
    assert arch.units[0].first_groups == 1 and not arch.units[0].shuffle
    for unit in arch.units:
        assert unit.mid == unit.out // 4
        assert unit.mid % groups == 0 and unit.branch_out % groups == 0
        assert unit.in_ch % unit.first_groups == 0
        assert unit.branch_out == (unit.out - unit.in_ch if unit.stride == 2 else unit.out)
    assert all(u.first_groups == groups and u.shuffle == (groups > 1) for u in arch.units[1:])


def test_registry_names_and_descriptions():
    assert registry.model_names() == ["mobilenetv3_large", "mobilenetv3_small", "shufflenetv1", "smoke"]
    assert registry.paper_model_names() == ["mobilenetv3_large", "mobilenetv3_small", "shufflenetv1"]
    info = registry.describe("shufflenetv1")
    assert info["options"] == {"groups": 3, "scale": 1.0}
    assert info["params"] == shufflenet_v1_complexity(specs.shufflenet_v1_arch(3, 1.0)).params
    assert "groups=1|2|3|4|8" in info["description"]
    assert registry.describe("mobilenetv3_large", width="0.75")["params"] == 4012616
    assert len(registry.summary_lines()) == 4


def test_the_smoke_model_counts_by_hand_and_takes_no_options():
    # 3x3/2 convs 3->16->32->64 without bias (224 -> 112 -> 56 -> 28), BN (4 numbers per channel, 2 trained),
    # a 64 -> 1000 classifier with bias
    convs = [(3 * 3 * 3 * 16, 112), (3 * 3 * 16 * 32, 56), (3 * 3 * 32 * 64, 28)]
    info = registry.describe("smoke")
    assert info["params"] == sum(w for w, _ in convs) + 4 * (16 + 32 + 64) + 64 * 1000 + 1000 == 88920
    assert info["trainable_params"] == info["params"] - 2 * (16 + 32 + 64)
    assert info["madds"] == sum(w * size * size for w, size in convs) + 64 * 1000
    assert info["options"] == {} and info["description"].endswith("; no options")
    with pytest.raises(ModelError, match="unknown option 'width' for model smoke: known options are none"):
        registry.parse_options("smoke", ["width=0.5"])


def test_parse_options_fills_defaults_and_parses_values():
    assert registry.parse_options("shufflenetv1", ["groups=8", "scale=0.5"]) == {"groups": 8, "scale": 0.5}
    assert registry.parse_options("shufflenetv1", []) == {"groups": 3, "scale": 1.0}
    assert registry.parse_options("mobilenetv3_small", ["width=1.25"]) == {"width": 1.25}
    assert registry.parse_options("shufflenetv1", ["groups=8.0", "scale=2"]) == {"groups": 8, "scale": 2.0}


@pytest.mark.parametrize("name,items,fragment", [
    ("shufflenetv1", ["groups=5"], "use one of 1, 2, 3, 4, 8"),
    ("shufflenetv1", ["scale=0.75"], "use one of 0.5, 1, 1.5, 2"),
    ("shufflenetv1", ["width=1.0"], "known options are groups, scale"),
    ("shufflenetv1", ["groups"], "must look like name=value"),
    ("shufflenetv1", ["groups=3", "groups=8"], "given twice"),
    ("shufflenetv1", ["groups=three"], "is not a number"),
    ("shufflenetv1", ["groups=2.5"], "must be a whole number"),
    ("shufflenetv1", ["groups=nan"], "is not a number"),
    ("mobilenetv3_large", ["width=3"], "out of range"),
    ("mobilenetv3_large", ["groups=3"], "known options are width"),
    ("resnet50", [], "unknown model 'resnet50': use one of mobilenetv3_large"),
])
def test_option_mistakes_give_one_clear_line(name, items, fragment):
    with pytest.raises(ModelError) as caught:
        registry.parse_options(name, items)
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_build_rejects_bad_sizes_before_importing_tensorflow():
    for kwargs, fragment in (({"image_size": 16}, "at least 32x32"), ({"image_size": 64, "num_classes": 0},
                                                                     "positive whole number")):
        args = dict({"num_classes": 10}, **kwargs)
        with pytest.raises(ModelError, match=fragment):
            registry.build("mobilenetv3_small", **args)
    with pytest.raises(ModelError, match="drop rate"):
        registry.build("mobilenetv3_small", 10, 64, dropout=1.0)
    assert registry.head_variable_prefix("shufflenetv1") == "classifier"


def test_registry_imports_and_lists_without_tensorflow():
    code = ("import sys; from models import registry; registry.summary_lines(); "
            "registry.describe('shufflenetv1', groups=8); "
            "assert 'tensorflow' not in sys.modules and 'tfcompat' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
