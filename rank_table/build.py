"""Building HCCL rank tables (template 1, "version": "1.0") and writing them atomically.

The layout, key order and string values are those of MindSpore's hccl_tools.py, so a table built here
equals field by field the one it writes for the same hccn.conf and devices; several servers continue
the rank ids across servers (as merge_hccl.py does, but with string rank ids as Huawei's docs show).
"""
import json
import os

from contract import atomic
from rank_table.errors import RankTableError

VERSION = "1.0"


def build_table(servers):
    """A template-1 rank table dict from ``[(server_id, [(physical_device_id, ip), ...]), ...]``.

    Rank ids run from 0 in server order, then device order. Empty servers, repeated server ids,
    devices or IPs raise ``RankTableError``.
    """
    if not servers:
        raise RankTableError("no servers given: a rank table needs at least one server")
    server_list = []
    seen_servers = set()
    seen_ips = {}
    rank = 0
    for server_id, devices in servers:
        server_id = str(server_id).strip()
        if not server_id:
            raise RankTableError("a server has an empty server id; pass --server-ip")
        if server_id in seen_servers:
            raise RankTableError("server %s is listed twice; give each server once" % server_id)
        seen_servers.add(server_id)
        if not devices:
            raise RankTableError("server %s has no devices; pass --devices" % server_id)
        entries = []
        seen_devices = set()
        for device_id, ip in devices:
            if device_id in seen_devices:
                raise RankTableError("server %s lists device %s twice" % (server_id, device_id))
            seen_devices.add(device_id)
            if ip in seen_ips:
                raise RankTableError("device IP %s is used twice (%s and server %s device %s); every device "
                                     "needs its own IP" % (ip, seen_ips[ip], server_id, device_id))
            seen_ips[ip] = "server %s device %s" % (server_id, device_id)
            entries.append({"device_id": str(device_id), "device_ip": str(ip), "rank_id": str(rank)})
            rank += 1
        server_list.append({"server_id": server_id, "device": entries, "host_nic_ip": "reserve"})
    return {"version": VERSION, "server_count": str(len(server_list)), "server_list": server_list,
            "status": "completed"}


def table_text(table):
    """The JSON text of a table: 4-space indent and key order as hccl_tools.py writes, plus a newline."""
    return json.dumps(table, indent=4) + "\n"


def default_table_name(devices, server_id):
    """hccl_tools.py's file name: hccl_<N>p_<ids joined>_<server id>.json."""
    return "hccl_%dp_%s_%s.json" % (len(devices), "".join(str(device) for device in devices), server_id)


def write_table(table, path, overwrite=False):
    """Write ``table`` to ``path`` atomically (temp file in the same folder, then rename).

    An existing file holding a different table is refused unless ``overwrite``; an identical one is
    left as it is. Returns the absolute path.
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise RankTableError("cannot write %s: folder %s does not exist; create it or choose another -o"
                             % (path, folder))
    if os.path.isdir(path):
        raise RankTableError("cannot write %s: it is a folder; give a file name with -o" % path)
    if os.path.exists(path) and not overwrite:
        try:
            with open(path) as handle:
                existing = json.load(handle)
        except (OSError, ValueError):
            existing = None
        if existing == table:
            return path
        raise RankTableError("%s already exists and holds something else; pass --force to replace it or "
                             "choose another -o" % path)
    try:
        atomic.write_text(path, table_text(table), fsync=True)
    except OSError as err:
        raise RankTableError("cannot write %s (%s)" % (path, err.strerror or err)) from None
    return path


def merge_tables(tables):
    """One table from several ``RankTable`` objects (servers in the given order, ranks renumbered)."""
    servers = []
    for table in tables:
        for server in table.servers:
            ordered = sorted(server.devices, key=lambda device: device.rank_id)
            for device in ordered:
                if device.device_ip is None:
                    raise RankTableError("%s: server %s device %d has no device_ip; a merged table spans "
                                         "servers, so every device needs one (hccn_tool -i %d -ip -g)"
                                         % (table.source, server.server_id, device.device_id,
                                            device.device_id))
            servers.append((server.server_id, [(device.device_id, device.device_ip) for device in ordered]))
    return build_table(servers)
