"""`python -m launcher`: parse, check the user's input, plan, write the plan's files, supervise, report.

Every user mistake becomes one line on stderr and exit code 2; a failed job exits 1 after its root-cause
block; a launcher stopped by Ctrl-C, SIGTERM or SIGHUP ends every worker first and exits 128 + the signal.
"""
import argparse
import os
import signal
import sys
import time

from launcher import files, report
from launcher import plan as plan_mod
from launcher.cores import format_cores
from launcher.errors import LaunchError
from launcher.progress import Console, format_duration, progress_line
from launcher.rendezvous import DEFAULT_PORT as DEFAULT_RENDEZVOUS_PORT
from launcher.rendezvous import DEFAULT_TIMEOUT as DEFAULT_RENDEZVOUS_TIMEOUT

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise LaunchError("%s (see python -m launcher --help)" % message)


def build_parser():
    parser = _Parser(
        prog="python -m launcher", allow_abbrev=False,
        usage="python -m launcher --devices 0-7 --model NAME [options] [trainer options] [-- CMD ...]",
        description="Start one worker per device (Ascend NPU, GPU or CPU processes), watch them, report. "
                    "Options the launcher does not know are passed to the trainer (python -m train); "
                    "`-- CMD ...` runs CMD as the worker instead, with the same environment.")
    job = parser.add_argument_group("job")
    job.add_argument("--devices",
                     help="npu/gpu: device ids (0-7, 0,1,4-5); cpu: a worker count (2) or ids (0-1)")
    job.add_argument("--model", help="model name for the built-in trainer (see --list-models)")
    job.add_argument("--data-path", help="dataset directory (or 'synthetic'); checked before anything starts")
    job.add_argument("--batch-size", type=int, help="per-rank batch size, passed to the trainer")
    job.add_argument("--epochs", type=int, help="epochs, passed to the trainer")
    job.add_argument("--output-dir", default="output",
                     help="where logs, metrics, checkpoints go (default ./output)")
    job.add_argument("--backend", choices=("auto", "npu", "gpu", "cpu"), default="auto",
                     help="auto = npu if Ascend devices exist, else gpu if CUDA devices exist, else cpu")
    job.add_argument("--list-models", action="store_true", help="list the models and exit")
    job.add_argument("--dry-run", action="store_true",
                     help="print the plan and write its files; start nothing")
    sup = parser.add_argument_group("supervision")
    sup.add_argument("--bind-cores", choices=("on", "off"), default="on",
                     help="split this process's allowed CPUs among the local ranks (NUMA-aware); default on")
    sup.add_argument("--max-restarts", type=int, default=0,
                     help="restart the whole job up to N times after a failure (resuming from checkpoints)")
    sup.add_argument("--stall-timeout", type=float, default=None,
                     help="seconds without a metrics record before a rank counts as failed; 0 = off "
                          "(default %g for the trainer, off for -- CMD)" % plan_mod.TRAINER_STALL_TIMEOUT)
    sup.add_argument("--grace-period", type=float, default=plan_mod.DEFAULT_GRACE_PERIOD,
                     help="seconds between SIGTERM and SIGKILL at teardown (default %(default)g)")
    sup.add_argument("--tee", metavar="RANKS", help="also show these ranks' raw output (0,3 or 0-7 or all)")
    sup.add_argument("--progress-interval", type=float, default=30.0,
                     help="seconds between progress lines when stdout is no terminal (default %(default)g)")
    rep = parser.add_argument_group("report (ModelZoo summary)")
    rep.add_argument("--network", help="Network name in the summary (default: the model name)")
    rep.add_argument("--case", choices=("acc", "perf"), default="acc", help="CaseName suffix (default acc)")
    rep.add_argument("--plot", choices=("on", "off"), default="on",
                     help="draw run.png (matplotlib) after a successful run; default on")
    multi = parser.add_argument_group("Ascend rank table and several hosts")
    multi.add_argument("--rank-table", help="HCCL rank table to use (default: RANK_TABLE_FILE, then the "
                                            "scheduler's path, else one is built for --devices)")
    multi.add_argument("--table-wait", type=float, default=None,
                       help="seconds to wait for a rank table that is still 'initializing' (default 600) "
                            "or, when given, not written yet")
    multi.add_argument("--hccn-conf", metavar="FILE",
                       help="npu, table built here: device IPs from FILE (address_<id>=<ip> lines) instead "
                            "of hccn_tool / /etc/hccn.conf")
    multi.add_argument("--chip", choices=("910A", "910B"),
                       help="npu: chip whose device rules apply (default: detected; 910A when none is found)")
    multi.add_argument("--server-id", help="this host's server_id in a multi-server rank table")
    multi.add_argument("--job-id",
                       help="JOB_ID for every rank (default: derived from the rank table or hosts)")
    multi.add_argument("--nnodes", type=int, help="cpu/gpu: number of hosts")
    multi.add_argument("--node-rank", type=int, help="this host's index among the hosts / table servers")
    multi.add_argument("--hosts", help="cpu/gpu: every host in node order, h1,h2 or 'name-{node}.domain'")
    multi.add_argument("--master-addr", help="cpu/gpu: node 0's address; with --nnodes N and no --hosts the "
                                             "nodes meet there (rendezvous). Single host: the peers' address")
    multi.add_argument("--master-port", type=int,
                       help="cpu/gpu: with --hosts, the workers' first port (rank's port = it + local rank); "
                            "with a rendezvous, its port (default %d) and the workers' ports follow it"
                            % DEFAULT_RENDEZVOUS_PORT)
    multi.add_argument("--node-addr", help="cpu/gpu rendezvous: the address other hosts use for this one "
                                           "(default: the local address that reaches --master-addr)")
    multi.add_argument("--rendezvous-timeout", type=float, default=None,
                       help="cpu/gpu: seconds for every node to join the rendezvous (default %g)"
                            % DEFAULT_RENDEZVOUS_TIMEOUT)
    multi.add_argument("--collective-timeout", type=float, default=None,
                       help="cpu/gpu: seconds before a collective op fails (default %g)"
                            % plan_mod.DEFAULT_COLLECTIVE_TIMEOUT)
    return parser


