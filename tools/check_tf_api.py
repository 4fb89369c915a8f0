"""Gate 2: the product code uses only TensorFlow API that exists in TF 1.15 (the Ascend stack).

Every `tf.<...>` attribute chain in the code (also through simple aliases such as
`layers = tf.keras.layers` or `from tfcompat import tf as tf1`) must name something in
tools/reference/tf1_15_api.txt, a copy of every public name of TF 1.15.5. Attributes *of* a listed
class or function (`tf.GraphKeys.UPDATE_OPS`) are fine; a missing name inside a listed module is not.
The keyword arguments of every `tf.keras.layers.X(...)` call are checked against the 1.15 constructor
arguments (tools/reference/tf1_15_keras_layer_kwargs.txt); 1.15's Conv2D, for example, has no `groups`.
Every call of a `tf.*` function or class, and every method called on an expression the gate can tell is
a tf.data dataset (tools/tf_datasets.py), is checked against the 1.15 signatures
(tools/reference/tf1_15_signatures.txt, tools/tf_calls.py): no keyword argument 1.15 lacks, no more
positional arguments than it takes, no Dataset method DatasetV1 lacks. Objects of unknown type (a Keras
layer instance, a function parameter, a method's return value) are not seen.

Deliberate TF-2-only branches behind a version check are listed, each with its reason, in
tools/tf2_only_allowlist.txt as `path | tf.name | reason`. An entry nothing uses any more fails too.
Tests, benchmarks and tools are not checked: they never run inside the Ascend image's trainer.
"""
import ast
import os
import sys

from tools import tf_calls, tf_datasets
from tools.project_files import python_files, report

HERE = os.path.dirname(os.path.abspath(__file__))
API_FILE = os.path.join(HERE, "reference", "tf1_15_api.txt")
KWARGS_FILE = os.path.join(HERE, "reference", "tf1_15_keras_layer_kwargs.txt")
ALLOWLIST = os.path.join("tools", "tf2_only_allowlist.txt")  # relative to the checked root
NOT_CHECKED = ("tests/", "bench/", "tools/")
LAYER_MODULES = ("tf.keras.layers.", "tf.compat.v1.keras.layers.")

# Arguments that every 1.15 Layer accepts through **kwargs (base_layer.Layer.__init__ and its
# allowed_kwargs in TF 1.15).
BASE_LAYER_KWARGS = {"trainable", "name", "dtype", "dynamic", "input_shape", "batch_input_shape",
                     "batch_size", "weights", "activity_regularizer"}
# Public 1.15 layer names whose constructor is defined under another class name in the kwargs file.
LAYER_ALIASES = {
    "BatchNormalization": "BatchNormalizationBase",
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
    "Convolution2DTranspose": "Conv2DTranspose", "Convolution3DTranspose": "Conv3DTranspose",
    "SeparableConvolution1D": "SeparableConv1D", "SeparableConvolution2D": "SeparableConv2D",
    "AvgPool1D": "AveragePooling1D", "AvgPool2D": "AveragePooling2D", "AvgPool3D": "AveragePooling3D",
    "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D", "MaxPool3D": "MaxPooling3D",
    "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalAveragePooling2D": "GlobalPooling2D",
    "GlobalAvgPool2D": "GlobalPooling2D", "GlobalAveragePooling3D": "GlobalPooling3D",
    "GlobalAvgPool3D": "GlobalPooling3D", "GlobalMaxPooling1D": "GlobalPooling1D",
    "GlobalMaxPool1D": "GlobalPooling1D", "GlobalMaxPooling2D": "GlobalPooling2D",
    "GlobalMaxPool2D": "GlobalPooling2D", "GlobalMaxPooling3D": "GlobalPooling3D",
    "GlobalMaxPool3D": "GlobalPooling3D",
}
# Merge layers (Add, Multiply, ...) take only base-layer arguments in 1.15.
MERGE_LAYERS = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}


def load_api(path=API_FILE):
    with open(path) as handle:
        return {line.strip() for line in handle if line.strip()}


def load_layer_kwargs(path=KWARGS_FILE):
    table = {}
    with open(path) as handle:
        for line in handle:
            if ":" not in line:
                continue
            name, args = line.split(":", 1)
            table[name.strip()] = set(args.split())
    return table


