"""The registry of model names (``--model``): options, descriptions, sizes, and the builders.

Importable without TensorFlow (the launcher lists models and must start in well under a second): the
builders, and everything else that needs TensorFlow, are imported only when called.

Transfer learning: the classifier is the single layer named ``head_variable_prefix(name)``
("classifier"); its variables are ``classifier/kernel`` (and ``classifier/bias`` for MobileNetV3). Every
other variable keeps its shape when only the class count changes.
"""
import collections
import math
import warnings

from models import complexity, specs
from models.errors import ModelError

HEAD_PREFIX = specs.HEAD_NAME
MIN_IMAGE_SIZE = 32

Option = collections.namedtuple("Option", "parse default choices")
Option.__doc__ = "parse(text or number) -> value or raises ModelError; choices: help text."
_Model = collections.namedtuple("_Model", "title options arch counter builder dropout paper")


def _number(kind, name):
    def parse(value):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number):
            raise ModelError("model option %s=%r is not a number" % (name, value))
        if kind is int:
            if number != int(number):
                raise ModelError("model option %s=%s must be a whole number" % (name, value))
            return int(number)
        return number
    return parse


def _width(value):
    width = _number(float, "width")(value)
    low, high = specs.WIDTH_RANGE
    if not low <= width <= high:
        raise ModelError("width=%g is out of range: use a value from %g to %g (e.g. width=0.75)"
                         % (width, low, high))
    return width


def _choice(name, kind, allowed):
    def parse(value):
        number = _number(kind, name)(value)
        if number not in allowed:
            raise ModelError("%s=%s is not supported: use one of %s"
                             % (name, value, ", ".join("%g" % a for a in allowed)))
        return number
    return parse


_WIDTH = Option(_width, 1.0, "width=%g..%g (1.0)" % specs.WIDTH_RANGE)
_MODELS = collections.OrderedDict([
    ("mobilenetv3_large", _Model(
        "MobileNetV3-Large (arXiv:1905.02244 Table 1)", {"width": _WIDTH},
        lambda o: specs.mobilenet_v3_arch("large", o["width"]), complexity.mobilenet_v3_complexity,
        "mobilenet_v3", 0.2, True)),
    ("mobilenetv3_small", _Model(
        "MobileNetV3-Small (arXiv:1905.02244 Table 2)", {"width": _WIDTH},
        lambda o: specs.mobilenet_v3_arch("small", o["width"]), complexity.mobilenet_v3_complexity,
        "mobilenet_v3", 0.2, True)),
    ("shufflenetv1", _Model(
        "ShuffleNetV1 (arXiv:1707.01083 Table 1)",
        collections.OrderedDict([
            ("groups", Option(_choice("groups", int, specs.SHUFFLENET_GROUPS), 3, "groups=1|2|3|4|8 (3)")),
            ("scale", Option(_choice("scale", float, specs.SHUFFLENET_SCALES), 1.0,
                             "scale=0.5|1.0|1.5|2.0 (1.0)")),
        ]),
        lambda o: specs.shufflenet_v1_arch(o["groups"], o["scale"]), complexity.shufflenet_v1_complexity,
        "shufflenet_v1", 0.0, True)),
    ("smoke", _Model(
        "smoke test: 3 conv-BN-ReLU layers and a classifier, to check a job's wiring in seconds "
        "(devices, rank table, collectives, data, checkpoints); no accuracy to expect", {},
        lambda o: specs.smoke_arch(), complexity.smoke_complexity, "smoke", 0.0, False)),
])


def model_names():
    """Registered names, in display order."""
    return list(_MODELS)


def paper_model_names():
    """The networks from papers (the smoke model left out): what the model benchmarks compare."""
    return [name for name, entry in _MODELS.items() if entry.paper]


def _entry(name):
    if name not in _MODELS:
        raise ModelError("unknown model %r: use one of %s (see --list-models)"
                         % (name, ", ".join(_MODELS)))
    return _MODELS[name]


def resolve_options(name, **options):
    """Every option of ``name`` with defaults filled in and values checked (strings are parsed)."""
    entry = _entry(name)
    for key in options:
        if key not in entry.options:
            known = ", ".join(entry.options) or "none"
            raise ModelError("unknown option %r for model %s: known options are %s" % (key, name, known))
    return dict((key, option.parse(options[key]) if key in options else option.default)
                for key, option in entry.options.items())


def parse_options(name, items):
    """``["groups=3", "scale=1.0"]`` -> ``{"groups": 3, "scale": 1.0}`` (defaults filled in)."""
    given = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ModelError("model option %r must look like name=value, e.g. %s"
                             % (item, _entry(name).options and _example(name) or "width=1.0"))
        if key in given:
            raise ModelError("model option %r is given twice; give it once" % key)
        given[key] = value
    return resolve_options(name, **given)


def _example(name):
    return " ".join("%s=%s" % (key, option.default) for key, option in _entry(name).options.items())


def architecture(name, **options):
    """The TensorFlow-free plan (``models.specs``) the builder will follow."""
    entry = _entry(name)
    return entry.arch(resolve_options(name, **options))


