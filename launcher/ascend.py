"""The rank table of an Ascend job: a given one (--rank-table, RANK_TABLE_FILE, the scheduler's path), waited
for while the scheduler still writes it, or one built for this host's devices. Uses the rank_table package."""
import os
import socket
import sys
import time

import rank_table
from launcher.errors import LaunchError
from rank_table import build, device_ips, devices, host_ip, validate

FROM_FLAG, FROM_ENV, FROM_SCHEDULER = "--rank-table", "RANK_TABLE_FILE", "scheduler"


def table_source(args, environ):
    """(path or None to build one, where it came from), in this order: --rank-table; --hccn-conf (a table is
    built: a RANK_TABLE_FILE left in the environment must not silently win over an explicit flag);
    RANK_TABLE_FILE; the scheduler's mount path (when it exists)."""
    scheduler_paths = tuple(validate.SCHEDULER_TABLE_PATHS)
    if args.get("rank_table"):
        path = args["rank_table"]       # the scheduler's mount path named (a Kubernetes pod) is still its
        return path, FROM_SCHEDULER if path in scheduler_paths else FROM_FLAG
    if args.get("hccn_conf"):
        return None, "--hccn-conf"
    if environ.get("RANK_TABLE_FILE", "").strip():
        path = environ["RANK_TABLE_FILE"].strip()
        return path, FROM_SCHEDULER if path in scheduler_paths else FROM_ENV
    for path in scheduler_paths:
        if os.path.exists(path):
            return path, FROM_SCHEDULER
    return None, None


def table_path(args, environ):
    """The rank table to use, or None to build one (see table_source)."""
    return table_source(args, environ)[0]


def source_text(path, kind, environ):
    """Where a table came from and how to use another, for its errors and the start notice."""
    if kind == FROM_FLAG:
        return "rank table %s (from --rank-table)" % path, "fix it or give another --rank-table FILE"
    if kind == FROM_ENV:
        return ("rank table %s (from RANK_TABLE_FILE)" % path,
                "fix it, give --rank-table FILE, or unset RANK_TABLE_FILE to build one for --devices "
                "(--hccn-conf FILE to take the device IPs from a file)")
    how = "give --rank-table FILE to use another, or --table-wait S to wait longer"
    if environ.get("RANK_TABLE_FILE", "").strip() == path:
        return "rank table %s (the scheduler's, from RANK_TABLE_FILE)" % path, how
    return "rank table %s (the scheduler's mount path)" % path, how


def start_notice(args, environ):
    """The line telling which table the job uses and what overrides it, or None."""
    path, kind = table_source(args, environ)
    if kind == "--hccn-conf" and environ.get("RANK_TABLE_FILE", "").strip():
        return ("--hccn-conf given: building the rank table for --devices; RANK_TABLE_FILE=%s is ignored "
                "(give --rank-table FILE to use a file)" % environ["RANK_TABLE_FILE"].strip())
    if path and kind != FROM_FLAG:
        where, how = source_text(path, kind, environ)
        return "%s; to use another: %s" % (where, how.replace("fix it, ", "").replace("fix it or ", ""))
    return None


class _WaitNotice:
    """Tells the user the launcher waits for the scheduler's rank table: at once, then every 15 s."""

    def __init__(self, every=15.0):
        self.every = every
        self.last = None

    def __call__(self, message=None):
        now = time.time()
        if self.last is None or now - self.last >= self.every:
            self.last = now
            sys.stderr.write("launcher: %s\n" % (message or "waiting for the rank table"))
            sys.stderr.flush()


DEFAULT_TABLE_WAIT = 600.0
HCCN_CONF = "/etc/hccn.conf"


def choose_chip(flag, detected):
    """The chip whose device rules apply: --chip, else the detected one, else 910A.

    Only reached with the npu backend; a host where no chip is detected (``--backend npu`` forced, e.g. to
    prepare a job elsewhere) gets the stricter 910A rules, as `python -m rank_table` assumes too.
    """
    return flag or detected or "910A"


def table_wait(args, kind):
    """Seconds to wait for a table that is missing, half-written or "initializing": only a scheduler's table
    is waited for by default (it is written while the job starts); a table the user gives is used as it is
    unless --table-wait asks for a wait."""
    if args.get("table_wait") is not None:
        return args["table_wait"]
    return DEFAULT_TABLE_WAIT if kind == FROM_SCHEDULER else 0.0


