"""The launch plan: arguments + facts about the host (+ the rank table on Ascend) -> one spec per local rank.

Pure: it reads nothing and starts nothing, so that every decision the launcher makes is unit-tested here.
The result is a Plan record (RankSpec per rank), written as output/launch.json (contract.records.to_json) and
used by the supervisor as it is. The workers' environment is a contract.worker_env.WorkerEnv.
"""
import hashlib
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

from contract.worker_env import WorkerEnv
from contract.worker_env import default as worker_default
from launcher import cores as cores_mod
from launcher import devices as devices_mod
from launcher import envrules, ports
from launcher.errors import LaunchError

TRAINER_STALL_TIMEOUT = 1800.0   # NPU graph compilation can take many minutes before the first step record
DEFAULT_GRACE_PERIOD = 10.0
DEFAULT_COLLECTIVE_TIMEOUT = worker_default("collective_timeout")
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


def server_record(server):
    """One server as a plain dict, ids as ints: a rank_table Server (a table read from a file), or a
    ``server_list`` entry of the template-1 dict this launcher builds (rank_table.build.build_table)."""
    if isinstance(server, dict):  # built here: it names no host or container address
        devices = [{"device_id": int(d["device_id"]), "device_ip": d["device_ip"],
                    "rank_id": int(d["rank_id"])} for d in server["device"]]
        server_id, host_ip, container_ip = server["server_id"], None, None
    else:
        devices = [{"device_id": int(d.device_id), "device_ip": d.device_ip, "rank_id": int(d.rank_id)}
                   for d in server.devices]
        server_id, host_ip, container_ip = server.server_id, server.host_ip, server.container_ip
    return {"server_id": str(server_id), "host_ip": host_ip, "container_ip": container_ip,
            "devices": sorted(devices, key=lambda d: d["rank_id"])}


def table_servers(table):
    """A rank table (a rank_table RankTable, or the template-1 dict built here) as server_record dicts."""
    return [server_record(server) for server in (table["server_list"] if isinstance(table, dict)
                                                 else table.servers)]


class RankSpec(NamedTuple):
    """One local rank: where it writes, what it runs, with which environment and cores."""
    rank: int
    local_rank: int
    device: str
    rank_dir: str
    log_path: str
    metrics_file: str
    error_file: str
    env_file: str
    run_script: str
    argv: List[str]
    env: Dict[str, str]            # contract.worker_env.WorkerEnv.to_env(): what the worker sees
    cores: List[int]


class TrainerChecks(NamedTuple):
    """What the built-in trainer's ranks will do, as the launcher's checks (train.precheck) found it."""
    data: str                      # one line describing the dataset
    data_path: Optional[str]
    synthetic: bool
    data_path_given: bool
    validation: bool               # the data has a validation split
    evaluate: bool                 # ... and the run evaluates it
    total_steps: int
    steps_per_epoch: int
    resume: str                    # --resume: auto, never or a checkpoint path
    resume_step: Optional[int]     # the step the run continues from, if any
    finished: bool                 # the run in the checkpoint directory is complete
    eval_only: bool


class Plan(NamedTuple):
    """The whole launch plan of this node; launch.json is contract.records.to_json(plan)."""
    job_id: str
    backend: str
    world_size: int
    nnodes: int
    node_rank: int
    local_size: int
    output_dir: str
    node_dir: str
    checkpoint_dir: str
    rank_table: Optional[str]
    cwd: str
    peers: Optional[List[str]]
    dropped_env: List[str]
    warnings: List[str]
    worker: str                    # "trainer" or "command"
    model: Optional[str]
    batch_size: Optional[int]
    network: str
    case: str
    stall_timeout: float
    grace_period: float
    max_restarts: int
    bind_cores: bool
    ranks: List[RankSpec]
    tensorboard_dir: Optional[str] = None
    # the built-in trainer: what the ranks will do, as the launcher's checks found it
    trainer: Optional[TrainerChecks] = None
    # cpu, one host: the shared-memory allreduce's directory (LAUNCH_SHM_DIR); removed after the job
    shm_dir: Optional[str] = None


class LocalRank(NamedTuple):
    """One local worker as the backend-specific layout places it."""
    rank: int                      # global rank
    label: object                  # the name of its directory and log: device id, or worker index on cpu
    device_id: object              # physical device id (DEVICE_ID)
    env: Dict[str, object]         # backend-specific WorkerEnv fields


class Layout(NamedTuple):
    """Who runs where (the backend-specific step of the plan)."""
    job_id: str
    world_size: int
    nnodes: int
    node_rank: int
    local: List[LocalRank]
    peers: Optional[List[str]] = None
    master: Optional[Tuple[str, int]] = None   # node 0's (address, port) for torchrun's MASTER_ADDR/PORT
    shm_dir: Optional[str] = None


