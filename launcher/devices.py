"""Device lists for the CPU and GPU backends (`--devices 2`, `0-1`, `0,2,3`); Ascend uses rank_table."""
from launcher.errors import LaunchError
from rank_table.devices import parse_device_spec
from rank_table.errors import RankTableError

HINT = "use a count (2), a range (0-7) or a list (0,1,4-5)"


def parse_list(spec, what="--devices"):
    """`0-3,6` -> [0, 1, 2, 3, 6] (sorted); LaunchError for anything else, a duplicate included.

    The rule is rank_table.devices.parse_device_spec's (the one parser), without a device-count bound.
    """
    if not str(spec).strip():
        raise LaunchError("%s is empty: %s" % (what, HINT))
    try:
        return sorted(parse_device_spec(spec, None, what))
    except RankTableError as error:
        raise LaunchError("bad %s" % error) from None


def cpu_workers(spec):
    """CPU: a single number N means N workers (0..N-1); a list or range means one worker per item."""
    text = str(spec).strip()
    if text.isdigit():
        count = int(text)
        if count < 1:
            raise LaunchError("--devices 0 starts no worker: %s" % HINT)
        return list(range(count))
    return parse_list(text)


def gpu_devices(spec, visible):
    """GPU: indices into visible CUDA devices -> (index, physical id) pairs (LaunchError if out of range)."""
    ids = parse_list(spec)
    if not visible:
        raise LaunchError("--backend gpu: no CUDA device is visible; use --backend cpu")
    for index in ids:
        if index >= len(visible):
            raise LaunchError("--devices %s: only %d GPU(s) visible (0-%d); pick devices in that range"
                              % (spec, len(visible), len(visible) - 1))
    return [(index, visible[index]) for index in ids]
