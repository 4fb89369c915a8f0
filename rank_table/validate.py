"""Loading an existing rank table (possibly still being written by a scheduler) and finding this host in it.

Why: Kubernetes components (hccl-controller, Ascend Operator) mount a table that starts as
"initializing"; workers must wait for "completed", then start only this server's devices with the rank
ids the table gives them.
"""
import json
import os
import re
import socket
import time

from rank_table.devices import format_devices
from rank_table.errors import RankTableError, TableNotReady
from rank_table.schema import parse_table

RANK_TABLE_ENV = "RANK_TABLE_FILE"
# Where Ascend's Kubernetes components mount the table inside a training container
# (ConfigMap rings-config-<job> or /user/mindx-dl/ranktable/<ns>.<job>/ on the host).
SCHEDULER_TABLE_PATHS = ("/user/serverid/devindex/config/hccl.json",)
DEFAULT_POLL_INTERVAL = 5.0


class _NotYet(RankTableError):
    """The file is missing or not (yet) valid JSON: worth waiting for while a scheduler writes it."""


# hccl-controller refuses tables over 50 MB; a real one is a few hundred bytes per device.
MAX_TABLE_BYTES = 50 * 1024 * 1024
MAX_NUMBER_CHARS = 32


def _refuse_constant(name):
    raise ValueError("%s is not JSON (write a number or a string)" % name)


def _bounded_number(kind):
    def parse(text):
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError("a %d-character number is not a rank-table value" % len(text))
        return kind(text)
    return parse


def decode_table(raw, path):
    """The JSON value of a table's bytes: UTF-8 only, bounded nesting, no NaN/Infinity, no huge numbers.

    Bad bytes raise ``_NotYet`` (a scheduler may be half-way through writing them), with one line naming
    the fault. Deep nesting ends in the parser's RecursionError, turned into the same kind of line."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(raw) > 1 and (raw[0] == 0 or raw[1] == 0)):
        raise _NotYet("%s is UTF-16 text; HCCL reads UTF-8: convert it (iconv -f UTF-16 -t UTF-8) or rebuild "
                      "it with python -m rank_table" % path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _NotYet("%s is not UTF-8 (byte 0x%02x at offset %d); rank tables are UTF-8 JSON: convert it "
                      "or rebuild it with python -m rank_table" % (path, raw[err.start], err.start)) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_number(int),
                          parse_float=_bounded_number(float))
    except RecursionError:
        raise _NotYet("%s nests too deeply to be a rank table; rebuild it with python -m rank_table"
                      % path) from None
    except ValueError as err:
        raise _NotYet("%s is not valid JSON (%s); fix or rebuild it with python -m rank_table"
                      % (path, str(err).splitlines()[0][:200])) from None


def read_bytes(path, limit=MAX_TABLE_BYTES):
    """A table file's bytes; larger than ``limit`` raises without reading it (memory stays bounded)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise RankTableError("rank table %s is %d bytes, over the %d MB limit (hccl-controller's); "
                                     "a real table is a few KB: check the path" % (path, size, limit >> 20))
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise _NotYet("rank table %s does not exist; check the path (or RANK_TABLE_FILE)" % path) from None
    except IsADirectoryError:
        raise RankTableError("rank table %s is a folder; give the table file (hccl.json)" % path) from None
    except OSError as err:
        raise RankTableError("cannot read rank table %s (%s)" % (path, err.strerror or err)) from None
    if len(raw) > limit:
        raise RankTableError("rank table %s grew over the %d MB limit while being read; check the path"
                             % (path, limit >> 20))
    return raw


def read_table(path, chip=None, device_count=None):
    """A checked ``RankTable`` from ``path`` (one attempt, no waiting)."""
    data = decode_table(read_bytes(path), path)
    return parse_table(data, source=path, chip=chip, device_count=device_count)


