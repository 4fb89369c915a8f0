"""Which expressions of a file surely are tf.data datasets, so their method calls can be checked.

Why: `dataset.map(f, deterministic=False)` is fatal on TF 1.15 but the gate sees only the name `map`;
it may judge the arguments only where it is sure the object is a dataset, or it would refuse correct
calls on other objects with a `map` method. Sure means: a tf.data constructor call, a chain of
dataset methods on one, a name that holds one on every path to the line in the same function (or,
for a nested function, in every binding of its enclosing function), or a call of a project function
that returns one on every path. Everything else is of unknown type and is not judged.
"""
import ast

from tools.tf_calls import DATASET, DATASET_STATIC, normalise

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

SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
UNKNOWN = None


def is_dataset(node, known, resolve, returns=None):
    """True when `node` surely evaluates to a tf.data dataset: a tf.data constructor call, a
    dataset-returning method called on a dataset, a name `known(name node)` says is one, a call of a
    project function that `returns(function node)` says always returns one, or a conditional of two
    datasets. `resolve(node)` gives the tf chain of an attribute/name node or None."""
    if isinstance(node, ast.Name):
        return known(node)
    if isinstance(node, ast.IfExp):
        return (is_dataset(node.body, known, resolve, returns)
                and is_dataset(node.orelse, known, resolve, returns))
    if not isinstance(node, ast.Call):
        return False
    chain = resolve(node.func)
    if chain is not None:
        return normalise(chain) in DATASET_CONSTRUCTORS
    func = node.func
    if returns is not None and returns(func):
        return True
    return (isinstance(func, ast.Attribute) and func.attr in DATASET_RETURNING
            and is_dataset(func.value, known, resolve, returns))


def scope_bindings(scope):
    """{name: [value node or UNKNOWN, ...]} for every name `scope` binds itself (nested functions,
    lambdas, classes and comprehensions are their own scopes and are not entered). Kept on the node:
    the gate asks for the same scope's bindings many times."""
    cached = getattr(scope, "_gate_bindings", None)
    if cached is None:
        cached = scope._gate_bindings = _scope_bindings(scope)
    return cached


def _scope_bindings(scope):
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


def dataset_names(scope, inherited, resolve, returns=None):
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
            if not all(is_dataset(value, known, resolve, returns) for value in bindings[name]):
                candidates.discard(name)
                visible.discard(name)
                changed = True
    return visible


def dataset_loads(scope, inherited, resolve, returns=None):
    """(ids of the Name nodes that, where `scope`'s own code reads them, surely hold a dataset;
    whether `scope` is a plain function that surely returns a dataset on every path).

    Flow-sensitive and cautious: a name is a dataset after `name = <dataset expression>` until it is
    bound to anything else; after an if/else, a loop or a try only when it is one on every path.
    `inherited`: the enclosing scope's dataset_names() (a nested function's free variables)."""
    bindings = scope_bindings(scope)
    state = {name: True for name in inherited if name not in bindings}
    found = {}
    returned = []

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
        return is_dataset(value, lambda name: state.get(name.id, False), resolve, returns)

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
            if isinstance(statement, ast.Return):
                returned.append(statement.value is not None and surely(statement.value, state))
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
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                state[(alias.asname or alias.name).split(".")[0]] = False
        elif isinstance(statement, (ast.Global, ast.Nonlocal)):
            for name in statement.names:
                state[name] = False
        else:  # Expr, Assert, Delete, Pass, Break, Continue; newer syntax (match) read cautiously
            read(statement, state)
            if hasattr(statement, "body") or hasattr(statement, "cases"):
                for name in _bound_in([statement]):
                    state[name] = False
        return state

    if isinstance(scope, ast.Lambda):
        read(scope.body, state)
        falls_through = True
    else:
        falls_through = block(scope.body, state) is not None
    gives_dataset = (may_return_dataset(scope) and not falls_through and bool(returned) and all(returned))
    return {node_id for node_id, surely in found.items() if surely}, gives_dataset


def may_return_dataset(function):
    """A cheap first look: an undecorated plain function, no generator, that returns only calls, names
    or conditionals (a function returning anything else never returns a dataset on every path)."""
    if not isinstance(function, ast.FunctionDef) or function.decorator_list:
        return False
    cached = getattr(function, "_gate_may_return", None)
    if cached is None:
        values = []
        cached = True
        for node in _own_nodes(function):
            if isinstance(node, (ast.Yield, ast.YieldFrom)):
                cached = False
            elif isinstance(node, ast.Return):
                values.append(node.value)
        cached = cached and bool(values) and all(isinstance(value, (ast.Call, ast.Name, ast.IfExp))
                                                 for value in values)
        function._gate_may_return = cached
    return cached


def _own_nodes(scope):
    """The nodes of a function's own body, not of the functions, lambdas and classes inside it."""
    stack = list(scope.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, SCOPES):
            stack.extend(ast.iter_child_nodes(node))


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


