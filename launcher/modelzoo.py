"""ModelZoo's Network name for a registry model and its options (test/modelzoo_common.sh asks here).

Why: the name starts ModelZoo's CaseName and the summary log's file name, so a ShuffleNetV1 run with other
groups or another scale must not be reported as ModelZoo's 1.0x group-3 network.
"""
import argparse

from models import registry
from models.errors import ModelError

# ModelZoo's own names for the networks it has (ShuffleNetV1-1.0x-group3_ID2129_for_TensorFlow and the
# MobileNetV3 entries); other options extend them in the same style.
_MOBILENET_V3 = {"mobilenetv3_large": "MobileNetV3-Large", "mobilenetv3_small": "MobileNetV3-Small"}


def model_options(trainer_args):
    """The ``--model-option`` / ``--model_option`` values among the trainer's flags, in order."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--model-option", "--model_option", dest="items", action="append", default=[])
    return parser.parse_known_args(list(trainer_args))[0].items


def network_name(model, trainer_args=()):
    """``ShuffleNetV1-1.0x-group3``, ``MobileNetV3-Small`` (``MobileNetV3-Small-0.75x`` at width 0.75); the
    registry name for any other model, and for options the registry refuses (the launcher then reports
    them in its one-line error)."""
    try:
        options = registry.parse_options(model, model_options(trainer_args))
    except ModelError:
        return model
    if model == "shufflenetv1":
        return "ShuffleNetV1-%sx-group%d" % (options["scale"], options["groups"])
    if model in _MOBILENET_V3:
        name = _MOBILENET_V3[model]
        return name if options["width"] == 1.0 else "%s-%gx" % (name, options["width"])
    return model


if __name__ == "__main__":
    import sys
    print(network_name(sys.argv[1], sys.argv[2:]))
