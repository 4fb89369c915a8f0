"""Device ids: parsing specs like "0-3,6", legality per chip, chip detection, logical vs physical ids.

Why: HCCL fails late and opaquely on an illegal device set (a 3-card job on a 910A server, a 4-card job
across the 0-3/4-7 halves) or on logical ids where it expects physical ones. These checks say so up front.
"""
import os
import re
import shutil
import subprocess

from rank_table.errors import RankTableError

DEFAULT_DEVICE_COUNT = 8
CHIPS = ("910A", "910B")
# Devices one server can hold, per chip family: 910A servers have 8; the 910B family covers Atlas A2 (8, or
# 16 on the A2 Box16) and Atlas A3 servers, whose version-1.0 tables list 16 devices (MindIE-LLM docs).
CHIP_DEVICE_COUNT = {"910A": 8, "910B": 16}
MAX_DEVICE_COUNT = max(CHIP_DEVICE_COUNT.values())
VISIBLE_ENV = "ASCEND_RT_VISIBLE_DEVICES"

# npu-smi "Name" column values of the first-generation Ascend 910 (Atlas 800 9000 / 300T): the same
# topology rules as 910A. A bare "910B" is one of these SKUs (MindSpore maps "Ascend910B" to "ascend910");
# Atlas A2 chips are named 910B1..910B4, and Atlas A3 shows "Ascend910" (both: any subset is legal).
_FIRST_GEN_NAMES = ("910A", "910B", "910ProA", "910ProB", "910PremiumA")
_NPU_ROW = re.compile(r"^\|\s*(\d+)\s+(\S+)\s+\|")
_DAVINCI = re.compile(r"^davinci(\d+)$")
_SPEC_ITEM = re.compile(r"^([0-9]{1,6})(?:-([0-9]{1,6}))?$")


def parse_device_spec(spec, device_count=DEFAULT_DEVICE_COUNT, what="--devices"):
    """Device ids of a spec such as "0-7", "0,1,2,3", "0-3,6" or "4", in the user's order.

    Order is kept (it is the rank order of the table); duplicates, negatives, reversed ranges, garbage
    and ids >= ``device_count`` (None: no bound) raise ``RankTableError``. The one device-spec parser:
    launcher.devices reads cpu/gpu --devices and --tee with it too.
    """
    text = "" if spec is None else str(spec).strip()
    if not text:
        raise RankTableError("%s is empty: give device ids such as 0-7, 0,1,2,3 or 0-3,6" % what)
    devices = []
    seen = set()
    for item in text.split(","):
        item = item.strip()
        if item.startswith("-"):
            span = "0-%d" % (device_count - 1) if device_count is not None else "from 0"
            raise RankTableError("%s %r: device ids cannot be negative (%r); use ids %s"
                                 % (what, text, item, span))
        match = _SPEC_ITEM.match(item)
        if not match:
            raise RankTableError("%s %r: %r is not a device id or range; write e.g. 0-7, 0,1,2,3 or 0-3,6"
                                 % (what, text, item))
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise RankTableError("%s %r: range %r is reversed; write %d-%d" % (what, text, item, last, first))
        for device in range(first, last + 1):
            if device_count is not None and device >= device_count:
                raise RankTableError("%s %r: device %d does not exist, this server has %d devices (0-%d); "
                                     "pass --device-count if it has more"
                                     % (what, text, device, device_count, device_count - 1))
            if device in seen:
                raise RankTableError("%s %r: device %d is listed twice; list each device once"
                                     % (what, text, device))
            seen.add(device)
            devices.append(device)
    return devices


def format_devices(devices):
    """Compact text of device ids ("0-3,6"), keeping the given order."""
    parts = []
    start = prev = None
    for device in devices:
        if prev is not None and device == prev + 1:
            prev = device
            continue
        if start is not None:
            parts.append(str(start) if start == prev else "%d-%d" % (start, prev))
        start = prev = device
    if start is not None:
        parts.append(str(start) if start == prev else "%d-%d" % (start, prev))
    return ",".join(parts)


