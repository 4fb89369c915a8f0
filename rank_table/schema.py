"""Checking a rank-table dict (as HCCL reads it) and turning it into a small ``RankTable`` object.

Read: template 1 ("version": "1.0", server_list), version "1.2" (Atlas A3 super-pod: server_list plus
super_pod_list and super_device_id), and template 2 (group_list / instance_list, no version key) with or
without rank_id (without: ranks follow instance order, then device order inside an instance, as HCCL
numbers them). Refused by name: "2.0" (rank_list of later chips). The chip's rules (device count per
server, legal device sets) come from the caller, else from the table (hardware_type, super-pod fields,
device ids beyond 7), else 910A.
"""
import collections
import ipaddress
import re

from rank_table.devices import (
    CHIP_DEVICE_COUNT,
    MAX_DEVICE_COUNT,
    check_legal,
    check_same_count,
    chip_from_hardware_type,
)
from rank_table.errors import RankTableError, TableNotReady

Device = collections.namedtuple("Device", "device_id device_ip rank_id")
Device.__doc__ = "One device of a server: physical id (int), IP (str; None in one-server tables), rank (int)."

READ_VERSIONS = ("1.0", "1.2")
NEWER_VERSIONS = {
    "2.0": "the rank_list format of later chips (Atlas 350 / 910A5)",
}
# A number in a table is a short run of ASCII digits: "٣" or "²" pass str.isdigit() but no HCCL parser reads
# them, and a 5,000-digit id is an attack, not a rank.
_ASCII_INT = re.compile(r"^[0-9]{1,9}$")


class Server:
    """One server entry: its id, optional host/container IPs, its devices and its index in the table."""

    def __init__(self, server_id, devices, index, host_ip=None, container_ip=None, hardware_type=None):
        self.server_id = server_id
        self.devices = devices
        self.index = index
        self.host_ip = host_ip
        self.container_ip = container_ip
        self.hardware_type = hardware_type

    @property
    def device_ids(self):
        """Physical device ids in table order."""
        return [device.device_id for device in self.devices]

    @property
    def rank_ids(self):
        """Global rank ids in table order."""
        return [device.rank_id for device in self.devices]

    def __repr__(self):
        return "Server(%r, devices=%r)" % (self.server_id, self.device_ids)


class RankTable:
    """A checked rank table: ``servers`` in table order, ``rank_size``, ``template`` (1 or 2), ``version``,
    ``chip`` whose rules were applied and ``chip_reason`` (why that chip)."""

    def __init__(self, servers, template, version, source, chip=None, chip_reason=None):
        self.servers = servers
        self.template = template
        self.version = version
        self.source = source
        self.chip = chip
        self.chip_reason = chip_reason
        self.rank_size = sum(len(server.devices) for server in servers)

    def describe(self):
        """One line per server for humans."""
        lines = []
        for server in self.servers:
            lines.append("server %s: devices %s -> ranks %s" % (
                server.server_id, ",".join(str(d) for d in server.device_ids),
                ",".join(str(r) for r in server.rank_ids)))
        return lines


def _fail(source, message):
    raise RankTableError("%s: %s" % (source, message))


def json_repr(value):
    """Short JSON-like text of a value for messages (long values cut)."""
    text = repr(value) if not isinstance(value, str) else '"%s"' % value
    return text if len(text) <= 40 else text[:37] + "..."


def _string(source, where, value, field):
    """The string ``value``; numbers, lists and missing values raise with the field's location."""
    if value is None:
        _fail(source, "%s has no %s" % (where, field))
    if not isinstance(value, str):
        shown = value if isinstance(value, (int, float)) and len(repr(value)) < 20 else "..."
        _fail(source, "%s.%s is %s (%s); HCCL expects every value as a string, e.g. \"%s\" "
              "(rebuild the table with python -m rank_table)"
              % (where, field, json_repr(value), type(value).__name__, shown))
    return value