def split_command(argv):
    """(launcher's own arguments, the command after the first `--` or None)."""
    if "--" in argv:
        index = argv.index("--")
        command = argv[index + 1:]
        if not command:
            raise LaunchError("nothing after --: give the worker command, e.g. -- python my_train.py")
        return argv[:index], command
    return argv, None


def parse(argv):
    own, command = split_command(list(argv))
    args, passthrough = build_parser().parse_known_args(own)
    options = vars(args)
    options["command"] = command
    options["passthrough"] = passthrough
    for key in ("max_restarts", "batch_size", "epochs", "nnodes"):
        if options.get(key) is not None and options[key] < (0 if key == "max_restarts" else 1):
            raise LaunchError("--%s %d is out of range" % (key.replace("_", "-"), options[key]))
    for key in ("stall_timeout", "grace_period", "table_wait"):
        if options.get(key) is not None and options[key] < 0:
            raise LaunchError("--%s must be 0 or more" % key.replace("_", "-"))
    return options


def list_models(out):
    """One line per model: parameters and multiply-adds at 224x224 (1000 classes), then its options."""
    registry = _registry()
    out.write("models (params, MAdds at 224x224, 1000 classes): --model NAME [--model-option K=V]\n")
    for line in registry.summary_lines():
        out.write(line + "\n")
    return 0


def _registry():
    from models import registry  # imports TensorFlow: only for a trainer job or --list-models
    return registry


