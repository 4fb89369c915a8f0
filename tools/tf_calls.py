"""The arguments of `tf.*` calls and tf.data.Dataset method calls, checked against TF 1.15's signatures.

Why: a TF-2-only argument (`dataset.map(f, deterministic=False)`, `tf.image.resize(..., antialias=True)`)
is a name the name check cannot see, and it is fatal only inside the Ascend image (TF 1.15), which CI
cannot run. tools/reference/tf1_15_signatures.txt lists each public 1.15 function's arguments (a class's
__init__ without self; `tf.data.Dataset.<method>` for DatasetV1's methods; `?` where no signature is
claimed). This module judges one call against that table and tells which expressions are datasets.
"""
import ast
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SIGNATURES_FILE = os.path.join(HERE, "reference", "tf1_15_signatures.txt")

DATASET = "tf.data.Dataset"
# Dataset methods that are static or class methods in 1.15: called on the class, they take no self.
DATASET_STATIC = {"from_generator", "from_sparse_tensor_slices", "from_tensor_slices", "from_tensors",
                  "list_files", "range", "zip"}
# DatasetV1 methods that return a dataset (apply raises in 1.15 unless its function returns one).
DATASET_RETURNING = DATASET_STATIC | {
    "apply", "batch", "cache", "concatenate", "enumerate", "filter", "filter_with_legacy_function",
    "flat_map", "interleave", "map", "map_with_legacy_function", "padded_batch", "prefetch", "repeat",
    "shard", "shuffle", "skip", "take", "unbatch", "window", "with_options"}
# Module-level 1.15 names whose call returns a dataset.
DATASET_CONSTRUCTORS = {DATASET + "." + name for name in DATASET_STATIC} | {
    "tf.data.TFRecordDataset", "tf.data.TextLineDataset", "tf.data.FixedLengthRecordDataset",
    "tf.data.experimental.Counter", "tf.data.experimental.CsvDataset", "tf.data.experimental.RandomDataset",
    "tf.data.experimental.SqlDataset", "tf.data.experimental.choose_from_datasets",
    "tf.data.experimental.sample_from_datasets", "tf.data.experimental.make_batched_features_dataset",
    "tf.data.experimental.make_csv_dataset"}
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
    """{tf.name: Signature, or None where the line says `?` (no signature claimed)."""
    table = {}
    with open(path) as handle:
        for line in handle:
            name, colon, rest = line.partition(":")
            if not colon:
                continue
            name, args = name.strip(), rest.split()
            table[name] = None if args == ["?"] else Signature(name, args)
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
            return table[name]
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


# ---- which expressions are datasets ---------------------------------------------------------------
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
UNKNOWN = None


def is_dataset(node, known, resolve):
    """True when `node` surely evaluates to a tf.data dataset: a tf.data constructor call, a
    dataset-returning method called on a dataset, a name `known(name node)` says is one, or a
    conditional of two datasets. `resolve(node)` gives the tf chain of an attribute/name node or None."""
    if isinstance(node, ast.Name):
        return known(node)
    if isinstance(node, ast.IfExp):
        return is_dataset(node.body, known, resolve) and is_dataset(node.orelse, known, resolve)
    if not isinstance(node, ast.Call):
        return False
    chain = resolve(node.func)
    if chain is not None:
        return normalise(chain) in DATASET_CONSTRUCTORS
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr in DATASET_RETURNING
            and is_dataset(func.value, known, resolve))