def check_legal(devices, chip, server_count=1):
    """Refuse a per-server device set the chip cannot run collectively (raises ``RankTableError``).

    910A (and the other first-generation 910 SKUs): 1, 2, 4 or 8 devices per server; a 2- or 4-device
    set inside one half, 0-3 or 4-7; 8 means all of 0-7 (CANN docs, "Atlas training series").
    910B: any non-empty subset. ``chip`` None checks only that the set is non-empty and free of repeats.
    With several servers every server uses this same count (see ``check_same_count``).
    """
    devices = list(devices)
    where = "on each of the %d servers" % server_count if server_count > 1 else "on one server"
    if not devices:
        raise RankTableError("no devices given; pass --devices, e.g. --devices 0-7")
    if len(set(devices)) != len(devices):
        raise RankTableError("devices %s repeat an id; list each device once" % format_devices(devices))
    if chip is None or chip == "910B":
        return
    if chip != "910A":
        raise RankTableError("unknown chip %r; use --chip 910A or --chip 910B" % (chip,))
    count = len(devices)
    ids = sorted(devices)
    hint = " (Ascend 910A; pass --chip 910B for Atlas A2 servers)"
    if count not in (1, 2, 4, 8):
        raise RankTableError("%d devices (%s) %s cannot run HCCL on 910A: use 1, 2, 4 or 8 devices%s"
                             % (count, format_devices(devices), where, hint))
    if count == 8 and ids != list(range(8)):
        raise RankTableError("8 devices on 910A means all of 0-7, not %s%s" % (format_devices(devices), hint))
    if count in (2, 4) and not (ids[-1] <= 3 or ids[0] >= 4):
        raise RankTableError("%d devices (%s) span both halves of a 910A server: keep a %d-device job "
                             "inside 0-3 or inside 4-7%s" % (count, format_devices(devices), count, hint))


def check_same_count(device_lists, names=None):
    """Refuse servers that use different numbers of devices (HCCL needs the same count on each)."""
    counts = [len(devices) for devices in device_lists]
    if len(set(counts)) > 1:
        names = names or ["server %d" % index for index in range(len(device_lists))]
        detail = ", ".join("%s has %d" % (name, count) for name, count in zip(names, counts))
        raise RankTableError("servers use different device counts (%s); every server must use the same "
                             "number of devices" % detail)


def chip_from_name(name):
    """"910A" or "910B" for an npu-smi chip name (e.g. "910ProB", "910B3", "Ascend910"); None if unknown."""
    bare = name[len("Ascend"):] if name.startswith("Ascend") and name != "Ascend910" else name
    if bare in _FIRST_GEN_NAMES:
        return "910A"
    if re.match(r"^910B\d", bare) or name == "Ascend910" or bare.startswith("910_93"):
        return "910B"
    return None


def chip_from_hardware_type(value):
    """"910A", "910B" or None for a rank table's ``hardware_type`` (Ascend Operator writes e.g.
    "800I-A2-32G", "800I-A3-64G"). Only names that tell the generation count; a bare "Ascend910" does not."""
    if not isinstance(value, str) or not value.strip():
        return None
    name = value.strip()
    if chip_from_name(name) == "910A" or re.match(r"^(Ascend)?910(Pro|Premium)?A", name):
        return "910A"
    if re.search(r"(^|[^A-Za-z0-9])A[23]([^0-9]|$)|910B|910_93|910C", name.upper()):
        return "910B"
    return None


def device_count_for(chip):
    """Devices per server under ``chip``'s rules (the largest server of that family; 16 when unknown)."""
    return CHIP_DEVICE_COUNT.get(chip, MAX_DEVICE_COUNT)