def load_allowlist(path):
    """{(path, tf.name): reason}; a line without a reason is itself an error."""
    entries, errors = {}, []
    if not os.path.exists(path):
        return entries, errors
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = [part.strip() for part in text.split("|")]
            if len(parts) != 3 or not all(parts):
                errors.append("%s:%d: want `path | tf.name | reason`" % (os.path.basename(path), number))
                continue
            entries[(parts[0], parts[1])] = parts[2]
    return entries, errors


def attribute_chain(node, roots):
    """'tf.a.b' for an Attribute/Name node rooted at a tf alias, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in roots:
        return ".".join([roots[node.id]] + list(reversed(parts)))
    return None


class _Collector(ast.NodeVisitor):
    """Collects (chain, line) for maximal tf chains, (layer chain, kwargs, line) for layer calls,
    (chain, call) for every call of a tf chain, and (attribute node, call or None, scope) for every
    other attribute, to be kept by dataset_uses() when its object is a dataset."""

    def __init__(self, module_names):
        self.roots = {"tf": "tf"}
        self.chains = []
        self.layer_calls = []
        self.tf_calls = []
        self.attributes = []
        self.module_names = module_names
        self.scope = None
        self.top_functions = []  # scopes of the module-level functions

    def resolve(self, node):
        return attribute_chain(node, self.roots)

    def constructs_datasets(self):
        constructors = tf_datasets.DATASET_CONSTRUCTORS
        return any(tf_calls.normalise(chain) in constructors for chain, _ in self.tf_calls)

    def linked(self):
        """What tf_datasets.link() needs to know of this file."""
        return self.module_names, self.top_functions, self.constructs_datasets()

    def dataset_uses(self):
        """(attribute, call or None, line) for each attribute of an expression that is a dataset."""
        if not self.module_names.may_hold_datasets():
            return []
        return [(node.attr, call, node.lineno) for node, call, scope in self.attributes
                if scope.is_dataset(node.value)]

    def visit_scope(self, node):
        self.scope = tf_datasets.Scope(node, self.scope, self.resolve, self.module_names)
        if isinstance(node, ast.Module):
            self.module_scope = self.scope
        elif self.scope.parent is self.module_scope and isinstance(node, ast.FunctionDef):
            self.top_functions.append(self.scope)
        self.generic_visit(node)
        self.scope = self.scope.parent

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = visit_scope

    def visit_ImportFrom(self, node):
        if node.module == "tfcompat":
            for alias in node.names:
                if alias.name == "tf":
                    self.roots[alias.asname or "tf"] = "tf"

    def visit_Assign(self, node):
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            chain = attribute_chain(node.value, self.roots)
            if chain is not None:
                self.roots[node.targets[0].id] = chain
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        chain = attribute_chain(func, self.roots)
        if chain is not None:
            self.tf_calls.append((chain, node))
            if chain.startswith(LAYER_MODULES):
                names = [kw.arg for kw in node.keywords if kw.arg is not None]
                self.layer_calls.append((chain, names, node.lineno))
        elif isinstance(func, ast.Attribute):
            self.attributes.append((func, node, self.scope))
            self.visit(func.value)  # not func itself: its attribute is recorded here, with the call
            for child in node.args + node.keywords:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Attribute(self, node):
        chain = attribute_chain(node, self.roots)
        if chain is not None:
            self.chains.append((chain, node.lineno))
            return  # maximal chain: do not report its prefixes again
        self.attributes.append((node, None, self.scope))
        self.generic_visit(node)


def first_missing(chain, api, modules):
    """The first name of `chain` that TF 1.15 lacks, or None when the chain is fine."""
    parts = chain.split(".")
    for i in range(2, len(parts) + 1):
        if parts[i - 1].startswith("__"):
            return None  # dunders (__version__, __name__) exist on every module
        prefix = ".".join(parts[:i])
        if prefix in api:
            if prefix not in modules:
                return None  # an attribute of a class, function or constant
            continue
        return prefix
    return None


def collect(source, rel, project):
    """The file's collector (tf chains, calls, attributes and scopes), or a one-line parse error."""
    try:
        tree = ast.parse(source, filename=rel)
    except (SyntaxError, ValueError) as error:
        return "%s:%s: cannot parse: %s" % (rel, getattr(error, "lineno", "?"), getattr(error, "msg", error))
    collector = _Collector(tf_datasets.ModuleNames(tree, rel, project))
    collector.visit(tree)
    return collector