# ---- scopes of one file, and the project's functions that return datasets ----------------------------
class Scope:
    """A module, class body, function or lambda of one file. Asked only after the whole file is read
    (so tf aliases assigned anywhere in it are known) and after link() (so project functions are)."""

    def __init__(self, node, parent, resolve, module=None):
        self.node, self.parent, self.resolve = node, parent, resolve
        self.module = module if module is not None else parent.module  # the file's ModuleNames
        self._loads = self._names = self._bound = None

    def outer(self):
        """The nearest enclosing scope whose names this one sees (class bodies are skipped)."""
        outer = self.parent
        while outer is not None and isinstance(outer.node, ast.ClassDef):
            outer = outer.parent
        return outer

    def names(self):
        """Names a function nested here may take for datasets."""
        if self._names is None:
            outer = self.outer()
            self._names = dataset_names(self.node, outer.names() if outer else set(), self.resolve,
                                        self.returns)
        return self._names

    def is_dataset(self, node):
        if not isinstance(node, (ast.Name, ast.Call, ast.IfExp)):
            return False
        if isinstance(node, ast.Name):  # quick "no"s, the same the flow analysis would give
            values = scope_bindings(self.node).get(node.id)
            if values is None:
                outer = self.outer()
                if outer is None or node.id not in outer.names():
                    return False
            elif all(value is UNKNOWN for value in values):
                return False
        if self._loads is None:
            outer = self.outer()
            self._loads = dataset_loads(self.node, outer.names() if outer else set(), self.resolve,
                                        self.returns)[0]
        return is_dataset(node, lambda name: id(name) in self._loads, self.resolve, self.returns)

    def local(self, name):
        """Whether `name` is bound here or in an enclosing function (so not the module's name)."""
        scope = self
        while scope is not None and not isinstance(scope.node, ast.Module):
            if scope is self or not isinstance(scope.node, ast.ClassDef):
                if scope._bound is None:
                    scope._bound = set(scope_bindings(scope.node))
                if name in scope._bound:
                    return True
            scope = scope.parent
        return False

    def callee(self, func):
        """The dotted project name a called expression refers to (`pipeline._records_of`,
        `data.file_lists.list_dataset`), or None."""
        parts = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name) or self.local(func.id):
            return None
        base = self.module.names.get(func.id)
        return None if base is None else ".".join([base] + list(reversed(parts)))

    def returns(self, func):
        return self.callee(func) in self.module.project.returning


class Project:
    """The dotted names of the project functions that return a dataset on every path, and the
    ModuleNames (ids) of the files that may hold a dataset at all."""

    def __init__(self):
        self.returning = set()
        self.holding = set()


class ModuleNames:
    """What a file's module-level names refer to in the project: `def f` -> `<module>.f`, `import a.b as
    c` -> `a.b`, `from .x import y` -> `<package>.x.y`; only names bound once at module level."""

    def __init__(self, tree, rel, project):
        self.project = project
        parts = rel[:-3].split("/")
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        self.module = ".".join(parts)
        self.functions = {}
        counts = {name: len(values) for name, values in scope_bindings(tree).items()}
        names = {}
        for statement in tree.body:
            if isinstance(statement, ast.FunctionDef) and not statement.decorator_list:
                names[statement.name] = self.module + "." + statement.name
                self.functions[names[statement.name]] = statement
            elif isinstance(statement, ast.Import):
                for alias in statement.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        names[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(statement, ast.ImportFrom):
                if statement.level:
                    base = package[:len(package) - (statement.level - 1)] if statement.level > 1 else package
                    base = ".".join(base + ([statement.module] if statement.module else []))
                else:
                    base = statement.module
                for alias in statement.names:
                    if alias.name != "*":
                        names[alias.asname or alias.name] = base + "." + alias.name
        self.names = {name: target for name, target in names.items() if counts.get(name) == 1}

    def refers_to(self, dotted_names):
        """Whether a module-level name of this file is, or leads to, one of `dotted_names`."""
        targets = set(self.names.values())
        for dotted in dotted_names:
            parts = dotted.split(".")
            if any(".".join(parts[:i]) in targets for i in range(1, len(parts) + 1)):
                return True
        return False

    def may_hold_datasets(self):
        return id(self) in self.project.holding


def link(files, project):
    """Fill project.returning: the functions (module-level, undecorated, not generators) that return a
    dataset on every path, each judged knowing the others (the largest set that judges itself true).
    `files`: (ModuleNames, its module-level function scopes, whether it calls a tf.data constructor).
    Only files that construct datasets, or refer to a function of such a file, can hold one."""
    holding = [module for module, _, constructs in files if constructs]
    candidates = set()
    while True:
        candidates = {dotted for module in holding for dotted in module.functions}
        more = [module for module, _, _ in files if module not in holding and module.refers_to(candidates)]
        if not more:
            break
        holding.extend(more)
    functions = {}
    for module, scopes, _ in files:
        for scope in scopes:
            dotted = module.module + "." + scope.node.name
            if dotted in candidates and module.functions.get(dotted) is scope.node \
                    and may_return_dataset(scope.node):
                functions[dotted] = scope
    project.returning = set(functions)
    project.holding = set(id(module) for module in holding)
    changed = True
    while changed:
        changed = False
        for dotted in sorted(project.returning):
            scope = functions[dotted]
            if not dataset_loads(scope.node, set(), scope.resolve, scope.returns)[1]:
                project.returning.discard(dotted)
                changed = True
