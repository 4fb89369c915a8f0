"""The rank table of an Ascend job: a given one (--rank-table, RANK_TABLE_FILE, the scheduler's path), waited
for while the scheduler still writes it, or one built for this host's devices. Uses the rank_table package."""
import os
import sys
import time

import rank_table
from launcher.errors import LaunchError
from rank_table import build, device_ips, devices, validate


def table_path(args, environ):
    """The rank table to use, or None to build one: --rank-table, RANK_TABLE_FILE, a scheduler path."""
    if args.get("rank_table"):
        return args["rank_table"]
    if environ.get("RANK_TABLE_FILE"):
        return environ["RANK_TABLE_FILE"]
    for path in validate.SCHEDULER_TABLE_PATHS:
        if os.path.exists(path):
            return path
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


def waits_for_missing(path, args, scheduler_paths):
    """A missing table is waited for when the user asked for a wait or the path is a scheduler's mount."""
    return args.get("table_wait") is not None or path in scheduler_paths


def resolve(args, facts, hccn_conf=None, detect_chip=None):
    """(table, local server entry, source path or None): load and check a given table, or build one."""
    try:
        told = args.get("chip") or (detect_chip or devices.detect_chip)()
        chip = choose_chip(told, None)
        path = table_path(args, facts["environ"])
        visible = facts.get("ascend_visible") or None
        if path:
            # a pod knows its UID / node IP / pod IP (downward API env): it finds its server with them, and
            # a finished table without this pod (the previous run's, after a RestartJob) is waited for
            identity = validate.PodIdentity.from_env(facts["environ"])
            addresses = [facts["hostname"]] + list(facts["addresses"])
            wait = args.get("table_wait")
            wait = DEFAULT_TABLE_WAIT if wait is None else wait
            if not os.path.exists(path) and not waits_for_missing(path, args, validate.SCHEDULER_TABLE_PATHS):
                raise LaunchError("rank table %s does not exist; fix --rank-table or RANK_TABLE_FILE (if a "
                                  "scheduler writes it later, add --table-wait S to wait for it)" % path)
            # the chip given or detected; else the table tells (hardware_type, 16-device servers) or 910A
            for_pod = validate.table_for_pod(identity, addresses,
                                             scheduler=path in validate.SCHEDULER_TABLE_PATHS)
            table = validate.load_table(path, wait_timeout=wait, poll_interval=1.0,
                                        on_wait=_WaitNotice(), chip=told,
                                        device_count=_host_device_count(facts), accept=for_pod)
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
        host = args.get("server_id") or _first_ipv4(facts["addresses"]) or facts["hostname"]
        table = build.build_table([(host, [(device, ips[device]) for device in physical])])
        return table, _only_server(table), None
    except rank_table.RankTableError as error:
        raise LaunchError(str(error).replace("raise --wait", "raise --table-wait")) from None


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


def _only_server(table):
    servers = table.get("server_list") if isinstance(table, dict) else getattr(table, "servers", None)
    return servers[0]


def _first_ipv4(addresses):
    for address in addresses:
        if "." in address and not address.startswith("127."):
            return address
    return None
