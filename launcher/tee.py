"""`--tee RANKS`: chosen ranks' raw output on the console, `[rank N]` before each line, decoded safely."""
import os


def parse_ranks(spec, world_size):
    """'0,3' or '0-3' or 'all' -> a set of global ranks; None when not given."""
    if not spec:
        return set()
    if spec == "all":
        return set(range(world_size))
    from launcher.devices import parse_list
    return set(parse_list(spec, "--tee"))


class LogTee:
    """Follows one rank's log file from an offset and hands back whole lines with a prefix."""

    def __init__(self, rank, path):
        self.prefix = "[rank %d] " % rank
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self._partial = b""

    def poll(self, final=False):
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(1 << 20)
        except OSError:
            chunk = b""
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        return [self.prefix + line.rstrip(b"\r").decode("utf-8", "replace") for line in lines]