def check_trainer_inputs(options):
    """Fail early, in one line, on an unknown model or a bad data path (before any file is written)."""
    registry = _registry()
    names = list(registry.model_names())
    if options["model"] not in names:
        raise LaunchError("unknown model %r: choose one of %s (see --list-models)"
                          % (options["model"], ", ".join(names)))
    check_trainer_flags(options)
    path = options.get("data_path")
    if path:
        from data import layout
        try:
            layout.inspect(path, **trainer_data_options(options.get("passthrough") or []))
        except layout.DataError as error:
            raise LaunchError(str(error)) from None


def check_trainer_flags(options):
    """The trainer's options, checked by the trainer's own parser before any rank starts, so that a typo
    such as --learning_rate=abc is one line now instead of a failed rank later (train.config imports no
    TensorFlow)."""
    from train import config
    from train.errors import TrainError
    try:
        config.parse_flags(plan_mod.trainer_args(options))
    except TrainError as error:
        raise LaunchError("trainer option: %s" % error) from None


def trainer_data_options(passthrough):
    """--label-offset / --num-classes among the trainer options passed through, read with the trainer's
    own flag definitions (train.config imports no TensorFlow), so the check reads the data as the
    ranks will."""
    from train import config
    try:
        return config.data_options(passthrough)
    except config.TrainError as error:
        raise LaunchError(str(error)) from None


def describe_plan(plan, out):
    out.write("job %s: %s backend, %d rank(s) on %d node(s); node %d runs %d\n"
              % (plan.job_id, plan.backend, plan.world_size, plan.nnodes, plan.node_rank,
                 plan.local_size))
    for spec in plan.ranks:
        out.write("  rank %-4d device %-4s cores %-12s log %s\n"
                  % (spec.rank, spec.device, format_cores(spec.cores) or "-", spec.log_path))
    if plan.ranks:
        first = plan.ranks[0]
        out.write("command: %s\n" % " ".join(first.argv))
        out.write("environment of rank %d (%s):\n" % (first.rank, first.env_file))
        for key, value in sorted(first.env.items()):
            out.write("  %s=%s\n" % (key, value))
        out.write("re-run one rank by hand: %s\n" % first.run_script)
    if plan.rank_table:
        out.write("rank table: %s\n" % plan.rank_table)
    out.write("plan: %s\n" % files.launch_json_path(plan))


def meet_other_nodes(options, facts, backend, err):
    """cpu/gpu with --nnodes N and no --hosts: the facts plus every node's address from a rendezvous."""
    from launcher import rendezvous
    if not rendezvous.needed(options):
        return facts
    workers = len(plan_mod.local_workers(options, facts, backend))
    hosts = rendezvous.run(options, backend, workers, err)
    err.write("launcher: rendezvous done: nodes at %s\n" % ", ".join(hosts))
    return dict(facts, rendezvous={"hosts": hosts, "port": rendezvous.master_port(options)})


def prepare(options, facts, err):
    """Everything before the first process starts: checks, plan, directories, files. Returns the plan."""
    backend = plan_mod.resolve_backend(options["backend"], facts)
    if not options["command"]:
        check_trainer_inputs(options)
    table = server = source = None
    if backend == "npu":
        from launcher import ascend
        table, server, source = ascend.resolve(options, facts)
    else:
        facts = meet_other_nodes(options, facts, backend, err)
    plan = plan_mod.make_plan(options, facts, table, server)
    files.make_dirs(plan)
    for warning in plan.warnings:
        err.write("launcher: warning: %s\n" % warning)
    if backend == "npu":
        from launcher import ascend
        files.write_rank_table(plan, source, table, None if source else ascend.write_built_table)
    return plan


