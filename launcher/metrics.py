"""Reading the workers' metrics.jsonl files as they grow: whole lines only, torn or foreign lines skipped."""
import json
import os


class MetricsTail:
    """Follows one metrics file from a byte offset; keeps the records of this attempt."""

    def __init__(self, path, offset=0):
        self.path = path
        self.offset = offset
        self.records = []
        self._partial = b""

    def poll(self):
        """Read what was appended since the last call; return the new records."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        fresh = []
        for line in lines:
            record = parse_line(line)
            if record is not None:
                fresh.append(record)
        self.records.extend(fresh)
        return fresh

    def last(self, event):
        for record in reversed(self.records):
            if record.get("event") == event:
                return record
        return None

    def all(self, event):
        return [record for record in self.records if record.get("event") == event]


def parse_line(line):
    """One JSON object, or None for an empty, torn or non-object line."""
    line = line.strip()
    if not line:
        return None
    try:
        record = json.loads(line.decode("utf-8", "replace") if isinstance(line, bytes) else line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def is_number(value):
    """A real int or float in a record (not a bool, not NaN): what report, progress and picture use."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def last_change(path):
    """Modification time of a file, or None when it does not exist yet."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def read_error_file(path):
    """The worker's error.json as a dict, or None (missing or unreadable)."""
    try:
        with open(path, "rb") as handle:
            record = parse_line(handle.read())
    except OSError:
        return None
    return record


def tail_lines(path, count=20, max_bytes=65536):
    """The last ``count`` lines of a log file, decoded safely (bad bytes replaced)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:]


def run_records(records):
    """The records of one run across its resumes and restarts, in order.

    A metrics file keeps growing while a run is resumed (--resume auto or PATH, --max-restarts); each
    process announces where it starts (`phase` train with start_step). Steps after that start were logged by
    a process that died before its next checkpoint: they are done again, so their records are dropped.
    """
    kept = []
    for record in records:
        if record.get("event") == "phase" and record.get("phase") == "train" and \
                is_number(record.get("start_step")):
            start = record["start_step"]
            kept = [r for r in kept if r.get("event") not in ("train", "eval") or
                    not is_number(r.get("step")) or r["step"] <= start]
        kept.append(record)
    return kept


def read_records(path):
    """Every record of one metrics.jsonl (torn or foreign lines skipped); [] when it is missing."""
    try:
        with open(path, "rb") as handle:
            return [record for record in map(parse_line, handle) if record is not None]
    except OSError:
        return []