def _npu_smi_names(npu_smi):
    """Chip names in the NPU rows of `npu-smi info`; empty when the tool is missing or fails."""
    path = shutil.which(npu_smi)
    if not path:
        return []
    try:
        proc = subprocess.run([path, "info"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    names = []
    for line in proc.stdout.splitlines():
        match = _NPU_ROW.match(line)
        if match and not match.group(2).isdigit():
            names.append(match.group(2))
    return names


def count_ascend_devices(dev_dir="/dev"):
    """Number of /dev/davinci<N> device nodes (0 on a machine without Ascend devices)."""
    try:
        entries = os.listdir(dev_dir)
    except OSError:
        return 0
    return sum(1 for entry in entries if _DAVINCI.match(entry))


def davinci_ids(dev_dir="/dev"):
    """Physical ids of the /dev/davinci<N> nodes, sorted. Inside a container they keep their host names
    (ascend-docker-runtime mounts /dev/davinci4..7 for physical 4-7), so their order is the logical order."""
    try:
        entries = os.listdir(dev_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in (_DAVINCI.match(e) for e in entries) if m)


_VISIBLE_ITEM = re.compile(r"^(?:[A-Za-z][A-Za-z0-9]*-)?([0-9]{1,4})(?:-([0-9]{1,4}))?$")


def parse_ascend_visible(value):
    """Physical ids in ASCEND_VISIBLE_DEVICES as ascend-docker-runtime reads it: "4,5", "4-7", or the device
    plugin's names "Ascend910-4,Ascend910-5"; sorted, without repeats. Garbage raises ``RankTableError``."""
    ids = set()
    for item in str(value).split(","):
        item = item.strip()
        match = _VISIBLE_ITEM.match(item)
        if not match:
            raise RankTableError("ASCEND_VISIBLE_DEVICES %r: %r is not a device id, range or name such as "
                                 "Ascend910-4" % (value, item))
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise RankTableError("ASCEND_VISIBLE_DEVICES %r: range %r is reversed" % (value, item))
        ids.update(range(first, last + 1))
    return sorted(ids)


def container_devices(env=None, dev_dir="/dev"):
    """Physical ids of the NPUs this container was given, in logical order: the /dev/davinci<N> nodes,
    else (no nodes visible, e.g. a dry run of the pod's command) ASCEND_VISIBLE_DEVICES; [] if neither."""
    ids = davinci_ids(dev_dir)
    if ids:
        return ids
    env = os.environ if env is None else env
    value = (env.get("ASCEND_VISIBLE_DEVICES") or "").strip()
    return parse_ascend_visible(value) if value else []


def detect_chip(npu_smi="npu-smi", dev_dir="/dev"):
    """"910A", "910B" or None (no Ascend device), from `npu-smi info`, else from /dev/davinci*.

    Device nodes without a readable npu-smi name give "910A": the stricter rules, and the chip this
    project targets; pass --chip to override.
    """
    for name in _npu_smi_names(npu_smi):
        chip = chip_from_name(name)
        if chip:
            return chip
    if count_ascend_devices(dev_dir) > 0:
        return "910A"
    return None


def visible_devices(env=None, flag=None, device_count=DEFAULT_DEVICE_COUNT):
    """Physical ids visible to this process (``flag`` wins over ASCEND_RT_VISIBLE_DEVICES), or None."""
    if flag is not None and str(flag).strip():
        return parse_device_spec(flag, device_count, what="--visible-devices")
    env = os.environ if env is None else env
    value = env.get(VISIBLE_ENV, "")
    if not value.strip():
        return None
    return parse_device_spec(value, device_count, what=VISIBLE_ENV)


def logical_to_physical(logical_ids, visible):
    """Physical ids of logical ids (index into ``visible``); identity when ``visible`` is None."""
    if visible is None:
        return list(logical_ids)
    physical = []
    for logical in logical_ids:
        if logical >= len(visible):
            raise RankTableError("logical device %d is not visible: only %d devices are visible (physical %s "
                                 "= logical 0-%d); use logical ids in --devices"
                                 % (logical, len(visible), format_devices(visible), len(visible) - 1))
        physical.append(visible[logical])
    return physical