def load_table(path, wait_timeout=0, poll_interval=DEFAULT_POLL_INTERVAL, on_wait=None, chip=None,
               device_count=None, accept=None):
    """A checked ``RankTable`` from ``path``, waiting up to ``wait_timeout`` seconds for it to be ready.

    While the file is missing, half-written or "initializing", ``on_wait(message)`` is called once per
    poll; after the timeout the last reason is raised as ``RankTableError`` with the time waited.
    ``accept(table)`` may raise ``TableNotReady`` for a finished table that is not for this pod (a previous
    run's, after a restart): that is waited for too.
    """
    start = time.monotonic()
    while True:
        try:
            table = read_table(path, chip=chip, device_count=device_count)
            if accept is not None:
                accept(table)
            return table
        except (_NotYet, TableNotReady) as err:
            waited = time.monotonic() - start
            if waited >= wait_timeout:
                if wait_timeout > 0:
                    raise RankTableError("%s (gave up after waiting %.0f s; raise --wait if the scheduler "
                                         "is slow)" % (err, waited)) from None
                raise RankTableError(str(err)) from None
            if on_wait is not None:
                on_wait("waiting for %s: %s [%.0f of %.0f s]" % (path, err, waited, wait_timeout))
            time.sleep(max(0.0, min(poll_interval, wait_timeout - waited)))


def find_scheduler_table(env=None, paths=SCHEDULER_TABLE_PATHS):
    """The table a scheduler provides: $RANK_TABLE_FILE if set, else the first existing mount path."""
    env = os.environ if env is None else env
    if env.get(RANK_TABLE_ENV, "").strip():
        return env[RANK_TABLE_ENV].strip()
    for path in paths:
        if os.path.exists(path):
            return path
    return None


def local_addresses():
    """This host's IP addresses (every interface, via psutil) plus the address of its hostname."""
    found = set()
    try:
        import psutil
        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family in (socket.AF_INET, socket.AF_INET6):
                    found.add(addr.address.split("%")[0])
    except ImportError:
        pass
    try:
        found.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    return found


_UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class PodIdentity:
    """What a pod knows about itself (downward API env): its UID, its node's IP and its own IP.

    Names the env variables the rendered Volcano Job sets: POD_UID (metadata.uid), XDL_IP (status.hostIP,
    Huawei's name), POD_IP (status.podIP). Empty outside Kubernetes."""

    ENV = {"uid": "POD_UID", "node_ip": "XDL_IP", "pod_ip": "POD_IP"}

    def __init__(self, uid=None, node_ip=None, pod_ip=None):
        self.uid = uid or None
        self.node_ip = node_ip or None
        self.pod_ip = pod_ip or None

    @classmethod
    def from_env(cls, env):
        return cls(**{key: (env.get(name) or "").strip() or None for key, name in cls.ENV.items()})

    def __bool__(self):
        return bool(self.uid or self.node_ip or self.pod_ip)


def _by_pod(table, identity, addresses, scheduler=False):
    """(server, None) when the pod's identity picks one server; (None, reason) when the table is finished
    but not written for this pod (a previous run's, after a RestartJob); (None, None) when it cannot tell.

    Generations: Ascend Operator since mind-cluster 03770c70 writes the pod UID as server_id (and the node
    IP as host_ip); earlier Ascend Operator writes container_ip = the pod IP; hccl-controller writes only
    server_id = the node IP (nothing per pod: that generation resets the table to "initializing" when a
    pod is deleted, which is what a restarted pod waits on). ``scheduler``: the table is the scheduler's
    (mounted for this job), so even a one-server table must name this pod's node."""
    servers = table.servers
    if identity.uid:
        mine = [s for s in servers if s.server_id == identity.uid]
        if mine:
            return mine[0], None
        if any(_UID.match(s.server_id) for s in servers):
            return None, ("%s lists pods %s but not this pod (uid %s): it is a previous run's table"
                          % (table.source, ", ".join(s.server_id for s in servers), identity.uid))
    with_container = [s for s in servers if s.container_ip]
    pod_ips = set([identity.pod_ip] if identity.pod_ip else []) | set(addresses)
    if with_container and identity.pod_ip:
        mine = [s for s in with_container if s.container_ip in pod_ips]
        if len(mine) == 1:
            return mine[0], None
        if not mine:
            known = ", ".join(s.container_ip for s in with_container)
            return None, ("%s has container IPs %s but not this pod's %s: it is a previous run's table"
                          % (table.source, known, identity.pod_ip))
    if identity.node_ip:
        mine = [s for s in servers if identity.node_ip in (s.server_id, s.host_ip)]
        if len(mine) == 1:
            return mine[0], None
        if len(mine) > 1:
            raise RankTableError("several servers of %s are on this node %s (%s) and the table does not say "
                                 "which pod is which; give each pod its own node" % (
                                     table.source, identity.node_ip, ", ".join(s.server_id for s in mine)))
        if (len(servers) > 1 or scheduler) and not (set(s.server_id for s in servers) & pod_ips):
            nodes = ", ".join(s.host_ip or s.server_id for s in servers)
            return None, ("%s lists nodes %s but not this pod's node %s: it is a previous run's table (or "
                          "not this job's)" % (table.source, nodes, identity.node_ip))
    return None, None