def _int_string(source, where, value, field):
    text = _string(source, where, value, field)
    if not _ASCII_INT.match(text):
        _fail(source, "%s.%s is %s; it must be a non-negative integer of at most 9 ASCII digits written "
              "as a string" % (where, field, json_repr(text)))
    return int(text)


def _ip_string(source, where, value, field):
    text = _string(source, where, value, field)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        _fail(source, "%s.%s is %s, not an IP address" % (where, field, json_repr(text)))
    return text


def _optional_ip(source, where, entry, field):
    """An IP field that may be absent; an empty string is absent too (Ascend Operator writes host_ip "")."""
    value = entry.get(field)
    if value is None or value == "":
        return None
    return _ip_string(source, where, value, field)


def _check_status(source, data):
    status = data.get("status")
    if status == "initializing":
        raise TableNotReady("%s: status is \"initializing\": the scheduler has not finished the table yet; "
                            "wait for \"completed\" (--wait SECONDS)" % source)
    if status != "completed":
        _fail(source, "status is %s; a usable table says \"status\": \"completed\""
              % (json_repr(status) if status is not None else "missing"))


def _device(source, where, entry, with_rank=True):
    """A Device with its ids checked for syntax; the range of device_id is checked once the chip is known."""
    if not isinstance(entry, dict):
        _fail(source, "%s is %s, not an object with device_id and device_ip" % (where, type(entry).__name__))
    device_id = _int_string(source, where, entry.get("device_id"), "device_id")
    device_ip = _optional_ip(source, where, entry, "device_ip")
    if "super_device_id" in entry:
        _int_string(source, where, entry.get("super_device_id"), "super_device_id")
    rank_id = _int_string(source, where, entry.get("rank_id"), "rank_id") if with_rank else None
    return Device(device_id, device_ip, rank_id)


def _server_id(source, where, entry):
    server_id = _string(source, where, entry.get("server_id"), "server_id")
    if not server_id.strip():
        _fail(source, "%s.server_id is empty; give each server a unique id (its IP)" % where)
    return server_id


def _servers_v1(source, data):
    count = _int_string(source, "table", data.get("server_count"), "server_count")
    server_list = data.get("server_list")
    if not isinstance(server_list, list) or not server_list:
        _fail(source, "server_list is missing or empty; a table needs at least one server")
    if count != len(server_list):
        _fail(source, "server_count is \"%d\" but server_list has %d servers; make them agree"
              % (count, len(server_list)))
    servers = []
    for index, entry in enumerate(server_list):
        where = "server_list[%d]" % index
        if not isinstance(entry, dict):
            _fail(source, "%s is not an object" % where)
        server_id = _server_id(source, where, entry)
        extras = {key: _optional_ip(source, where, entry, key) for key in ("host_ip", "container_ip")}
        hardware = entry.get("hardware_type")
        extras["hardware_type"] = hardware if isinstance(hardware, str) else None
        devices = entry.get("device")
        if not isinstance(devices, list) or not devices:
            _fail(source, "%s (server %s) has no device list" % (where, server_id))
        parsed = [_device(source, "%s.device[%d]" % (where, i), dev) for i, dev in enumerate(devices)]
        servers.append(Server(server_id, parsed, index, **extras))
    return servers


def _super_pods(source, data, servers):
    """Version 1.2: super_pod_list (optional) names each server once, and only servers of server_list."""
    pods = data.get("super_pod_list")
    if pods is None:
        return 0
    if not isinstance(pods, list):
        _fail(source, "super_pod_list is %s, not a list of super pods" % type(pods).__name__)
    known = set(server.server_id for server in servers)
    seen = set()
    for index, pod in enumerate(pods):
        where = "super_pod_list[%d]" % index
        if not isinstance(pod, dict) or not isinstance(pod.get("server_list"), list):
            _fail(source, "%s needs a super_pod_id and a server_list" % where)
        _int_string(source, where, pod.get("super_pod_id"), "super_pod_id")
        for number, entry in enumerate(pod["server_list"]):
            inner = "%s.server_list[%d]" % (where, number)
            if not isinstance(entry, dict):
                _fail(source, "%s is not an object" % inner)
            server_id = _server_id(source, inner, entry)
            if server_id not in known:
                _fail(source, "%s names server %s, which server_list does not have" % (inner, server_id))
            if server_id in seen:
                _fail(source, "server %s is in two super pods; list each server in one" % server_id)
            seen.add(server_id)
    return len(pods)


