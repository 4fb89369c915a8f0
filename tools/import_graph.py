"""The import graph of the project's own modules, and its cycles (AST only: nothing is imported).

Why: a cycle (a imports b, b imports a, even inside a function) makes the import order matter and hides
which module owns what; the gate (tools.check_imports) keeps them from coming back. Every import counts,
wherever it sits in the file.
"""
import ast
import os

from tools.project_files import python_files


def module_names(root):
    """{dotted module name: relative path} for every .py file inside a top-level package of ``root``."""
    found = {}
    for rel in python_files(root):
        parts = rel.replace(os.sep, "/")[:-3].split("/")
        if len(parts) < 2 or not os.path.isfile(os.path.join(root, parts[0], "__init__.py")):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = rel
    return found


def _imported(node, module, is_package):
    """Dotted names an import statement in ``module`` refers to (absolute and relative)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + ["%s.%s" % (base, alias.name) for alias in node.names]


def import_graph(root):
    """{module: set of project modules it imports} (a `from pkg import mod` edge points at pkg.mod)."""
    modules = module_names(root)
    graph = {}
    for module, rel in modules.items():
        with open(os.path.join(root, rel), "rb") as handle:
            tree = ast.parse(handle.read(), filename=rel)
        is_package = rel.endswith("__init__.py")
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [name for name in _imported(node, module, is_package) if name in modules]
                # `from pkg import mod`: the edge is to pkg.mod; to pkg only when nothing more precise matched
                precise = [name for name in names if "." in name and name.rsplit(".", 1)[0] in names]
                edges.update(precise or names)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph):
    """Every strongly connected group of two or more modules, each as a sorted list (Tarjan, iterative)."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def cycle_path(graph, group):
    """One concrete loop through ``group``: [a, b, ..., a] (for the gate's message)."""
    members = set(group)
    start = group[0]
    path, seen = [start], {start}
    node = start
    while True:
        nexts = sorted(graph[node] & members)
        if start in nexts and len(path) > 1:
            return path + [start]
        fresh = [name for name in nexts if name not in seen]
        if not fresh:
            return path + [nexts[0]]
        node = fresh[0]
        path.append(node)
        seen.add(node)
