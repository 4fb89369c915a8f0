"""The launcher -> worker environment: every variable's name, type and default, in one table.

Why: the launcher writes these variables (launcher/plan.py) and every worker-side reader (train/config.py,
train/backends.py, train/session_config.py, a user's `-- CMD` worker) reads them; with one table both sides
agree on names, defaults and what a malformed value is. Adding a variable is one line in VARIABLES.

    env = WorkerEnv(rank=0, size=2, backend="cpu", ...).to_env()   # launcher: only the fields set (not None)
    settings = from_env(os.environ)                                # worker: every field, defaults filled in

A malformed value raises EnvError, one line naming the variable and the fix.
"""
import collections
from typing import NamedTuple

BACKENDS = ("npu", "gpu", "cpu")


class EnvError(ValueError):
    """A launcher variable holds a value its reader cannot use; the message names the variable."""


def _whole(name, text):
    try:
        return int(text)
    except ValueError:
        raise EnvError("%s=%r is not a whole number; the launcher sets it, or set it yourself"
                       % (name, text)) from None


def _count(name, text):
    value = _whole(name, text) if text.lstrip("-").isdigit() else -1
    if value < 0:
        raise EnvError("%s=%r is not a thread count; set it to a whole number >= 0" % (name, text))
    return value


def _seconds(name, text):
    try:
        return float(text)
    except ValueError:
        raise EnvError("%s=%r is not a number of seconds" % (name, text)) from None


def _backend(name, text):
    text = text.lower()
    if text not in BACKENDS:
        raise EnvError("%s=%r is unknown; use npu, gpu or cpu" % (name, text))
    return text


def _text(name, text):
    return text


def _list(name, text):
    return [item.strip() for item in text.split(",") if item.strip()]


# How each kind is read from and written to the environment.
_READ = {"int": _whole, "count": _count, "seconds": _seconds, "backend": _backend, "str": _text,
         "list": _list}
_WRITE = {"int": str, "count": str, "seconds": lambda v: "%g" % v, "backend": str, "str": str,
          "list": ",".join}
_TYPES = {"int": int, "count": int, "seconds": float, "backend": str, "str": str, "list": list}

Var = collections.namedtuple("Var", "field name kind default doc")

