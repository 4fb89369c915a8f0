"""The one way to write a file that a reader must never see half-written (temp file + rename).

Why: the launcher, a resuming rank, a scheduler or a second run may read launch.json, summary.json,
error.json, checkpoint metadata or a rank table at any moment; a crash or a full disk mid-write must leave
either the old file or the new one. The temp file sits in the target's directory (same filesystem, so the
rename is atomic), is named `.<name>.tmp-XXXX` (hidden; data.convert cleans such leftovers) and gets the
permissions a plain open() would have given.
"""
import json
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text, binary=False, fsync=False):
    """Write ``text`` (or bytes with binary=True) to ``path`` atomically; OSError leaves no temp file."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(prefix=".%s.tmp-" % os.path.basename(path), dir=folder)
    try:
        with os.fdopen(handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as out:
            out.write(text)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path


def json_text(data, indent=2):
    """The project's JSON file format: sorted keys, indented, one trailing newline."""
    return json.dumps(data, indent=indent, sort_keys=True) + "\n"


def write_json(path, data, indent=2):
    """``data`` as a JSON file (json_text), written atomically."""
    return write_text(path, json_text(data, indent))