def _servers_v2(source, data):
    """Template 2: servers in order of appearance; ranks from rank_id, else instance then device order."""
    groups = data.get("group_list")
    if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict):
        _fail(source, "template 2 (group_list) table with %s groups is not supported; use one group, or "
              "rebuild it as template 1 with python -m rank_table"
              % (len(groups) if isinstance(groups, list) else "no"))
    instances = groups[0].get("instance_list")
    if not isinstance(instances, list) or not instances:
        _fail(source, "template 2 (group_list) table has no instance_list")
    with_rank = [isinstance(i, dict) and i.get("rank_id") is not None for i in instances]
    if any(with_rank) and not all(with_rank):
        where = "group_list[0].instance_list[%d]" % with_rank.index(False)
        _fail(source, "%s has no rank_id while other instances have one; give every instance a rank_id or "
              "none (then ranks follow the instance order)" % where)
    by_server = collections.OrderedDict()
    next_rank = 0
    for index, instance in enumerate(instances):
        where = "group_list[0].instance_list[%d]" % index
        if not isinstance(instance, dict):
            _fail(source, "%s is not an object" % where)
        server_id = _server_id(source, where, instance)
        devices = instance.get("devices")
        if not isinstance(devices, list) or not devices:
            _fail(source, "%s has no \"devices\" list" % where)
        if with_rank[index]:
            if len(devices) != 1:
                _fail(source, "%s has a rank_id and %d devices; an instance with a rank_id holds one device"
                      % (where, len(devices)))
            ranks = [_int_string(source, where, instance.get("rank_id"), "rank_id")]
        else:
            ranks = list(range(next_rank, next_rank + len(devices)))
            next_rank += len(devices)
        for number, (entry, rank) in enumerate(zip(devices, ranks)):
            device = _device(source, "%s.devices[%d]" % (where, number), entry, with_rank=False)
            by_server.setdefault(server_id, []).append(Device(device.device_id, device.device_ip, rank))
    return [Server(server_id, devices, index) for index, (server_id, devices) in enumerate(by_server.items())]


def _chip_for(data, servers, chip, version):
    """(chip, reason): the caller's chip, else what the table says, else 910A."""
    if chip:
        return chip, "given"
    for server in servers:
        told = chip_from_hardware_type(server.hardware_type)
        if told:
            return told, "hardware_type %s" % server.hardware_type
    if version == "1.2" or "super_pod_list" in data or any(
            isinstance(s, dict) and "super_pod_id" in s for s in data.get("server_list") or []
            if isinstance(data.get("server_list"), list)):
        return "910B", "an Atlas A3 super-pod table"
    widest = max(device_id for server in servers for device_id in server.device_ids)
    if widest >= CHIP_DEVICE_COUNT["910A"]:
        return "910B", "device %d: a 16-device server (Atlas A2 Box16 / A3)" % widest
    return "910A", "assumed"


