"""Gate 3: TensorFlow (and Keras, and the Ascend adapter) are imported in exactly one place each.

- `tensorflow`, `tf_keras`, `keras`: only in tfcompat/ (it sets TF_USE_LEGACY_KERAS first).
- `npu_bridge`, `hccl`: only in the NPU backend module of train/ (and inside the tests' fake of the adapter,
  tests/fake_npu/, whose two packages stand for the adapter and CANN's hccl).
- launcher/, rank_table/ and contract/ never import tfcompat (the launcher starts without TensorFlow).
- the project's own modules import each other without cycles (tools.import_graph).
"""
import ast
import os
import sys

from tools.import_graph import cycle_path, cycles, import_graph
from tools.project_files import python_files, report

OWNERS = {
    "tensorflow": ("tfcompat/",),
    "tf_keras": ("tfcompat/",),
    "keras": ("tfcompat/",),
    "npu_bridge": ("train/npu_backend.py", "tests/fake_npu/"),
    "hccl": ("train/npu_backend.py", "tests/fake_npu/"),
}
NO_TF_PACKAGES = ("launcher/", "rank_table/", "contract/")
EXEMPT = ("tools/", "tests/test_gates.py")


def imported_roots(tree):
    """(top-level module name, line) for every import statement in a syntax tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def violations(root):
    found = []
    for rel in python_files(root):
        posix = rel.replace(os.sep, "/")
        if posix.startswith(EXEMPT):
            continue
        with open(os.path.join(root, rel), "rb") as handle:
            tree = ast.parse(handle.read(), filename=rel)
        for module, line in imported_roots(tree):
            owners = OWNERS.get(module)
            if owners and not posix.startswith(owners):
                found.append("%s:%d: imports %s directly; only %s may (use `from tfcompat import tf`)"
                             % (posix, line, module, ", ".join(owners)))
            if module == "tfcompat" and posix.startswith(NO_TF_PACKAGES):
                found.append("%s:%d: imports tfcompat; %s must start without TensorFlow"
                             % (posix, line, posix.split("/")[0]))
    graph = import_graph(root)
    for group in cycles(graph):
        found.append("import cycle: %s; move what both need into a module of its own"
                     % " -> ".join(cycle_path(graph, group)))
    return found


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    root = args[0] if args else "."
    return report("check_imports", violations(root), "OK", "forbidden import(s)")


if __name__ == "__main__":
    sys.exit(main())
