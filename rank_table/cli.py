"""`python -m rank_table`: build a rank table (default), `validate FILE`, or `merge A.json B.json -o OUT`.

Every user mistake is one line on stderr and exit code 2; nothing already written is replaced silently.
"""
import argparse
import sys

from rank_table import build, device_ips, devices, host_ip, validate
from rank_table.errors import RankTableError
from rank_table.schema import parse_table

USAGE_ERROR = 2
COMMANDS = ("build", "validate", "merge")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2) like every other mistake."""

    def error(self, message):
        raise RankTableError("%s (see %s --help)" % (message, self.prog))


def _common(parser):
    parser.add_argument("--chip", choices=devices.CHIPS,
                        help="chip whose device rules apply (default: detected with npu-smi or "
                             "/dev/davinci*; 910A when none is found)")
    parser.add_argument("--device-count", type=int, default=None, metavar="N",
                        help="devices per server (default: the chip's, 8 on 910A, 16 on 910B/A3)")


def _parsers():
    build_parser = _Parser(prog="python -m rank_table",
                           description="Build an HCCL rank table (template 1, version 1.0) as MindSpore's "
                                       "hccl_tools.py does, with checks. Other commands: validate, merge.")
    build_parser.add_argument("--devices", required=True,
                              help="device ids: 0-7, 0,1,2,3, 0-3,6 or 4 (logical ids when devices are "
                                   "remapped with --visible-devices / ASCEND_RT_VISIBLE_DEVICES); "
                                   "their order is the rank order")
    build_parser.add_argument("--server-ip", help="this server's id in the table (default: the IP of the "
                                                  "host name, never loopback)")
    build_parser.add_argument("--hccn-conf", help="file with address_<device>=<ip> lines; when given, it is "
                                                  "used instead of hccn_tool (default: hccn_tool, then "
                                                  "/etc/hccn.conf)")
    build_parser.add_argument("--no-hccn-tool", action="store_true", help="read IPs from the file only")
    build_parser.add_argument("--server", action="append", default=[], metavar="SERVER_ID=HCCN_CONF",
                              help="several servers: one per option, each with its own hccn.conf; the same "
                                   "--devices on each; rank ids continue across servers in this order")
    build_parser.add_argument("--visible-devices",
                              help="physical ids this container sees, in logical order (default: "
                                   "$ASCEND_RT_VISIBLE_DEVICES); --devices then holds logical ids")
    build_parser.add_argument("-o", "--output", help="table file (default: hccl_<N>p_<ids>_<server>.json as "
                                                     "hccl_tools.py names it)")
    build_parser.add_argument("--force", action="store_true", help="replace an existing different file")
    _common(build_parser)

    validate_parser = _Parser(prog="python -m rank_table validate",
                              description="Check a rank table as HCCL reads it (waiting while it is "
                                          "\"initializing\" if --wait is given).")
    validate_parser.add_argument("file", nargs="?",
                                 help="table to check (default: $RANK_TABLE_FILE, then %s)"
                                      % ", ".join(validate.SCHEDULER_TABLE_PATHS))
    validate_parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                                 help="wait this long for a missing or \"initializing\" table (default 0)")
    validate_parser.add_argument("--poll", type=float, default=validate.DEFAULT_POLL_INTERVAL,
                                 metavar="SECONDS", help="seconds between checks while waiting")
    _common(validate_parser)

    merge_parser = _Parser(prog="python -m rank_table merge",
                           description="Merge one-server tables into one table; rank ids continue across "
                                       "servers in the order given (like merge_hccl.py, with string ids).")
    merge_parser.add_argument("files", nargs="+", help="tables to merge, in server order")
    merge_parser.add_argument("-o", "--output", required=True, help="merged table file")
    merge_parser.add_argument("--force", action="store_true", help="replace an existing different file")
    _common(merge_parser)
    return {"build": build_parser, "validate": validate_parser, "merge": merge_parser}


def _chip(args, say, table_tells=False):
    """The chip from --chip, else detected, else (building) 910A said aloud, or (reading) None: the table
    then tells (hardware_type, super-pod fields, device ids beyond 7) or 910A applies."""
    if args.chip:
        say("chip: %s (--chip)" % args.chip)
        return args.chip
    detected = devices.detect_chip()
    if detected:
        say("chip: %s (detected; --chip overrides)" % detected)
        return detected
    if table_tells:
        return None
    say("chip: 910A (assumed: no Ascend device found here; pass --chip 910B for Atlas A2)")
    return "910A"


def _device_count(args, chip):
    """--device-count, else the chip's number of devices per server."""
    return args.device_count or devices.device_count_for(chip)


def _host_ip():
    """This server's id: never loopback (rank_table.host_ip)."""
    return host_ip.server_ip("--server-ip")