def _check_whole(source, servers, chip, device_count, need_ips):
    ids, ips, ranks = set(), {}, {}
    for server in servers:
        if server.server_id in ids:
            _fail(source, "server %s appears twice; give each server a unique server_id" % server.server_id)
        ids.add(server.server_id)
        if len(set(server.device_ids)) != len(server.device_ids):
            _fail(source, "server %s lists a device twice (%s)" % (
                server.server_id, ",".join(str(d) for d in server.device_ids)))
        for device in server.devices:
            here = "server %s device %d" % (server.server_id, device.device_id)
            if device.device_id >= device_count:
                _fail(source, "%s: device_id %d but a %s server has %d devices (0-%d); use physical ids "
                      "(pass --chip or --device-count if the server has more)"
                      % (here, device.device_id, chip, device_count, device_count - 1))
            if device.device_ip is None:
                if need_ips:
                    _fail(source, "%s has no device_ip; HCCL needs device IPs when a job spans servers "
                          "(hccn_tool -i %d -ip -g shows it)" % (here, device.device_id))
            elif device.device_ip in ips:
                _fail(source, "device IP %s is used twice (%s and %s); every device needs its own IP"
                      % (device.device_ip, ips[device.device_ip], here))
            else:
                ips[device.device_ip] = here
            if device.rank_id in ranks:
                _fail(source, "rank_id %d is used twice (%s and %s); rank ids must be unique"
                      % (device.rank_id, ranks[device.rank_id], here))
            ranks[device.rank_id] = here
    size = len(ranks)
    missing = sorted(set(range(size)) - set(ranks))
    if missing:
        _fail(source, "rank ids must run 0-%d without gaps, but %s %s missing"
              % (size - 1, ",".join(str(r) for r in missing[:8]), "is" if len(missing) == 1 else "are"))
    try:
        check_same_count([s.device_ids for s in servers], ["server %s" % s.server_id for s in servers])
    except RankTableError as err:
        _fail(source, str(err))
    for server in servers:
        try:
            check_legal(server.device_ids, chip, server_count=len(servers))
        except RankTableError as err:
            _fail(source, "server %s: %s" % (server.server_id, err))


def parse_table(data, source="rank table", chip=None, device_count=None):
    """A checked ``RankTable`` from a loaded JSON value; raises ``RankTableError`` (``TableNotReady``
    while the status is "initializing") with one line naming the field and the fix.

    ``chip``: "910A"/"910B" when known (flag or detected); None lets the table tell. ``device_count``:
    devices this host has, when detected (never below the chip's own count); None = the chip's count.
    """
    if not isinstance(data, dict):
        _fail(source, "a rank table is a JSON object, not %s" % type(data).__name__)
    template = 1 if "version" in data else 2 if "group_list" in data else None
    version = data.get("version")
    if template == 1 and version not in READ_VERSIONS:
        name = NEWER_VERSIONS.get(version, "a format this tool does not know") \
            if isinstance(version, str) else "not a string"
        _fail(source, "rank table version %s (%s) is not supported; write \"version\": \"1.0\" (910A/A2) "
              "or \"1.2\" (A3 super pod) (python -m rank_table builds 1.0)" % (json_repr(version), name))
    # A scheduler's table under construction may hold nothing but its status (Huawei's samples start the
    # ConfigMap as {"status": "initializing"}), so the status is judged before the template is required.
    if template is None and data.get("status") != "initializing":
        _fail(source, "not an HCCL rank table: no \"version\" key (template 1) and no \"group_list\" "
              "(template 2)")
    _check_status(source, data)
    super_pods = 0
    if template == 1:
        servers = _servers_v1(source, data)
        if version == "1.2":
            super_pods = _super_pods(source, data, servers)
    else:
        servers = _servers_v2(source, data)
    chip, reason = _chip_for(data, servers, chip, version)
    count = max(device_count or 0, CHIP_DEVICE_COUNT.get(chip, MAX_DEVICE_COUNT))
    # HCCL needs device IPs only between servers (and in 1.2 only between super pods: super_device_id inside)
    need_ips = super_pods > 1 if version == "1.2" else len(servers) > 1
    _check_whole(source, servers, chip, count, need_ips)
    return RankTable(servers, template, version, source, chip=chip, chip_reason=reason)