def make_plan(args, facts, table=None, local_server=None):
    """The whole launch plan (see module doc). ``args``: parsed CLI options as a dict.

    ``facts``: environ, hostname, addresses, allowed_cpus, numa_nodes, ascend_count, ascend_visible,
    gpu_visible, ports_in_use, python, pid, time, cwd; after a rendezvous also ``rendezvous``:
    {"hosts": every node's address in node order, "port": the master port}.
    ``table``/``local_server``: the Ascend rank table and this host's server entry in it (found by the
    caller with rank_table.validate.find_local_server).
    """
    backend = resolve_backend(args.get("backend"), facts)
    custom = _check_worker(args)
    layout = _npu_layout(args, facts, table, local_server) if backend == "npu" else \
        _collective_layout(args, facts, backend)
    output_dir = os.path.normpath(os.path.join(facts["cwd"], args.get("output_dir") or "output"))
    node_dir = os.path.join(output_dir, "node%d" % layout.node_rank) if layout.nnodes > 1 else output_dir
    table_file = os.path.join(node_dir, "rank_table.json") if backend == "npu" else None
    drop = envrules.hazards(backend, facts.get("environ", {}))
    checkpoint_dir = _checkpoint_dir(args, facts, output_dir)
    ranks = _rank_specs(args, facts, backend, layout, output_dir, node_dir, table_file, checkpoint_dir)
    model = args.get("model")
    return Plan(
        job_id=layout.job_id, backend=backend, world_size=layout.world_size,
        nnodes=layout.nnodes, node_rank=layout.node_rank, local_size=len(ranks),
        output_dir=output_dir, node_dir=node_dir, checkpoint_dir=checkpoint_dir,
        tensorboard_dir=os.path.join(output_dir, "tensorboard"),
        rank_table=table_file, cwd=facts["cwd"], peers=layout.peers,
        dropped_env=[name for name, _ in drop],
        warnings=["dropped %s from the workers' environment: %s" % (name, why) for name, why in drop],
        worker="command" if custom else "trainer",
        model=model, batch_size=args.get("batch_size"),
        network=args.get("network") or model or command_name(args["command"]),
        case=args.get("case") or "acc",
        stall_timeout=float(_default(args.get("stall_timeout"), 0.0 if custom else TRAINER_STALL_TIMEOUT)),
        grace_period=float(_default(args.get("grace_period"), DEFAULT_GRACE_PERIOD)),
        max_restarts=int(args.get("max_restarts") or 0), bind_cores=_binds(args),
        ranks=ranks, shm_dir=layout.shm_dir,
    )


def _check_worker(args):
    """True for a custom `-- CMD` worker; LaunchError when neither a model nor a command is given."""
    custom = bool(args.get("command"))
    if custom and args.get("passthrough"):
        raise LaunchError("unknown option(s) %s: with -- CMD, put the worker's options after the command"
                          % " ".join(args["passthrough"]))
    if not custom and not args.get("model"):
        raise LaunchError("no --model given: pass --model NAME (see --list-models) or a command after --")
    return custom


def _checkpoint_dir(args, facts, output_dir):
    """<output>/checkpoints, or the trainer's --checkpoint-dir when given (launcher and ranks agree)."""
    trainer = args.get("trainer")
    given = trainer.checkpoint_dir if trainer is not None else None
    return os.path.normpath(os.path.join(facts["cwd"], given)) if given else \
        os.path.join(output_dir, "checkpoints")


def _binds(args):
    return args.get("bind_cores", "on") == "on"


def _core_sets(args, facts, local_size):
    """(cores of each local rank, threads per rank when unbound) from --bind-cores and the allowed CPUs."""
    allowed = facts.get("allowed_cpus") or []
    sets = cores_mod.split_cores(allowed, local_size, facts.get("numa_nodes")) if _binds(args) else \
        [[] for _ in range(local_size)]
    return sets, cores_mod.threads_per_worker(len(allowed), local_size)