# field, variable, kind, default when unset, meaning. The ONE place a launcher -> worker variable is defined.
VARIABLES = (
    Var("rank", "RANK_ID", "int", 0, "global rank of this worker"),
    Var("size", "RANK_SIZE", "int", 1, "number of ranks in the job"),
    Var("job_id", "JOB_ID", "str", "", "the job's id (same on every rank and host)"),
    Var("device_id", "DEVICE_ID", "str", "", "physical device id (cpu: the worker's index)"),
    Var("backend", "LAUNCH_BACKEND", "backend", "cpu", "npu, gpu or cpu"),
    Var("output_dir", "LAUNCH_OUTPUT_DIR", "str", "", "the job's output directory"),
    Var("rank_dir", "LAUNCH_RANK_DIR", "str", "", "this rank's directory (log, metrics, error file)"),
    Var("checkpoint_dir", "LAUNCH_CHECKPOINT_DIR", "str", "", "where checkpoints go"),
    Var("metrics_file", "LAUNCH_METRICS_FILE", "str", "", "JSON lines the launcher tails"),
    Var("error_file", "LAUNCH_ERROR_FILE", "str", "", "JSON the worker writes when it fails"),
    Var("local_rank", "LAUNCH_LOCAL_RANK", "int", 0, "index among this host's ranks"),
    Var("local_size", "LAUNCH_LOCAL_SIZE", "int", 1, "ranks on this host"),
    Var("node_rank", "LAUNCH_NODE_RANK", "int", 0, "this host's index"),
    Var("nnodes", "LAUNCH_NNODES", "int", 1, "number of hosts"),
    Var("intra_threads", "LAUNCH_INTRA_OP_THREADS", "count", 0, "TF intra-op pool size (0: TF's default)"),
    Var("inter_threads", "LAUNCH_INTER_OP_THREADS", "count", 0, "TF inter-op pool size (0: TF's default)"),
    Var("restart", "LAUNCH_RESTART", "int", 0, "how many times the launcher restarted the job"),
    Var("peers", "LAUNCH_PEERS", "list", [], "cpu/gpu: host:port of every rank, rank order"),
    Var("collective_timeout", "LAUNCH_COLLECTIVE_TIMEOUT", "seconds", 600.0,
        "cpu/gpu: seconds before a collective op fails"),
    Var("shm_dir", "LAUNCH_SHM_DIR", "str", "",
        "cpu, one host: directory of the shared-memory gradient allreduce (unset: collective ops)"),
    Var("cuda_visible_devices", "CUDA_VISIBLE_DEVICES", "str", None, "gpu: this rank's GPU; cpu: '' (none)"),
    Var("rank_table", "RANK_TABLE_FILE", "str", "", "npu: the HCCL rank table"),
    Var("ascend_device_id", "ASCEND_DEVICE_ID", "str", "", "npu: logical device id"),
    Var("device_index", "DEVICE_INDEX", "str", "", "npu: the rank id (ModelZoo scripts read it)"),
    Var("unbuffered", "PYTHONUNBUFFERED", "str", "", "'1': worker output reaches the log at once"),
    # torchrun's variables, set for `-- CMD` workers only (a PyTorch / torch_npu script's env:// init)
    Var("master_addr", "MASTER_ADDR", "str", None, "-- CMD: node 0's address (torch.distributed env://)"),
    Var("master_port", "MASTER_PORT", "int", None, "-- CMD: the port rank 0 serves the store on"),
    Var("world_size", "WORLD_SIZE", "int", None, "-- CMD: torchrun's WORLD_SIZE (= RANK_SIZE)"),
    Var("torch_rank", "RANK", "int", None, "-- CMD: torchrun's RANK (= RANK_ID)"),
    Var("torch_local_rank", "LOCAL_RANK", "int", None, "-- CMD: torchrun's LOCAL_RANK"),
    Var("local_world_size", "LOCAL_WORLD_SIZE", "int", None, "-- CMD: ranks on this host"),
    Var("group_rank", "GROUP_RANK", "int", None, "-- CMD: this host's index (torchrun's node rank)"),
    Var("group_world_size", "GROUP_WORLD_SIZE", "int", None, "-- CMD: number of hosts"),
    Var("role_name", "ROLE_NAME", "str", None, "-- CMD: torchrun's role ('default')"),
    Var("role_rank", "ROLE_RANK", "int", None, "-- CMD: = RANK"),
    Var("role_world_size", "ROLE_WORLD_SIZE", "int", None, "-- CMD: = WORLD_SIZE"),
    Var("elastic_run_id", "TORCHELASTIC_RUN_ID", "str", None, "-- CMD: the job id"),
    Var("elastic_restart_count", "TORCHELASTIC_RESTART_COUNT", "int", None, "-- CMD: = LAUNCH_RESTART"),
    Var("elastic_max_restarts", "TORCHELASTIC_MAX_RESTARTS", "int", None, "-- CMD: --max-restarts"),
)

NAMES = {var.field: var.name for var in VARIABLES}
DEFAULTS = {var.field: var.default for var in VARIABLES}

_Record = NamedTuple("_Record", [(var.field, _TYPES[var.kind]) for var in VARIABLES])


class WorkerEnv(_Record):
    """One worker's launcher settings. Fields left None are not written by to_env (unset for the worker)."""

    __slots__ = ()

    def __new__(cls, **fields):
        unknown = set(fields) - set(NAMES)
        if unknown:
            raise TypeError("WorkerEnv has no field(s) %s" % ", ".join(sorted(unknown)))
        return super().__new__(cls, *[fields.get(var.field) for var in VARIABLES])

    def to_env(self):
        """{variable: string} for every field that is set."""
        return {var.name: _WRITE[var.kind](value) for var, value in zip(VARIABLES, self) if value is not None}


def from_env(environ):
    """Every field of WorkerEnv from an environment mapping; unset or empty -> the table's default.

    EnvError (one line naming the variable) on a malformed value or an impossible rank.
    """
    values = {}
    for var in VARIABLES:
        text = environ.get(var.name)
        text = "" if text is None else str(text).strip()
        values[var.field] = _READ[var.kind](var.name, text) if text else _copy(var.default)
    if values["size"] < 1 or not 0 <= values["rank"] < values["size"]:
        raise EnvError("RANK_ID=%d must be in [0, RANK_SIZE=%d)" % (values["rank"], values["size"]))
    return WorkerEnv(**values)


def _copy(value):
    return list(value) if isinstance(value, list) else value


def default(field):
    """The value a worker uses when the launcher did not set ``field`` (the launcher's default too)."""
    return _copy(DEFAULTS[field])
