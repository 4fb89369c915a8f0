"""The suite's own layout: every test_*.py file holds tests (helpers live in tests/helpers/ and
tests/workers/, which pytest does not collect), and what tests/helpers/ offers is not defined again."""
import ast
import glob
import os

from helpers import ROOT

# names tests/helpers/__init__.py defines, with the spellings their copies used to have
SHARED = {"ROOT": "ROOT", "REPO": "ROOT", "free_port": "free_port_run", "free_ports": "free_ports",
          "records": "records"}


def suite_modules():
    return sorted(glob.glob(os.path.join(ROOT, "tests", "test_*.py")))


def top_level_names(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update((target.id, node) for target in node.targets if isinstance(target, ast.Name))
    return names


def test_every_test_file_holds_tests():
    empty = [os.path.basename(path) for path in suite_modules()
             if not [name for name in top_level_names(path) if name.startswith("test_")]]
    assert not empty, "no tests in %s: move helpers to tests/helpers/" % empty


def test_shared_helpers_are_imported_not_copied():
    copies = ["%s: %s (use helpers.%s)" % (os.path.basename(path), name, SHARED[name])
              for path in suite_modules() for name, node in top_level_names(path).items()
              if name in SHARED and not isinstance(node, ast.ImportFrom)]
    assert not copies, copies


def test_the_longest_first_order_names_real_files():
    """conftest.LONGEST_FIRST orders files for the xdist workers; a renamed file must be renamed there too."""
    import conftest
    missing = [path for path in conftest.LONGEST_FIRST if not os.path.isfile(os.path.join(ROOT, path))]
    assert not missing and len(set(conftest.LONGEST_FIRST)) == len(conftest.LONGEST_FIRST)