def check_source(source, rel, api, modules, layer_kwargs, signatures):
    """(tf.name, line, message) for each violation in one file's source, read alone."""
    project = tf_datasets.Project()
    collector = collect(source, rel, project)
    tf_datasets.link([collector.linked()], project)
    return problems_of(collector, api, modules, layer_kwargs, signatures)


def problems_of(collector, api, modules, layer_kwargs, signatures):
    """(tf.name, line, message) for each violation the collector of one file holds."""
    problems = []
    for chain, line in collector.chains:
        missing = first_missing(chain, api, modules)
        if missing:
            problems.append((missing, line, "%s is not in TensorFlow 1.15" % missing))
    for chain, names, line in collector.layer_calls:
        layer = chain.rsplit(".", 1)[1]
        if first_missing(chain, api, modules):
            continue  # already reported above
        if layer in MERGE_LAYERS:
            allowed = set()
        else:
            allowed = layer_kwargs.get(LAYER_ALIASES.get(layer, layer))
        if allowed is None:
            continue  # not a layer class (tf.keras.layers.add, Input, ...)
        allowed = allowed | BASE_LAYER_KWARGS
        signature = tf_calls.lookup(chain, signatures)
        shown = "; 1.15 signature: %s where **kwargs takes %s" % (
            signature.text(), " ".join(sorted(BASE_LAYER_KWARGS))) if signature else ""
        for name in names:
            if name not in allowed:
                problems.append(("%s(%s=)" % (chain, name), line,
                                 "%s has no argument %r in TensorFlow 1.15%s" % (chain, name, shown)))
    for chain, call in collector.tf_calls:
        signature = tf_calls.lookup(chain, signatures)
        if signature is None or first_missing(chain, api, modules):
            continue  # no signature claimed, or the name itself is already reported
        for key, message in tf_calls.argument_problems(call, signature, chain):
            problems.append((key, call.lineno, message))
    for attribute, call, line in collector.dataset_uses():
        if attribute.startswith("_"):
            continue
        name = "%s.%s" % (tf_calls.DATASET, attribute)
        if name not in signatures:
            problems.append((name, line, "%s is not in TensorFlow 1.15 (this expression is a dataset; "
                                         "1.15's tf.data.Dataset is DatasetV1)" % name))
            continue
        signature = tf_calls.lookup(name, signatures)
        if call is not None and signature is not None:
            for key, message in tf_calls.argument_problems(call, signature, name, bound=True):
                problems.append((key, line, message))
    unique, seen = [], set()
    for problem in sorted(problems, key=lambda problem: problem[1]):
        if problem[:2] not in seen:
            seen.add(problem[:2])
            unique.append(problem)
    return unique


def violations(root):
    api = load_api()
    modules = {name.rsplit(".", 1)[0] for name in api if "." in name}
    layer_kwargs = load_layer_kwargs()
    signatures = tf_calls.load_signatures()
    allow, found = load_allowlist(os.path.join(root, ALLOWLIST))
    used = set()
    project = tf_datasets.Project()
    collectors = []
    for rel in python_files(root):
        posix = rel.replace(os.sep, "/")
        if posix.startswith(NOT_CHECKED):
            continue
        with open(os.path.join(root, rel), "rb") as handle:
            collector = collect(handle.read(), posix, project)
        if isinstance(collector, str):
            found.append(collector)
        else:
            collectors.append((posix, collector))
    tf_datasets.link([collector.linked() for _, collector in collectors], project)
    for posix, collector in collectors:
        for name, line, message in problems_of(collector, api, modules, layer_kwargs, signatures):
            if (posix, name) in allow:
                used.add((posix, name))
                continue
            found.append("%s:%d: %s" % (posix, line, message))
    for key in sorted(set(allow) - used):
        found.append("tf2_only_allowlist.txt: unused entry %s | %s (remove it)" % key)
    return found


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    root = args[0] if args else "."
    return report("check_tf_api", violations(root), "OK (TensorFlow 1.15 API)",
                  "use(s) of API missing from TensorFlow 1.15")


if __name__ == "__main__":
    sys.exit(main())