def _server_sources(args):
    """[(server_id, hccn_conf, use_hccn_tool)] from --server options or the single-server flags."""
    if args.server:
        if args.server_ip or args.hccn_conf:
            raise RankTableError("--server replaces --server-ip and --hccn-conf; give servers only with "
                                 "--server")
        sources = []
        for item in args.server:
            server_id, sep, conf = item.partition("=")
            if not sep or not server_id.strip() or not conf.strip():
                raise RankTableError("--server %r: write SERVER_ID=HCCN_CONF, e.g. --server 10.0.0.1=a.conf"
                                     % item)
            sources.append((server_id.strip(), conf.strip(), False))
        return sources
    conf = args.hccn_conf or device_ips.DEFAULT_HCCN_CONF
    use_tool = not args.hccn_conf and not args.no_hccn_tool
    return [(args.server_ip or _host_ip(), conf, use_tool)]


def run_build(args, say):
    chip = _chip(args, say)
    count = _device_count(args, chip)
    logical = devices.parse_device_spec(args.devices, count)
    visible = devices.visible_devices(flag=args.visible_devices, device_count=count)
    physical = devices.logical_to_physical(logical, visible)
    sources = _server_sources(args)
    devices.check_legal(physical, chip, server_count=len(sources))
    servers = []
    for server_id, conf, use_tool in sources:
        ips = device_ips.read_device_ips(physical, hccn_conf=conf, use_hccn_tool=use_tool)
        servers.append((server_id, [(device, ips[device]) for device in physical]))
    table = build.build_table(servers)
    if visible is not None:
        say("devices: logical %s = physical %s (visible devices %s); the table holds physical ids"
            % (devices.format_devices(logical), devices.format_devices(physical),
               devices.format_devices(visible)))
    for entry in table["server_list"]:
        for device in entry["device"]:
            note = ""
            if visible is not None:
                note = " (logical %d)" % logical[physical.index(int(device["device_id"]))]
            say("rank %s: server %s device %s%s ip %s" % (device["rank_id"], entry["server_id"],
                                                          device["device_id"], note, device["device_ip"]))
    if args.output:
        output = args.output
    elif len(servers) == 1:
        output = build.default_table_name(physical, servers[0][0])
    else:
        output = "hccl_%ds_%dp.json" % (len(servers), len(servers) * len(physical))
    path = build.write_table(table, output, overwrite=args.force)
    say("wrote %s (%d server(s), %d ranks); use it as RANK_TABLE_FILE"
        % (path, len(servers), len(servers) * len(physical)))
    return 0


def run_validate(args, say):
    path = args.file or validate.find_scheduler_table()
    if not path:
        raise RankTableError("no rank table given: pass FILE, set RANK_TABLE_FILE, or mount %s"
                             % validate.SCHEDULER_TABLE_PATHS[0])
    chip = _chip(args, say, table_tells=True)
    table = validate.load_table(path, wait_timeout=args.wait, poll_interval=args.poll, chip=chip,
                                on_wait=lambda message: say(message), device_count=args.device_count)
    if chip is None:
        say("chip: %s (%s; --chip overrides)" % (table.chip, "no Ascend device found here, 910A"
                                                 if table.chip_reason == "assumed" else
                                                 "the table says so: " + table.chip_reason))
    say("%s: OK, template %d%s, %d server(s), %d ranks" % (
        path, table.template, " (version %s)" % table.version if table.version else " (group_list)",
        len(table.servers), table.rank_size))
    for line in table.describe():
        say("  " + line)
    return 0


def run_merge(args, say):
    chip = _chip(args, say, table_tells=True)
    tables = [validate.load_table(path, chip=chip, device_count=args.device_count) for path in args.files]
    merged = build.merge_tables(tables)
    parse_table(merged, source="merged table", chip=chip or tables[0].chip, device_count=args.device_count)
    path = build.write_table(merged, args.output, overwrite=args.force)
    say("wrote %s (%s server(s), %d ranks)" % (path, merged["server_count"],
                                              sum(len(s["device"]) for s in merged["server_list"])))
    return 0


def main(argv=None):
    """Run the CLI; returns the exit code (2 for a user's mistake, with one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)

    def say(line):
        print(line, flush=True)

    command = argv.pop(0) if argv and argv[0] in COMMANDS else "build"
    try:
        args = _parsers()[command].parse_args(argv)
        if args.device_count is not None and args.device_count < 1:
            raise RankTableError("--device-count must be at least 1")
        runner = {"build": run_build, "validate": run_validate, "merge": run_merge}[command]
        return runner(args, say)
    except RankTableError as err:
        sys.stderr.write("rank_table: error: %s\n" % err)
        return USAGE_ERROR