def _rank_specs(args, facts, backend, layout, output_dir, node_dir, table_file, checkpoint_dir):
    """One RankSpec per local rank: its files, its command and its worker environment (with `-- CMD`, also
    torchrun's variables)."""
    local_size = len(layout.local)
    core_sets, unbound_threads = _core_sets(args, facts, local_size)
    argv = _worker_argv(args, facts)
    ranks = []
    for local_rank, entry in enumerate(layout.local):
        device = str(entry.label)
        rank_dir = os.path.join(node_dir, device)
        threads = len(core_sets[local_rank]) or unbound_threads
        settings = WorkerEnv(
            rank=entry.rank, size=layout.world_size, job_id=layout.job_id,
            device_id=str(entry.device_id), backend=backend, output_dir=output_dir, rank_dir=rank_dir,
            checkpoint_dir=checkpoint_dir,
            metrics_file=os.path.join(rank_dir, "metrics.jsonl"),
            error_file=os.path.join(rank_dir, "error.json"),
            local_rank=local_rank, local_size=local_size, node_rank=layout.node_rank, nnodes=layout.nnodes,
            intra_threads=threads, inter_threads=threads, restart=0, unbuffered="1", rank_table=table_file,
            **dict(entry.env, **(torchrun_fields(entry.rank, local_rank, local_size, layout, args)
                                 if args.get("command") else {})))
        ranks.append(RankSpec(
            rank=entry.rank, local_rank=local_rank, device=device, rank_dir=rank_dir,
            log_path=os.path.join(rank_dir, "train_%s.log" % device),
            metrics_file=settings.metrics_file, error_file=settings.error_file,
            env_file=os.path.join(rank_dir, "rank.env"),
            run_script=os.path.join(rank_dir, "run_%s.sh" % device),
            argv=list(argv), env=settings.to_env(), cores=core_sets[local_rank]))
    return ranks


def torchrun_fields(rank, local_rank, local_size, layout, args):
    """The WorkerEnv fields of torchrun's variables, so that a PyTorch / torch_npu script started with
    `-- CMD` runs as under torchrun (torch.distributed's env:// init reads MASTER_ADDR, MASTER_PORT,
    WORLD_SIZE, RANK). Rank 0 serves the store on MASTER_PORT: on cpu/gpu its LAUNCH_PEERS port (free: the
    command is not the TF trainer); on Ascend --master-port or a port derived from the job id (the same on
    every server)."""
    addr, port = layout.master
    return {
        "master_addr": addr, "master_port": int(port), "world_size": layout.world_size, "torch_rank": rank,
        "torch_local_rank": local_rank, "local_world_size": local_size, "group_rank": layout.node_rank,
        "group_world_size": layout.nnodes, "role_name": "default", "role_rank": rank,
        "role_world_size": layout.world_size, "elastic_run_id": layout.job_id,
        "elastic_max_restarts": int(args.get("max_restarts") or 0), "elastic_restart_count": 0,
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
    shm_dir = _shm_dir(args, facts, backend, nnodes, world, job_id)
    local = []
    for local_rank, (label, physical) in enumerate(pairs):
        env = {"peers": peers, "collective_timeout": float(timeout),
               "cuda_visible_devices": str(physical) if backend == "gpu" else "", "shm_dir": shm_dir}
        local.append(LocalRank(rank=node_rank * local_size + local_rank, label=label,
                               device_id=physical if backend == "gpu" else label, env=env))
    return Layout(job_id=job_id, world_size=world, nnodes=nnodes, node_rank=node_rank, local=local,
                  peers=peers, master=_split_peer(peers[0]), shm_dir=shm_dir)


SHM_DIR_PREFIX = "launcher-"  # <shm root>/launcher-<job id>-<the launcher's pid>


def _shm_dir(args, facts, backend, nnodes, world, job_id):
    """CPU ranks, all on this host: the trainer averages the gradients through shared memory
    (train/shm_allreduce.py) in a directory of this launcher's own; else None (TF's collective ops). A
    `-- CMD` worker gets the variable too (one running `python -m train` uses it; others ignore it)."""
    if backend != "cpu" or nnodes != 1 or world < 2 or not facts.get("shm_root"):
        return None
    if (args.get("shm_allreduce") or "on") != "on":
        return None
    return os.path.join(facts["shm_root"], "%s%s-%s" % (SHM_DIR_PREFIX, job_id, facts.get("pid")))


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
    mine = server_record(local_server)
    node_rank = [s["server_id"] for s in servers].index(mine["server_id"])
    world = sum(len(s["devices"]) for s in servers)
    visible = facts.get("ascend_visible") or []
    local = []
    for device in mine["devices"]:
        physical = device["device_id"]
        logical = visible.index(physical) if physical in visible else physical
        env = {"ascend_device_id": str(logical), "device_index": str(device["rank_id"])}
        local.append(LocalRank(rank=device["rank_id"], label=logical, device_id=physical, env=env))
    job_id = str(args["job_id"]) if args.get("job_id") else table_job_id(table)
    first = servers[0]
    master_addr = LOCALHOST if len(servers) == 1 else (first.get("host_ip") or first["server_id"])
    master_port = ports.choose_base_port(job_id, 1, args.get("master_port"), facts.get("ports_in_use") or (),
                                         single_host=len(servers) == 1)
    return Layout(job_id=job_id, world_size=world, nnodes=len(servers), node_rank=node_rank, local=local,
                  master=(master_addr, master_port))
