"""One clear line for the failures TensorFlow reports from deep inside a step.

Why: a corrupt image (with --bad-images stop) or a dead peer reaches the trainer as a long TensorFlow
error (an assertion's data, or `UnavailableError ... /job:worker/replica:0/task:1 ... Connection reset by
peer`) that names neither the file nor the rank a person should look at. These functions read the error's
type name and message and return the line to show instead (or None: leave the error as it is); the
trainer keeps the original message and traceback in error.json. Pure: strings in, strings out.
"""
import re

from train.shm_allreduce import MARK as SHM_MARK

BAD_IMAGE_MARK = "Unreadable or corrupt image:"      # data.robust.apply_policy, bad_images="stop"
TOO_MANY_BAD_MARK = "Too many unreadable or corrupt images"  # data.robust, bad_images="skip"
LABEL_RANGE_MARK = "label out of range"               # data.pipeline._records_of
# Errors a collective op raises when its peer is gone: the connection fails, or nothing comes back
# within the collective timeout (the op's own timeout, or the session's operation timeout on TF 1.15).
LOST_PEER_TYPES = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError",
                   "InternalError")
LOST_PEER_HINTS = ("Connection reset", "Socket closed", "connection refused", "Connection refused",
                   "failed to connect", "Failed to connect", "unavailable", "Unavailable", "timed out",
                   "Timed out", "Deadline", "deadline", "collective", "Collective", "peer", "Peer",
                   "/job:")
TASK_PATTERN = re.compile(r"/job:[A-Za-z0-9_-]+/replica:\d+/task:(\d+)")
# The shared-memory allreduce's own errors (train/shm_allreduce.py) reach the trainer as UnknownError.
SHM_PATTERN = re.compile(re.escape(SHM_MARK) + r": [^\n]*?rank (\d+)")
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")


def assertion_fields(message, mark):
    """The bracketed values that follow `mark` in a tf.debugging.Assert message, in order."""
    index = message.find(mark)
    if index < 0:
        return []
    rest = message[index + len(mark):]
    rest = rest.split("\n", 1)[0]
    return [value.strip() for value in _BRACKETED.findall(rest)]


def data_failure_line(message):
    """The one line for a data failure inside a step (a bad image, a label out of range), or None."""
    if BAD_IMAGE_MARK in message:
        fields = assertion_fields(message, BAD_IMAGE_MARK)
        name = fields[0] if fields else "(file name not in the error)"
        return ("unreadable or corrupt image: %s; remove or replace it (list every bad file with: "
                "python -m data --check DATA_PATH), or train with --bad-images skip" % name)
    if TOO_MANY_BAD_MARK in message:
        fields = assertion_fields(message, TOO_MANY_BAD_MARK)
        counted = " (%s of %s read)" % (fields[0], fields[2]) if len(fields) >= 3 else ""
        latest = " the latest: %s;" % fields[4] if len(fields) >= 5 else ""
        return ("too many unreadable or corrupt images%s;%s check the dataset with: python -m data --check "
                "DATA_PATH" % (counted, latest))
    if LABEL_RANGE_MARK in message:
        head = message[message.find(LABEL_RANGE_MARK):].split("\n", 1)[0]
        head = head.split("]", 1)[0].rstrip(":").strip()
        fields = assertion_fields(message, head)
        where = " (label %s in %s)" % (fields[0], fields[2]) if len(fields) >= 3 else ""
        return ("TFRecord %s%s; check --label-offset (TF-Slim ImageNet records need 1) and --num-classes"
                % (head, where))
    return None


def lost_peer_line(type_name, message, rank, peers, timeout=None):
    """The one line for a collective that failed because a peer died or became unreachable, or None.

    `peers` is LAUNCH_PEERS as a list (task index = rank). The rank is the task the message names when
    it is not this rank's; with two ranks it can only be the other one.
    """
    if len(peers) < 2:
        return None
    shm = SHM_MARK in message
    if not shm and (type_name not in LOST_PEER_TYPES or not any(hint in message for hint in LOST_PEER_HINTS)):
        return None
    named = SHM_PATTERN.findall(message) if shm else TASK_PATTERN.findall(message)
    other = [task for task in (int(t) for t in named) if task != rank]
    if other:
        lost = other[0]
    elif len(peers) == 2:
        lost = 1 - rank
    else:
        lost = None
    if type_name == "DeadlineExceededError" or (shm and "timed out" in message):
        how = "no reply within the %scollective timeout" % ("%gs " % timeout if timeout else "")
    else:
        how = "the connection failed"
    if lost is not None and 0 <= lost < len(peers):
        who = "rank %d (%s)" % (lost, peers[lost])
    else:
        who = "a peer rank (one of %s)" % ", ".join(peers)
    return ("lost contact with %s during a collective (%s): that rank died or is unreachable; see its "
            "log and error.json" % (who, how))
