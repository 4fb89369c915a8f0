"""The launch plan: arguments + facts about the host (+ the rank table on Ascend) -> one spec per local rank.

Pure: it reads nothing and starts nothing, so that every decision the launcher makes is unit-tested here.
The result is a JSON-able dict, written as output/launch.json and used by the supervisor as it is.
"""
import hashlib
import os

from launcher import cores as cores_mod
from launcher import devices as devices_mod
from launcher import envrules, ports
from launcher.errors import LaunchError

TRAINER_STALL_TIMEOUT = 1800.0   # NPU graph compilation can take many minutes before the first step record
DEFAULT_GRACE_PERIOD = 10.0
DEFAULT_COLLECTIVE_TIMEOUT = 600.0
LOCALHOST = "127.0.0.1"


def resolve_backend(requested, facts):
    """auto -> npu when Ascend devices are present, else gpu when CUDA devices are, else cpu."""
    if requested and requested != "auto":
        return requested
    if facts.get("ascend_count"):
        return "npu"
    if facts.get("gpu_visible"):
        return "gpu"
    return "cpu"


def numeric_job_id(text):
    """A 10-digit JOB_ID derived from ``text`` (digits, no leading 0, as the Ascend docs ask)."""
    digest = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16)
    return str(1000000000 + digest % 9000000000)


def table_job_id(table):
    """The same JOB_ID on every server of a multi-server table: derived from the table's contents."""
    parts = []
    for server in table_servers(table):
        for device in server["devices"]:
            parts.append("%s/%s/%s/%s" % (server["server_id"], device["device_id"], device["device_ip"],
                                          device["rank_id"]))
    return numeric_job_id("|".join(sorted(parts)))


