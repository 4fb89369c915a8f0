"""labels.txt: the class index a model was trained with, kept next to its checkpoints.

Why: a class index is only the position of a name in a sorted list; training on one folder and
resuming or evaluating on another with a class more or less silently scrambles every label. The
trainer writes the names once and checks them on resume and evaluation.
"""
import os

from contract import atomic
from data.errors import DataError

FILE_NAME = "labels.txt"


def labels_path(directory):
    return os.path.join(directory, FILE_NAME)


def read_labels(path):
    """Class names from labels.txt: one name per line, or TF-Slim's `index:name` lines (index order)."""
    with open(path) as handle:
        lines = [line.rstrip("\r\n") for line in handle]
    lines = [line for line in lines if line.strip()]
    numbered = {}
    for line in lines:
        head, sep, name = line.partition(":")
        if not sep or not head.strip().isdigit():
            return [line.strip() for line in lines]
        numbered[int(head)] = name.strip()
    if not numbered:
        return []
    return [numbered.get(i, "") for i in range(max(numbered) + 1)]


def write_labels(path, class_names):
    """Write one class name per line, atomically (a reader never sees half a file)."""
    atomic.write_text(path, "".join("%s\n" % name for name in class_names))


def check_labels(path, class_names):
    """Raise DataError (one line) when labels.txt at `path` differs from `class_names`."""
    try:
        saved = read_labels(path)
    except OSError as exc:
        raise DataError("cannot read %s (%s); restore it or start in a fresh output directory"
                        % (path, exc.strerror or exc)) from None
    names = list(class_names)
    if saved == names:
        return
    missing = [name for name in saved if name not in names]
    extra = [name for name in names if name not in saved]
    if missing or extra:
        detail = "missing from the data: %s; new in the data: %s" % (_few(missing), _few(extra))
    else:
        detail = "same names in a different order"
    raise DataError("the dataset's %d classes do not match the %d in %s (%s); use the dataset this model "
                    "was trained on, or a fresh output directory" % (len(names), len(saved), path, detail))


def _few(names, limit=3):
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (" and %d more" % (len(names) - limit) if len(names) > limit else "")