def describe(name, **options):
    """name, description, options, params, trainable_params and madds (224x224, 1000 classes)."""
    entry = _entry(name)
    resolved = resolve_options(name, **options)
    counts = entry.counter(entry.arch(resolved), num_classes=1000, image_size=224)
    choices = ", ".join(option.choices for option in entry.options.values())
    settings = ", ".join("%s=%g" % (key, value) for key, value in resolved.items())
    return {
        "name": name,
        "description": ("%s, %s; options: %s" % (entry.title, settings, choices) if resolved
                        else "%s; no options" % entry.title),
        "options": resolved,
        "params": counts.params,
        "trainable_params": counts.trainable_params,
        "madds": counts.madds,
    }


def summary_lines():
    """One line per model for ``--list-models``."""
    lines = []
    for name in model_names():
        info = describe(name)
        lines.append("%-18s %6.2fM params %7.1fM MAdds  %s"
                     % (name, info["params"] / 1e6, info["madds"] / 1e6, info["description"]))
    return lines


def complexity_at(name, num_classes=1000, image_size=224, **options):
    """``models.complexity.Complexity`` for any class count and (square) image size."""
    entry = _entry(name)
    return entry.counter(entry.arch(resolve_options(name, **options)), num_classes=num_classes,
                         image_size=image_size)


def _input_shape(image_size):
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        height, width = image_size
    else:
        height = width = image_size
    try:
        height, width = int(height), int(width)
    except (TypeError, ValueError):
        raise ModelError("image size %r is not a number of pixels; use e.g. 224" % (image_size,)) from None
    if min(height, width) < MIN_IMAGE_SIZE:
        raise ModelError("image size %dx%d is too small: these models need at least %dx%d"
                         % (height, width, MIN_IMAGE_SIZE, MIN_IMAGE_SIZE))
    return (height, width, 3)


def check_image_size(image_size):
    """ModelError unless the models can take ``image_size`` (what build() checks; no TensorFlow)."""
    _input_shape(image_size)


def build(name, num_classes, image_size, weight_decay=0.0, dropout=None, **options):
    """A functional tf.keras.Model: float32 [None, H, W, 3] -> logits [None, num_classes] (no softmax).

    ``dropout`` defaults to the model's reference value (MobileNetV3 0.2, ShuffleNetV1 and smoke none).
    ``weight_decay`` is remembered on the model for ``regularization_loss(model)``; no Keras regularizers
    are attached. TensorFlow is imported here, not at module import.
    """
    entry = _entry(name)
    arch = entry.arch(resolve_options(name, **options))
    input_shape = _input_shape(image_size)
    try:
        num_classes = int(num_classes)
    except (TypeError, ValueError):
        num_classes = 0
    if num_classes < 1:
        raise ModelError("number of classes must be a positive whole number (got %r)" % (num_classes,))
    if dropout is None:
        dropout = entry.dropout
    if not 0.0 <= float(dropout) < 1.0:
        raise ModelError("dropout=%r must be at least 0 and below 1 (it is a drop rate)" % (dropout,))
    if float(weight_decay) < 0:
        raise ModelError("weight decay must not be negative (got %r)" % (weight_decay,))
    from tfcompat import tf
    # Keras' functional construction runs every layer once on its symbolic input, and those ops are never
    # run: the trainer, the evaluation and the export call the model with an explicit training flag. At a
    # fixed learning phase that pass builds no learning-phase cond in each BatchNormalization layer
    # (fewer ops in the graph, a faster build; tests/test_models_build.py checks both halves).
    with warnings.catch_warnings():  # tf_keras calls the scope deprecated; TF 1.15 has it and it works
        warnings.filterwarnings("ignore", message=".*learning_phase_scope. is deprecated")
        with tf.keras.backend.learning_phase_scope(0):
            if entry.builder == "mobilenet_v3":
                from models.mobilenet_v3 import build_mobilenet_v3
                model = build_mobilenet_v3(arch, num_classes, input_shape, dropout=float(dropout))
            elif entry.builder == "smoke":
                from models.smoke import build_smoke
                model = build_smoke(arch, num_classes, input_shape, dropout=float(dropout))
            else:
                from models.shufflenet_v1 import build_shufflenet_v1
                model = build_shufflenet_v1(arch, num_classes, input_shape, dropout=float(dropout))
    model.l2_weight_decay = float(weight_decay)
    return model


def head_variable_prefix(name):
    """Variable-name prefix of the classifier head (restored only when the class count is unchanged)."""
    _entry(name)
    return HEAD_PREFIX


def head_variables(model):
    """The classifier head's variables of a built model."""
    return list(model.get_layer(HEAD_PREFIX).weights)


def weight_decay_loss(model, weight_decay):
    """Scalar L2 decay over conv/dense kernels only (see ``models.weight_decay``)."""
    from models.weight_decay import weight_decay_loss as loss
    return loss(model, weight_decay)


def regularization_loss(model):
    """``weight_decay_loss`` with the weight decay given to ``build``."""
    return weight_decay_loss(model, model.l2_weight_decay)