def table_for_pod(identity, addresses=(), scheduler=False):
    """An ``accept`` check for ``load_table``: a finished table that is not for this pod is waited for.
    ``scheduler``: the table is at the scheduler's mount path (a user's one-server table may name any
    host)."""
    def accept(table):
        if identity:
            _, stale = _by_pod(table, identity, set(addresses), scheduler)
            if stale:
                raise TableNotReady(stale + "; waiting for the controller to write this run's table")
    return accept


def find_local_server(table, server_id=None, node_rank=None, addresses=None, identity=None):
    """This host's server entry: by ``server_id``, by ``node_rank`` (index in the table), by the pod's
    ``identity`` (PodIdentity: UID, node IP, pod IP; see ``_by_pod``), else by address.

    Addresses (default: ``local_addresses()``) are matched against server_id, host_ip and container_ip.
    A one-server table matches any host when nothing else decides (tables such as ModelZoo's 8p.json
    carry someone else's server_id). No match or several raise ``RankTableError``.
    """
    ids = ", ".join(server.server_id for server in table.servers)
    if server_id is not None:
        for server in table.servers:
            if server.server_id == str(server_id):
                return server
        raise RankTableError("server id %s is not in %s (it has: %s); pass one of those as --server-id"
                             % (server_id, table.source, ids))
    if node_rank is not None:
        if not 0 <= int(node_rank) < len(table.servers):
            raise RankTableError("node rank %s is out of range: %s has %d servers (%s), node ranks 0-%d"
                                 % (node_rank, table.source, len(table.servers), ids, len(table.servers) - 1))
        return table.servers[int(node_rank)]
    if addresses is None:
        addresses = local_addresses()
    addresses = set(addresses)
    if identity:
        server, stale = _by_pod(table, identity, addresses)
        if server is not None:
            return server
        if stale:
            raise RankTableError(stale)
    matches = [server for server in table.servers
               if {server.server_id, server.host_ip, server.container_ip} & addresses]
    if len(matches) == 1:
        return matches[0]
    if not matches and len(table.servers) == 1:
        return table.servers[0]
    if not matches:
        ids_of_pod = (identity.node_ip, identity.pod_ip, identity.uid) if identity else ()
        known = sorted(addresses | set(x for x in ids_of_pod if x))
        raise RankTableError("none of this host's addresses or ids (%s) is a server in %s (%s); pass "
                             "--server-id or --node-rank" % (", ".join(known) or "none found", table.source,
                                                             ids))
    raise RankTableError("several servers of %s match this host (%s); pass --server-id or --node-rank"
                         % (table.source, ", ".join(server.server_id for server in matches)))


def check_matches_devices(table_server, devices):
    """Refuse a table server whose physical devices differ from ``devices`` (order aside)."""
    have = set(table_server.device_ids)
    want = set(devices)
    if have == want:
        return
    parts = []
    if want - have:
        parts.append("--devices asks for %s, which the table lacks" % format_devices(sorted(want - have)))
    if have - want:
        parts.append("the table also has %s" % format_devices(sorted(have - want)))
    raise RankTableError("rank table server %s has devices %s but --devices is %s (%s); drop --devices to "
                         "use the table's devices, or fix the table"
                         % (table_server.server_id, format_devices(table_server.device_ids),
                            format_devices(devices), "; ".join(parts)))