def scope_bindings(scope):
    """{name: [value node or UNKNOWN, ...]} for every name `scope` binds itself (nested functions,
    lambdas, classes and comprehensions are their own scopes and are not entered)."""
    bindings = {}

    def bind(target, value):
        if isinstance(target, ast.Name):
            bindings.setdefault(target.id, []).append(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                bind(element, UNKNOWN)
        elif isinstance(target, ast.Starred):
            bind(target.value, UNKNOWN)

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bindings.setdefault(node.name, []).append(UNKNOWN)
            return  # its body is its own scope (decorators and defaults bind nothing here)
        if isinstance(node, (ast.Lambda,) + COMPREHENSIONS):
            return
        if isinstance(node, ast.Assign):
            for target in node.targets:
                bind(target, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            bind(node.target, node.value)
        elif isinstance(node, (ast.AugAssign, ast.For, ast.AsyncFor)):
            bind(node.target, UNKNOWN)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            bind(node.optional_vars, UNKNOWN)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bindings.setdefault(node.name, []).append(UNKNOWN)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bindings.setdefault((alias.asname or alias.name).split(".")[0], []).append(UNKNOWN)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                bindings.setdefault(name, []).append(UNKNOWN)
        elif type(node).__name__ == "NamedExpr":  # Python 3.8+ syntax, parsed by a newer interpreter
            bind(node.target, UNKNOWN)
        for child in ast.iter_child_nodes(node):
            visit(child)

    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        arguments = scope.args
        params = list(getattr(arguments, "posonlyargs", [])) + arguments.args + arguments.kwonlyargs
        params += [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
        for param in params:
            bindings.setdefault(param.arg, []).append(UNKNOWN)
        for node in (scope.body if isinstance(scope.body, list) else [scope.body]):
            visit(node)
    else:
        for node in ast.iter_child_nodes(scope):
            visit(node)
    return bindings


def dataset_names(scope, inherited, resolve):
    """The names a function nested in `scope` may take for datasets (it runs later and may see any
    binding): every binding of the name in `scope` is a dataset expression (the largest such set, so
    `d = d.map(f)` after `d = tf.data...` stays one), plus the enclosing scope's that `scope` keeps."""
    bindings = scope_bindings(scope)
    candidates = {name for name, values in bindings.items() if UNKNOWN not in values}
    outer = {name for name in inherited if name not in bindings}
    visible = outer | candidates

    def known(node):
        return node.id in visible

    changed = True
    while changed:
        changed = False
        for name in sorted(candidates):
            if not all(is_dataset(value, known, resolve) for value in bindings[name]):
                candidates.discard(name)
                visible.discard(name)
                changed = True
    return visible


def dataset_loads(scope, inherited, resolve):
    """The ids of the Name nodes that, where they are read in `scope`'s own code, surely hold a dataset.

    Flow-sensitive and cautious: a name is a dataset after `name = <dataset expression>` until it is
    bound to anything else; after an if/else, a loop or a try only when it is one on every path.
    `inherited`: the enclosing scope's dataset_names() (a nested function's free variables)."""
    bindings = scope_bindings(scope)
    state = {name: True for name in inherited if name not in bindings}
    found = {}

    def read(node, state):
        """Record every name read in expression `node` (not inside a lambda: its own scope)."""
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                found[id(node)] = found.get(id(node), True) and state.get(node.id, False)
            return
        if isinstance(node, ast.Lambda):
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                read(default, state)
            return
        if isinstance(node, COMPREHENSIONS):
            inner = dict(state)
            for generator in node.generators:
                read(generator.iter, inner)
                for name in _names(generator.target):
                    inner[name] = False
                for condition in generator.ifs:
                    read(condition, inner)
            for part in ("elt", "key", "value"):
                if getattr(node, part, None) is not None:
                    read(getattr(node, part), inner)
            return
        for child in ast.iter_child_nodes(node):
            read(child, state)

    def surely(value, state):
        return is_dataset(value, lambda name: state.get(name.id, False), resolve)

    def assign(target, dataset, state):
        if isinstance(target, ast.Name):
            state[target.id] = dataset
        else:
            read(target, state)  # attribute/subscript targets read their base
            for name in _names(target):
                state[name] = False

    def block(statements, state):
        """The state after `statements`, or None when they never fall through (return, raise)."""
        for statement in statements:
            state = step(statement, state)
            if state is None:
                return None
        return state

    def loop(statement, state, head):
        entry = dict(state)
        for _ in range(len(bindings) + 2):  # states only lose names: this settles quickly
            inner = dict(entry)
            for expression in head:
                read(expression, inner)
            if isinstance(statement, (ast.For, ast.AsyncFor)):
                assign(statement.target, False, inner)
            after = block(statement.body, inner)
            merged = _merge(state, after)
            if merged == entry:
                break
            entry = merged
        return _merge(block(statement.orelse, dict(entry)), entry)

    def step(statement, state):
        state = dict(state)
        if isinstance(statement, ast.Assign):
            read(statement.value, state)
            dataset = surely(statement.value, state)
            for target in statement.targets:
                assign(target, dataset, state)
        elif isinstance(statement, ast.AnnAssign):
            if statement.value is not None:
                read(statement.value, state)
                assign(statement.target, surely(statement.value, state), state)
        elif isinstance(statement, ast.AugAssign):
            read(statement.value, state)
            read(statement.target, state)
            assign(statement.target, False, state)
        elif isinstance(statement, (ast.Return, ast.Raise)):
            for child in ast.iter_child_nodes(statement):
                read(child, state)
            return None
        elif isinstance(statement, ast.If):
            read(statement.test, state)
            return _merge(block(statement.body, state), block(statement.orelse, state))
        elif isinstance(statement, (ast.For, ast.AsyncFor)):
            read(statement.iter, state)
            return loop(statement, state, [])
        elif isinstance(statement, ast.While):
            read(statement.test, state)
            return loop(statement, state, [statement.test])
        elif isinstance(statement, ast.Try):
            after = block(statement.body, state)
            handler_entry = dict(state)
            for name in _bound_in(statement.body):
                handler_entry[name] = False
            ends = [block(statement.orelse, after) if after is not None else None]
            for handler in statement.handlers:
                entry = dict(handler_entry)
                if handler.type is not None:
                    read(handler.type, entry)
                if handler.name:
                    entry[handler.name] = False
                ends.append(block(handler.body, entry))
            end = None
            for candidate in ends:
                end = _merge(end, candidate)
            final = block(statement.finalbody, end if end is not None else handler_entry)
            return final if end is not None else None
        elif isinstance(statement, (ast.With, ast.AsyncWith)):
            for item in statement.items:
                read(item.context_expr, state)
                if item.optional_vars is not None:
                    assign(item.optional_vars, False, state)
            return block(statement.body, state)
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for child in statement.decorator_list:
                read(child, state)
            if isinstance(statement, ast.ClassDef):
                for child in statement.bases + statement.keywords:
                    read(child, state)
            else:
                for default in statement.args.defaults + statement.args.kw_defaults:
                    if default is not None:
                        read(default, state)
            state[statement.name] = False
        else:  # Expr, Assert, Delete, Import, Global, Pass, Break, Continue, ...
            read(statement, state)
            for name in _bound_in([statement]):
                state[name] = False
        return state

    if isinstance(scope, ast.Lambda):
        read(scope.body, state)
    else:
        block(scope.body, state)
    return {node_id for node_id, surely in found.items() if surely}


def _names(target):
    """The plain names a binding target binds."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _names(element)]
    if isinstance(target, ast.Starred):
        return _names(target.value)
    return []


def _bound_in(statements):
    """Every name the statements bind (not inside nested scopes)."""
    holder = ast.parse("")
    holder.body = list(statements)
    return set(scope_bindings(holder))


def _merge(first, second):
    """Where two paths meet: a name is a dataset only when it is one on both (None: no path)."""
    if first is None:
        return None if second is None else dict(second)
    if second is None:
        return dict(first)
    return {name: True for name in first if first[name] and second.get(name, False)}