def _field(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def table_servers(table):
    """A rank table (a RankTable object, or HCCL JSON with server_list/device) as plain dicts, ids as ints."""
    servers = []
    raw = _field(table, "servers", None) or _field(table, "server_list", None) or []
    for server in raw:
        entries = _field(server, "devices", None) or _field(server, "device", None) or []
        devices = [{"device_id": int(_field(d, "device_id")), "device_ip": _field(d, "device_ip"),
                    "rank_id": int(_field(d, "rank_id"))} for d in entries]
        servers.append({"server_id": str(_field(server, "server_id")), "host_ip": _field(server, "host_ip"),
                        "container_ip": _field(server, "container_ip"),
                        "devices": sorted(devices, key=lambda d: d["rank_id"])})
    return servers


def make_plan(args, facts, table=None, local_server=None):
    """The whole launch plan (see module doc). ``args``: parsed CLI options as a dict.

    ``facts``: environ, hostname, addresses, allowed_cpus, numa_nodes, ascend_count, ascend_visible,
    gpu_visible, ports_in_use, python, pid, time, cwd; after a rendezvous also ``rendezvous``:
    {"hosts": every node's address in node order, "port": the master port}.
    ``table``/``local_server``: the Ascend rank table and this host's server entry in it (found by the
    caller with rank_table.validate.find_local_server).
    """
    backend = resolve_backend(args.get("backend"), facts)
    custom = bool(args.get("command"))
    if custom and args.get("passthrough"):
        raise LaunchError("unknown option(s) %s: with -- CMD, put the worker's options after the command"
                          % " ".join(args["passthrough"]))
    if not custom and not args.get("model"):
        raise LaunchError("no --model given: pass --model NAME (see --list-models) or a command after --")
    if backend == "npu":
        layout = _npu_layout(args, facts, table, local_server)
    else:
        layout = _collective_layout(args, facts, backend)
    output_dir = os.path.normpath(os.path.join(facts["cwd"], args.get("output_dir") or "output"))
    trainer = args.get("trainer")
    given_ckpt = getattr(trainer, "checkpoint_dir", None) if trainer is not None else None
    checkpoint_dir = os.path.normpath(os.path.join(facts["cwd"], given_ckpt)) if given_ckpt else \
        os.path.join(output_dir, "checkpoints")
    node_dir = output_dir
    if layout["nnodes"] > 1:
        node_dir = os.path.join(output_dir, "node%d" % layout["node_rank"])
    local_size = len(layout["local"])
    table_file = os.path.join(node_dir, "rank_table.json") if backend == "npu" else None
    allowed = facts.get("allowed_cpus") or []
    bind = args.get("bind_cores", "on") == "on"
    core_sets = cores_mod.split_cores(allowed, local_size, facts.get("numa_nodes")) if bind else \
        [[] for _ in range(local_size)]
    unbound_threads = cores_mod.threads_per_worker(len(allowed), local_size)
    drop = envrules.hazards(backend, facts.get("environ", {}))
    stall = args.get("stall_timeout")
    if stall is None:
        stall = 0.0 if custom else TRAINER_STALL_TIMEOUT
    ranks = []
    for local_rank, entry in enumerate(layout["local"]):
        device = str(entry["label"])
        rank_dir = os.path.join(node_dir, device)
        threads = len(core_sets[local_rank]) or unbound_threads
        env = {
            "RANK_ID": str(entry["rank"]), "RANK_SIZE": str(layout["world_size"]), "JOB_ID": layout["job_id"],
            "DEVICE_ID": str(entry["device_id"]), "LAUNCH_BACKEND": backend,
            "LAUNCH_OUTPUT_DIR": output_dir, "LAUNCH_RANK_DIR": rank_dir,
            "LAUNCH_CHECKPOINT_DIR": checkpoint_dir,
            "LAUNCH_METRICS_FILE": os.path.join(rank_dir, "metrics.jsonl"),
            "LAUNCH_ERROR_FILE": os.path.join(rank_dir, "error.json"),
            "LAUNCH_LOCAL_RANK": str(local_rank), "LAUNCH_LOCAL_SIZE": str(local_size),
            "LAUNCH_NODE_RANK": str(layout["node_rank"]), "LAUNCH_NNODES": str(layout["nnodes"]),
            "LAUNCH_INTRA_OP_THREADS": str(threads), "LAUNCH_INTER_OP_THREADS": str(threads),
            "LAUNCH_RESTART": "0", "PYTHONUNBUFFERED": "1",
        }
        env.update(entry["env"])
        if table_file:
            env["RANK_TABLE_FILE"] = table_file
        if custom:
            env.update(torchrun_env(entry["rank"], local_rank, local_size, layout, args))
        ranks.append({
            "rank": entry["rank"], "local_rank": local_rank, "device": device, "rank_dir": rank_dir,
            "log_path": os.path.join(rank_dir, "train_%s.log" % device),
            "metrics_file": env["LAUNCH_METRICS_FILE"], "error_file": env["LAUNCH_ERROR_FILE"],
            "env_file": os.path.join(rank_dir, "rank.env"),
            "run_script": os.path.join(rank_dir, "run_%s.sh" % device),
            "argv": _worker_argv(args, facts), "env": env, "cores": core_sets[local_rank],
        })
    model = args.get("model")
    return {
        "job_id": layout["job_id"], "backend": backend, "world_size": layout["world_size"],
        "nnodes": layout["nnodes"], "node_rank": layout["node_rank"], "local_size": local_size,
        "output_dir": output_dir, "node_dir": node_dir,
        "checkpoint_dir": checkpoint_dir, "tensorboard_dir": os.path.join(output_dir, "tensorboard"),
        "rank_table": table_file, "cwd": facts["cwd"], "peers": layout.get("peers"),
        "dropped_env": [name for name, _ in drop],
        "warnings": ["dropped %s from the workers' environment: %s" % (name, why) for name, why in drop],
        "worker": "command" if custom else "trainer",
        "model": model, "batch_size": args.get("batch_size"), "trainer": None,
        "network": args.get("network") or model or command_name(args["command"]),
        "case": args.get("case") or "acc",
        "stall_timeout": float(stall), "grace_period": float(_default(args.get("grace_period"),
                                                                      DEFAULT_GRACE_PERIOD)),
        "max_restarts": int(args.get("max_restarts") or 0), "bind_cores": bind,
        "ranks": ranks,
    }


def torchrun_env(rank, local_rank, local_size, layout, args):
    """The variables torchrun gives its workers, so that a PyTorch / torch_npu script started with `-- CMD`
    runs as under torchrun (torch.distributed's env:// init reads MASTER_ADDR, MASTER_PORT, WORLD_SIZE,
    RANK). Rank 0 serves the store on MASTER_PORT: on cpu/gpu its LAUNCH_PEERS port (free, the command is
    not the TF trainer); on Ascend --master-port or a port derived from the job id (the same on every
    server)."""
    addr, port = layout["master"]
    return {
        "MASTER_ADDR": addr, "MASTER_PORT": str(port),
        "WORLD_SIZE": str(layout["world_size"]), "RANK": str(rank), "LOCAL_RANK": str(local_rank),
        "LOCAL_WORLD_SIZE": str(local_size), "GROUP_RANK": str(layout["node_rank"]),
        "GROUP_WORLD_SIZE": str(layout["nnodes"]), "ROLE_NAME": "default", "ROLE_RANK": str(rank),
        "ROLE_WORLD_SIZE": str(layout["world_size"]), "TORCHELASTIC_RUN_ID": layout["job_id"],
        "TORCHELASTIC_MAX_RESTARTS": str(int(args.get("max_restarts") or 0)),
        "TORCHELASTIC_RESTART_COUNT": "0",
    }


def _split_peer(peer):
    host, _, port = peer.rpartition(":")
    return host.strip("[]"), int(port)


def command_name(command):
    """A Network name for a custom command: `python tools/train_x.py` -> train_x."""
    words = [word for word in command if not word.startswith("-")]
    name = os.path.basename(words[0]) if words else "worker"
    if name.startswith("python") and len(words) > 1:
        name = os.path.basename(words[1])
    return os.path.splitext(name)[0] or "worker"


def _default(value, fallback):
    return fallback if value is None else value


def trainer_args(args):
    """The built-in trainer's options: every option the launcher does not take itself, as the user gave
    them (the launcher has checked them with the trainer's own parser)."""
    return list(args.get("passthrough") or [])


def _worker_argv(args, facts):
    if args.get("command"):
        return list(args["command"])
    return [facts["python"], "-m", "train"] + trainer_args(args)


def local_workers(args, facts, backend):
    """cpu/gpu: (label, physical id) of each local worker from --devices (gpu: indices into the visible)."""
    spec = args.get("devices")
    if backend == "gpu":
        visible = facts.get("gpu_visible") or []
        return devices_mod.gpu_devices(spec or "0-%d" % max(0, len(visible) - 1), visible)
    return [(index, index) for index in devices_mod.cpu_workers(spec or "1")]


def _collective_layout(args, facts, backend):
    """cpu/gpu: local workers, this host's place among the hosts, and the peers every host derives alike."""
    pairs = local_workers(args, facts, backend)
    met = facts.get("rendezvous")
    hosts, node_rank = _met_hosts(args, met) if met else _hosts(args, facts)
    nnodes = len(hosts)
    local_size = len(pairs)
    world = nnodes * local_size
    if args.get("job_id"):
        job_id = str(args["job_id"])
    elif nnodes > 1:
        job_id = numeric_job_id("%s|%d|%s" % (",".join(hosts), local_size, args.get("master_port")))
    else:
        job_id = numeric_job_id("%s|%s|%s" % (facts.get("hostname"), facts.get("pid"), facts.get("time")))
    if met:
        base = ports.rendezvous_base(met["port"], ports.ranks_on_busiest_host(hosts, local_size))
    else:
        base = ports.choose_base_port(job_id, local_size, args.get("master_port"),
                                      facts.get("ports_in_use") or (), single_host=nnodes == 1)
    peers = ports.peer_list(hosts, local_size, base)
    timeout = _default(args.get("collective_timeout"), DEFAULT_COLLECTIVE_TIMEOUT)
    local = []
    for local_rank, (label, physical) in enumerate(pairs):
        env = {"LAUNCH_PEERS": ",".join(peers), "LAUNCH_COLLECTIVE_TIMEOUT": "%g" % timeout}
        env["CUDA_VISIBLE_DEVICES"] = str(physical) if backend == "gpu" else ""
        local.append({"rank": node_rank * local_size + local_rank, "label": label,
                      "device_id": physical if backend == "gpu" else label, "env": env})
    return {"job_id": job_id, "world_size": world, "nnodes": nnodes, "node_rank": node_rank,
            "local": local, "peers": peers, "master": _split_peer(peers[0])}


def _met_hosts(args, met):
    """(hosts in node order, this node's rank) as a rendezvous agreed them (launcher/rendezvous.py).

    Two nodes may share an address (both on one host); their ranks then get different ports.
    """
    hosts = list(met["hosts"])
    node_rank = args.get("node_rank")
    if node_rank is None or not 0 <= node_rank < len(hosts):
        raise LaunchError("internal: the rendezvous gave %d host(s) but this node's rank is %s"
                          % (len(hosts), node_rank))
    return hosts, node_rank


def _hosts(args, facts):
    """(hosts in node order, this host's node rank) from --hosts / --nnodes / --node-rank / --master-addr."""
    nnodes = args.get("nnodes")
    hosts = [h.strip() for h in (args.get("hosts") or "").split(",") if h.strip()]
    if len(hosts) == 1 and "{node}" in hosts[0]:
        if not nnodes:
            raise LaunchError("--hosts %s has a {node} pattern: add --nnodes N" % hosts[0])
        hosts = [hosts[0].replace("{node}", str(index)) for index in range(nnodes)]
    if not hosts:
        if nnodes and nnodes > 1:
            raise LaunchError("--nnodes %d needs every host's address (each worker connects to all others): "
                              "add --node-rank N and --master-addr HOST (a rendezvous), or --hosts h1,h2,... "
                              "or --hosts 'name-{node}.domain'" % nnodes)
        hosts = [args.get("master_addr") or LOCALHOST]
    if nnodes and nnodes != len(hosts):
        raise LaunchError("--nnodes %d but --hosts lists %d host(s); make them agree" % (nnodes, len(hosts)))
    if len(set(hosts)) != len(hosts):
        raise LaunchError("--hosts lists a host twice; list each host once")
    if args.get("master_addr") and len(hosts) > 1 and args["master_addr"] != hosts[0]:
        raise LaunchError("--master-addr %s is not the first of --hosts (%s); node 0 is the master"
                          % (args["master_addr"], hosts[0]))
    node_rank = args.get("node_rank")
    if node_rank is None:
        if len(hosts) == 1:
            node_rank = 0
        else:
            mine = set([facts.get("hostname")] + list(facts.get("addresses") or []))
            matches = [index for index, host in enumerate(hosts) if host in mine]
            if len(matches) != 1:
                raise LaunchError("cannot tell which of --hosts is this host: add --node-rank N")
            node_rank = matches[0]
    if not 0 <= node_rank < len(hosts):
        raise LaunchError("--node-rank %d is outside 0-%d" % (node_rank, len(hosts) - 1))
    return hosts, node_rank


def _npu_layout(args, facts, table, local_server):
    """Ascend: this server's devices from the rank table, with the table's global rank ids."""
    if table is None or local_server is None:
        raise LaunchError("internal: the Ascend plan needs the rank table and this server's entry")
    servers = table_servers(table)
    mine = table_servers({"servers": [local_server]})[0]
    node_rank = [s["server_id"] for s in servers].index(mine["server_id"])
    world = sum(len(s["devices"]) for s in servers)
    visible = facts.get("ascend_visible") or []
    local = []
    for device in mine["devices"]:
        physical = device["device_id"]
        logical = visible.index(physical) if physical in visible else physical
        env = {"ASCEND_DEVICE_ID": str(logical), "DEVICE_INDEX": str(device["rank_id"])}
        local.append({"rank": device["rank_id"], "label": logical, "device_id": physical, "env": env})
    job_id = str(args["job_id"]) if args.get("job_id") else table_job_id(table)
    first = servers[0]
    master_addr = LOCALHOST if len(servers) == 1 else (first.get("host_ip") or first["server_id"])
    master_port = ports.choose_base_port(job_id, 1, args.get("master_port"), facts.get("ports_in_use") or (),
                                         single_host=len(servers) == 1)
    return {"job_id": job_id, "world_size": world, "nnodes": len(servers), "node_rank": node_rank,
            "local": local, "master": (master_addr, master_port)}
