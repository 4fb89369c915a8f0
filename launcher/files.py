"""What a launch writes before anything starts: rank directories, launch.json, per-rank env files and run
scripts, the rank table; and the rule that a second run never silently overwrites the first one's files."""
import fcntl
import os
import shlex
import shutil
import stat

import jinja2

from contract import atomic
from contract.records import to_json
from launcher import cores as cores_mod
from launcher.errors import LaunchError
from launcher.plan import SHM_DIR_PREFIX

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def rotate(path):
    """Move ``path`` aside to path.1 (path.1 -> path.2, ...); the new name, or None if nothing was there."""
    if not os.path.lexists(path):
        return None
    index = 1
    while os.path.lexists("%s.%d" % (path, index)):
        index += 1
    for number in range(index, 1, -1):
        os.rename("%s.%d" % (path, number - 1), "%s.%d" % (path, number))
    os.rename(path, path + ".1")
    return path + ".1"


def make_dirs(plan):
    """Create the output, node, checkpoint and rank directories; LaunchError if unwritable."""
    paths = [plan.output_dir, plan.node_dir, plan.checkpoint_dir]
    paths += [spec.rank_dir for spec in plan.ranks]
    try:
        for path in paths:
            os.makedirs(path, exist_ok=True)  # nodes sharing one output dir: no check-then-create
            if not os.access(path, os.W_OK | os.X_OK):
                raise OSError("not writable")
    except OSError as error:
        raise LaunchError("cannot write to %s (%s): choose another --output-dir"
                          % (path, getattr(error, "strerror", None) or error)) from None


SHM_LOCK = "launcher.lock"  # held by the launcher that made the directory, for as long as it runs


def hold_shm_dir(path):
    """Create the shared-memory allreduce's directory with a lock file this launcher holds while it runs;
    returns the open lock file (closing it, or this process ending in any way, releases the lock). The
    directory is made under a hidden name and renamed once locked, so no other launcher ever sees it
    unlocked."""
    hidden = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    shutil.rmtree(hidden, ignore_errors=True)
    try:
        os.makedirs(hidden, mode=0o700)
        lock = open(os.path.join(hidden, SHM_LOCK), "w")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(path, ignore_errors=True)   # this launcher's own name (its pid): an old leftover
        os.rename(hidden, path)
    except OSError as error:
        raise LaunchError("cannot create %s for the shared-memory allreduce (%s); run with "
                          "--shm-allreduce off" % (path, error.strerror or error)) from None
    return lock


def stale_shm_dirs(root):
    """The shared-memory directories in ``root`` that killed launchers left behind (SIGKILL, the OOM
    killer: no cleanup ran): named by launcher.plan, owned by this user, with a lock file nobody holds.
    A lock, not the pid in the name: a launcher in another PID namespace sharing /dev/shm is alive
    although its pid is unknown here. Nothing uses such a directory: a launcher's workers die with it."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    found = []
    for name in names:
        if not name.startswith(SHM_DIR_PREFIX):
            continue
        path = os.path.join(root, name)
        try:
            info = os.lstat(path)
            if info.st_uid != os.geteuid() or not stat.S_ISDIR(info.st_mode):
                continue
            with open(os.path.join(path, SHM_LOCK)) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)    # released when closed
        except OSError:    # gone, not ours, no lock file (an older launcher's), or held: a live launcher's
            continue
        found.append(path)
    return found


def remove_shm_dir(plan):
    """Remove the shared-memory allreduce's directory (its sockets and region) once every rank has ended."""
    if plan.shm_dir:
        shutil.rmtree(plan.shm_dir, ignore_errors=True)


def rotate_previous_run(plan, keep_metrics=False):
    """Move the previous run's logs, metrics and error files aside (train_0.log -> train_0.log.1, ...).

    ``keep_metrics``: the run continues (a resume): its metrics.jsonl files keep growing, so the summary
    and the picture cover the whole run."""
    moved = []
    for spec in plan.ranks:
        paths = (spec.log_path, spec.error_file) if keep_metrics else \
            (spec.log_path, spec.metrics_file, spec.error_file)
        for path in paths:
            if rotate(path):
                moved.append(path)
    for name in ("summary.json",):
        if rotate(os.path.join(plan.node_dir, name)):
            moved.append(os.path.join(plan.node_dir, name))
    return moved


def has_checkpoints(plan):
    """True when the checkpoint directory already holds files."""
    return has_files(plan.checkpoint_dir)


def has_files(directory):
    """True when ``directory`` exists and holds anything."""
    try:
        return bool(os.listdir(directory))
    except OSError:
        return False


def launch_json_path(plan):
    return os.path.join(plan.node_dir, "launch.json")


def write_launch_json(plan):
    """output/launch.json: the plan as the launcher will execute it (a previous one becomes launch.json.1)."""
    path = launch_json_path(plan)
    rotate(path)
    return atomic.write_json(path, to_json(plan))


def write_rank_table(plan, source_path=None, built_table=None, writer=None):
    """Put the rank table the job uses next to launch.json: a copy of the given file, or the built one."""
    target = plan.rank_table
    if not target:
        return None
    if source_path and os.path.abspath(source_path) == os.path.abspath(target):
        return target
    if source_path and os.path.exists(target) and _same_bytes(source_path, target):
        return target
    if os.path.exists(target):
        rotate(target)
    if source_path:
        shutil.copyfile(source_path, target)
    elif writer is not None:
        writer(built_table, target)
    return target


def _same_bytes(first, second):
    with open(first, "rb") as one, open(second, "rb") as two:
        return one.read() == two.read()


def _environment():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["shquote"] = lambda value: shlex.quote(str(value))
    return env


def render_run_script(plan, spec):
    """The shell script that re-runs one rank by hand with the same environment (jinja2 template)."""
    template = _environment().get_template("run_rank.sh.j2")
    return template.render(plan=plan, spec=spec, env_items=sorted(spec.env.items()),
                           cores=cores_mod.format_cores(spec.cores),
                           argv=" ".join(shlex.quote(arg) for arg in spec.argv),
                           launch_json=launch_json_path(plan))


def render_env_file(spec):
    """KEY=VALUE lines (docker --env-file / systemd EnvironmentFile form) of what the launcher sets."""
    return "".join("%s=%s\n" % (key, value) for key, value in sorted(spec.env.items()))


def write_rank_files(plan):
    """Per rank: rank.env and run_<device>.sh (regenerated from the plan each time)."""
    for spec in plan.ranks:
        atomic.write_text(spec.env_file, render_env_file(spec))
        atomic.write_text(spec.run_script, render_run_script(plan, spec))
        os.chmod(spec.run_script, 0o755)
