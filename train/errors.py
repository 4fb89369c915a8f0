"""Errors of the worker, and the error file the launcher's report reads.

Why: a user's mistake must reach the person as one line naming the fix (exit 2), and any failure,
mistake or bug, must leave `error.json` (rank, type, message, traceback) beside the rank's log so the
launcher can name the root cause of a multi-rank failure without reading every log.
"""
import os
import time
import traceback

from contract import atomic

USER_ERROR_EXIT = 2
CRASH_EXIT = 1


class TrainError(Exception):
    """A user's mistake in the trainer's flags or inputs; the message names the fix."""


class StepFailure(Exception):
    """A failure inside a step told in one line (a lost peer; a bad image is a BadData, a user's
    matter). `detail` keeps the original TensorFlow message for error.json."""

    def __init__(self, line, detail=""):
        Exception.__init__(self, line)
        self.detail = detail


class BadData(TrainError):
    """The dataset failed inside a step (a corrupt image with --bad-images stop, a label out of
    range); the line names the file and the fix, `detail` keeps TensorFlow's message."""

    def __init__(self, line, detail=""):
        TrainError.__init__(self, line)
        self.detail = detail


def error_record(rank, exc, with_traceback=True):
    """The error.json object for an exception (pure)."""
    text = ""
    cause = exc.__cause__
    if with_traceback:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    elif cause is not None:  # a translated TensorFlow error: keep where it came from
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    record = {
        "rank": rank,
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": text,
        "time": time.time(),
    }
    if getattr(exc, "detail", ""):
        record["detail"] = exc.detail
        record["cause_type"] = type(cause).__name__ if cause is not None else None
    return record


def write_error_file(path, record):
    """Write the error file atomically (tmp + rename) so the launcher never reads half a file."""
    if not path:
        return
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    atomic.write_json(path, record, indent=1)
