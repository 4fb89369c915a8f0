"""The arguments of `tf.*` calls and tf.data.Dataset method calls, checked against TF 1.15's signatures.

Why: a TF-2-only argument (`dataset.map(f, deterministic=False)`, `tf.image.resize(..., antialias=True)`)
is a name the name check cannot see, and it is fatal only inside the Ascend image (TF 1.15), which CI
cannot run. tools/reference/tf1_15_signatures.txt lists each public 1.15 function's arguments (a class's
__init__ without self; `tf.data.Dataset.<method>` for DatasetV1's methods; `?` where no signature is
claimed). This module judges one call against that table (tools/tf_datasets.py finds the datasets).
"""
import ast
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SIGNATURES_FILE = os.path.join(HERE, "reference", "tf1_15_signatures.txt")

DATASET = "tf.data.Dataset"
# Dataset methods that are static or class methods in 1.15: called on the class, they take no self.
DATASET_STATIC = {"from_generator", "from_sparse_tensor_slices", "from_tensor_slices", "from_tensors",
                  "list_files", "range", "zip"}
COMPAT_PREFIXES = ("tf.compat.v1.", "tf.compat.v2.")


class Signature:
    """One 1.15 argument list: the names in order, and whether it ends in *args / **kwargs."""

    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.named = [arg for arg in args if not arg.startswith("*")]
        self.varargs = any(arg.startswith("*") and not arg.startswith("**") for arg in args)
        self.varkw = any(arg.startswith("**") for arg in args)
        positional = []
        for arg in args:
            if arg.startswith("*"):
                break
            positional.append(arg)
        self.max_positional = len(positional)

    def text(self):
        return "%s(%s)" % (self.name, ", ".join(self.args))


def load_signatures(path=SIGNATURES_FILE):
    """{tf.name: its argument text}; lookup() makes a Signature of the few names the code calls."""
    table = {}
    with open(path) as handle:
        for line in handle:
            name, colon, rest = line.partition(":")
            if colon:
                table[name.strip()] = rest
    return table


def normalise(chain):
    """tf.compat.v1.data.X and tf.compat.v2.data.X as tf.data.X, for telling datasets apart."""
    for prefix in COMPAT_PREFIXES:
        if chain.startswith(prefix):
            return "tf." + chain[len(prefix):]
    return chain


def lookup(chain, table):
    """The 1.15 signature of a tf chain, or None. In 1.15 `tf.X` is the v1 API, the same object as
    `tf.compat.v1.X`; the table lists top-level functions only under tf.compat.v1."""
    candidates = [chain]
    if chain.startswith("tf.compat.v1."):
        candidates.append("tf." + chain[len("tf.compat.v1."):])
    elif chain.startswith("tf.") and not chain.startswith("tf.compat."):
        candidates.append("tf.compat.v1." + chain[3:])
    if normalise(chain).startswith(DATASET + "."):
        candidates.append(normalise(chain))  # the table lists DatasetV1's methods once, as tf.data.Dataset.X
    for name in candidates:
        if name in table:
            args = table[name].split()
            return None if args == ["?"] else Signature(name, args)  # `?`: no signature claimed
    return None


def argument_problems(call, signature, key, bound=False):
    """(allow-list name, message) for each argument of `call` that `signature` does not take.
    `bound`: the call passes self implicitly (a method called on an instance) -- the table never
    lists self; a Dataset instance method called through the class passes self positionally."""
    problems = []
    extra = 0 if bound else _implicit_self(signature)
    given = len(call.args)
    if not signature.varargs and not any(isinstance(arg, ast.Starred) for arg in call.args):
        if given - extra > signature.max_positional:
            problems.append(("%s(positional %d)" % (key, given - extra),
                             "%s takes at most %d positional argument(s) in TensorFlow 1.15, %d given; "
                             "1.15 signature: %s" % (key, signature.max_positional, given - extra,
                                                      signature.text())))
    if not signature.varkw:
        for keyword in call.keywords:
            if keyword.arg is not None and keyword.arg not in signature.named:
                problems.append(("%s(%s=)" % (key, keyword.arg),
                                 "%s has no argument %r in TensorFlow 1.15; 1.15 signature: %s"
                                 % (key, keyword.arg, signature.text())))
    return problems


def _implicit_self(signature):
    """1 for tf.data.Dataset.<instance method> called through the class (self passed positionally)."""
    if signature.name.startswith(DATASET + "."):
        return 0 if signature.name.rsplit(".", 1)[1] in DATASET_STATIC else 1
    return 0