# The rank_table package's flags in its messages, as the launcher spells them (every message names only
# flags that exist where it is shown).
LAUNCHER_WORDS = (
    ("raise --wait", "raise --table-wait"), ("(--wait SECONDS)", "(--table-wait SECONDS)"),
    ("pass --device-count if it has more", "check npu-smi info and ASCEND_RT_VISIBLE_DEVICES"),
    ("(pass --device-count if the server has more)", "(check npu-smi info on that server)"),
    ("(pass --chip or --device-count if the server has more)", "(pass --chip 910B if the server has more)"),
    ("pass --server-ip", "pass --server-id"), ("--visible-devices / ", ""),
)


def in_launcher_words(message):
    for theirs, ours in LAUNCHER_WORDS:
        message = message.replace(theirs, ours)
    return message


def resolve(args, facts, hccn_conf=None, detect_chip=None):
    """(table, local server entry, source path or None): load and check a given table, or build one."""
    try:
        told = args.get("chip") or (detect_chip or devices.detect_chip)()
        chip = choose_chip(told, None)
        path, kind = table_source(args, facts["environ"])
        visible = facts.get("ascend_visible") or None
        if path:
            # a pod knows its UID / node IP / pod IP (downward API env): it finds its server with them, and
            # a finished table without this pod (the previous run's, after a RestartJob) is waited for
            identity = validate.PodIdentity.from_env(facts["environ"])
            addresses = [facts["hostname"]] + list(facts["addresses"])
            wait = table_wait(args, kind)
            where, how = source_text(path, kind, facts["environ"])
            if not os.path.exists(path) and not wait:
                raise LaunchError("%s does not exist; %s (if a scheduler writes it later, add --table-wait S "
                                  "to wait for it)" % (where, how.replace("fix it, ", "").replace(
                                      "fix it or ", "")))
            # the chip given or detected; else the table tells (hardware_type, 16-device servers) or 910A
            for_pod = validate.table_for_pod(identity, addresses, scheduler=kind == FROM_SCHEDULER)
            try:
                table = validate.load_table(path, wait_timeout=wait, poll_interval=1.0,
                                            on_wait=_WaitNotice(), chip=told,
                                            device_count=_host_device_count(facts), accept=for_pod)
            except rank_table.RankTableError as error:
                hint = "" if wait or kind == FROM_SCHEDULER else \
                    " (if a scheduler is still writing it, add --table-wait S)"
                raise LaunchError("%s: %s%s; %s"
                                  % (where, in_launcher_words(str(error)), hint, how)) from None
            server = validate.find_local_server(table, server_id=args.get("server_id"),
                                                node_rank=args.get("node_rank"),
                                                addresses=addresses, identity=identity)
            if args.get("devices"):
                logical = devices.parse_device_spec(args["devices"], facts.get("ascend_count") or
                                                    devices.device_count_for(table.chip))
                physical = devices.logical_to_physical(logical, visible) if visible else logical
                validate.check_matches_devices(server, physical)
            return table, server, os.path.abspath(path)
        count = facts.get("ascend_count") or 8
        logical = devices.parse_device_spec(args.get("devices") or "0-%d" % (count - 1), count)
        physical = devices.logical_to_physical(logical, visible) if visible else logical
        check_physical_legal(logical, physical, chip)
        conf = args.get("hccn_conf") or hccn_conf
        ips = device_ips.read_device_ips(physical, conf or HCCN_CONF, use_hccn_tool=not args.get("hccn_conf"))
        host = args.get("server_id") or server_ip(facts)
        table = build.build_table([(host, [(device, ips[device]) for device in physical])])
        return table, table["server_list"][0], None  # the one server built here
    except rank_table.RankTableError as error:
        raise LaunchError(in_launcher_words(str(error))) from None


def _host_device_count(facts):
    """Devices this host shows (the highest physical id + 1), so a table may use all of them; None if none."""
    visible = facts.get("ascend_visible") or []
    return max(visible) + 1 if visible else None


def check_physical_legal(logical, physical, chip):
    """The 910A half rules are about PHYSICAL ids: check them after mapping, naming both when they differ."""
    try:
        devices.check_legal(physical, chip)
    except rank_table.RankTableError as error:
        if list(logical) == list(physical):
            raise
        raise rank_table.RankTableError("%s [--devices %s are logical ids = physical %s under %s]"
                                        % (error, devices.format_devices(logical),
                                           devices.format_devices(physical), devices.VISIBLE_ENV)) from None


def write_built_table(table, path):
    """Write a table this launcher built (rank_table.build.write_table)."""
    build.write_table(table, path)


def server_ip(facts):
    """This host's server_id in a table built here: a real address, never loopback (rank_table.host_ip)."""
    try:
        named = socket.gethostbyname(facts["hostname"])
    except (OSError, TypeError):
        named = None
    return host_ip.choose_server_ip(named, facts["addresses"], host_ip.default_route_address(), "--server-id")