def main(argv=None, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        options = parse(argv)
        if options["list_models"]:
            return list_models(out)
        from launcher import facts as facts_mod
        facts = facts_mod.gather(options["backend"])
        plan = prepare(options, facts, err)
        if options["dry_run"]:
            files.write_launch_json(plan)
            files.write_rank_files(plan)
            describe_plan(plan, out)
            return 0
        return run(plan, options, facts, out, err)
    except LaunchError as error:
        err.write("launcher: error: %s\n" % error)
        return getattr(error, "exit_code", EXIT_USAGE)
    except KeyboardInterrupt:
        err.write("launcher: interrupted before any worker started\n")
        return 128 + signal.SIGINT
    except BrokenPipeError:
        try:                # the reader of stdout went away (e.g. `| head`): no second error at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        err.write("launcher: stdout was closed; every worker was ended\n")
        return EXIT_FAILED


def run(plan, options, facts, out, err):
    """Write the plan's files, run the job (launcher.supervise.run_job), report. Returns the exit code."""
    from launcher import supervise, tee
    moved = files.rotate_previous_run(plan)
    if moved:
        err.write("launcher: the previous run's logs were kept: %s -> *.1 (and %d more file(s))\n"
                  % (moved[0], len(moved) - 1))
    if files.has_checkpoints(plan):
        err.write("launcher: %s holds checkpoints: the workers resume from them (use another --output-dir "
                  "for a fresh start)\n" % plan.checkpoint_dir)
    files.write_launch_json(plan)
    files.write_rank_files(plan)
    supervise.become_subreaper()
    console = Console(out, interval=options.get("progress_interval") or 30.0)
    tee_ranks = tee.parse_ranks(options.get("tee"), plan.world_size)
    tees = [tee.LogTee(s.rank, s.log_path) for s in plan.ranks if s.rank in tee_ranks]
    started = time.time()

    def show_tees(final=False):
        for follower in tees:
            for line in follower.poll(final=final):
                console.message(line)

    def on_tick(sup, now):
        show_tees()
        console.update(progress_line([rank.tail for rank in sup.ranks], started, now))

    def on_attempt_end(sup):
        show_tees(final=True)
        console.finish(progress_line([rank.tail for rank in sup.ranks], started, time.time()))

    def on_restart(failure, attempt):
        err.write("launcher: rank %s failed (%s); restarting the job (%d/%d)\n"
                  % (failure.rank, failure.detail, attempt, plan.max_restarts))

    err.write("launcher: job %s: %d rank(s) on %s, logs in %s\n"
              % (plan.job_id, plan.local_size, plan.backend, plan.node_dir))
    result = supervise.run_job(plan, facts["environ"], on_tick, on_attempt_end, on_restart)
    if result.status == "ok":
        return _success(plan, result, started, out, err, options.get("plot") != "off")
    if result.status == "interrupted":
        err.write("launcher: stopped by %s; every worker was ended\n" % supervise.signal_name(result.signal))
        return 128 + int(result.signal)
    failure = result.failure
    if failure.kind == "launch":
        err.write("launcher: error: rank %s: %s; check the worker command\n" % (failure.rank, failure.detail))
        return EXIT_USAGE
    err.write(report.root_cause_text(plan, failure))
    report.write_failure(plan, failure, _outcomes(result.ranks))
    return EXIT_FAILED


def _outcomes(ranks):
    from launcher.supervise import describe_exit
    return [{"rank": r.spec.rank, "device": r.spec.device, "end": describe_exit(r.code)} for r in ranks]


def _success(plan, result, started, out, err, draw=True):
    e2e = time.time() - started
    stats = [report.rank_stats(r.spec, r.tail.records, r.started, r.ended) for r in result.ranks]
    summary = report.summarize(plan, stats, e2e, result.restarts)
    path, case_logs = report.write_success(plan, summary)
    picture, why_not = report.draw_picture(plan.node_dir, summary) if draw else (None, None)
    out.write(report.final_result_text(summary))
    out.write("summary: %s\nModelZoo summary: %s\n" % (path, case_logs[0] if case_logs else "-"))
    if picture:
        out.write("picture: %s\n" % picture)
    elif why_not:
        err.write("launcher: %s\n" % why_not)
    err.write("launcher: job %s finished in %s\n" % (plan.job_id, format_duration(e2e)))
    return 0
