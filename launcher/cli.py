"""`python -m launcher`: parse, check the user's input, plan, write the plan's files, supervise, report.

Every user mistake becomes one line on stderr and exit code 2; a failed job exits 1 after its root-cause
block; a launcher stopped by Ctrl-C, SIGTERM or SIGHUP ends every worker first and exits 128 + the signal.
"""
import argparse
import os
import shutil
import signal
import sys
import textwrap
import time

from launcher import files, report
from launcher import plan as plan_mod
from launcher.cores import format_cores
from launcher.errors import LaunchError
from launcher.metrics import read_records, run_records
from launcher.progress import Console, format_duration, progress_line
from launcher.rendezvous import DEFAULT_PORT as DEFAULT_RENDEZVOUS_PORT
from launcher.rendezvous import DEFAULT_TIMEOUT as DEFAULT_RENDEZVOUS_TIMEOUT
from train import flags

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise LaunchError("%s (see python -m launcher --help)" % message)


def build_parser():
    parser = _Parser(
        prog="python -m launcher", allow_abbrev=False,
        usage="python -m launcher --devices 0-7 --model NAME [options] [trainer options] [-- CMD ...]",
        description="\n".join(textwrap.fill(part, 100, break_on_hyphens=False) for part in (
            "Start one worker per device (Ascend NPU, GPU or CPU processes), watch them, report.",
            "Every other option is the trainer's (python -m train --help), checked here with the trainer's "
            "own parser and data checks before any worker starts.",
            "Every --dash-option is also accepted with underscores (--batch_size).",
            "`-- CMD ...` runs CMD as the worker instead, with the same environment plus torchrun's "
            "(MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK, ...).")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.fill("trainer options (python -m train --help): %s"
                             % ", ".join(_trainer_option_names()), 100, break_on_hyphens=False))
    job = parser.add_argument_group("job")
    job.add_argument("--devices",
                     help="npu/gpu: device ids (0-7, 0,1,4-5); cpu: a worker count (2) or ids (0-1)")
    job.add_argument("--output-dir", default="output",
                     help="the run directory: logs, metrics, checkpoints, TensorBoard, summary (default "
                          "./output); the trainer writes there too")
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
    multi.add_argument("--shm-allreduce", choices=("on", "off"), default="on",
                       help="cpu, every rank on this host: the trainer's collectives go through shared "
                            "memory (/dev/shm) instead of a gRPC server and TensorFlow's collective ops; "
                            "default on")
    multi.add_argument("--shm-root", metavar="DIR", default=None,
                       help="cpu, --shm-allreduce on: where its files go, a RAM-backed directory (default "
                            "/dev/shm; another tmpfs when a container's /dev/shm is small)")
    return flags.accept_underscores(parser)


def _trainer_option_names():
    from train import config
    names = []
    for action in config.build_parser()._actions:
        longs = [name for name in action.option_strings if name.startswith("--") and name != "--help"]
        if longs and longs[0] != "--output-dir":
            names.append(longs[0])
    return names


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
    """The launcher's options (a dict); in trainer mode also the trainer's, parsed and checked by the
    trainer's own parser (``options["trainer"]``, an argparse.Namespace) from the options the launcher does
    not know (``options["passthrough"]``, passed to every rank as they are)."""
    own, command = split_command(list(argv))
    parser = build_parser()
    clash = flags.conflict(parser, own)
    if clash:
        raise LaunchError(clash)
    args, passthrough = parser.parse_known_args(own)
    options = vars(args)
    options["command"] = command
    options["passthrough"] = passthrough
    for key in ("max_restarts", "nnodes"):
        if options.get(key) is not None and options[key] < (0 if key == "max_restarts" else 1):
            raise LaunchError("--%s %d is out of range" % (key.replace("_", "-"), options[key]))
    for key in ("stall_timeout", "grace_period", "table_wait"):
        if options.get(key) is not None and options[key] < 0:
            raise LaunchError("--%s must be 0 or more" % key.replace("_", "-"))
    options["trainer"] = None
    if command and passthrough:
        raise LaunchError("unknown option(s) %s: with -- CMD, put the worker's options after the command "
                          "(the trainer's options are for the built-in trainer)" % " ".join(passthrough))
    if not command and not options["list_models"]:
        trainer = parse_trainer(passthrough)
        options["trainer"] = trainer
        for key in ("model", "data_path", "batch_size", "epochs"):
            options[key] = getattr(trainer, key)
    return options


def shm_path(options, facts_mod):
    """Where the shared-memory allreduce's directory may go: --shm-root, which must be a writable
    directory, else /dev/shm (used only if it is one)."""
    path = options.get("shm_root")
    if path is None:
        return facts_mod.DEFAULT_SHM_ROOT
    path = os.path.abspath(path)
    if facts_mod.shm_root(path) is None:
        raise LaunchError("--shm-root %s is not a writable directory" % path)
    return path


def parse_trainer(argv):
    """The trainer's options, checked by the trainer's own parser before any rank starts, so that a typo
    such as --learning_rate=abc is one line now instead of a failed rank later (train.config imports no
    TensorFlow)."""
    from train import config
    from train.errors import TrainError
    parser = config.build_parser()
    try:
        if not flags.conflict(parser, argv):
            _, unknown = parser.parse_known_args(argv)
            unknown = [word for word in unknown if word.startswith("-")]
            if unknown:
                raise LaunchError("unknown option %s: not the launcher's (python -m launcher --help) nor "
                                  "the trainer's (python -m train --help)" % " ".join(unknown))
        if "model" not in flags.dests_given(parser, argv):
            raise LaunchError("no --model given: pass --model NAME (see --list-models) or a command "
                              "after --")
        return config.parse_flags(argv)
    except TrainError as error:
        raise LaunchError("trainer option: %s" % error) from None


def list_models(out):
    """One line per model: parameters and multiply-adds at 224x224 (1000 classes), then its options."""
    registry = _registry()
    out.write("models (params, MAdds at 224x224, 1000 classes): --model NAME [--model-option K=V]\n")
    for line in registry.summary_lines():
        out.write(line + "\n")
    return 0


def _registry():
    from models import registry  # imports TensorFlow lazily: only for a trainer job or --list-models
    return registry


def check_trainer_inputs(options, plan):
    """What every rank would refuse, refused once now with the trainer's own message (train.precheck: the
    model and its options, --image-size, the data path and layout, TFRecord files vs ranks, one global
    batch, --resume PATH, --eval-only). Returns what the ranks will do, for launch.json and the report."""
    from train import precheck
    trainer = options["trainer"]
    try:
        checked = precheck.check(trainer, plan.world_size, plan.checkpoint_dir)
    except Exception as error:
        if type(error).__name__ not in ("TrainError", "ModelError", "DataError"):
            raise
        raise LaunchError(str(error)) from None
    info = checked.info
    return plan_mod.TrainerChecks(
        data=info.summary(), data_path=trainer.data_path, synthetic=info.kind == "synthetic",
        data_path_given="data_path" in trainer.given, validation=bool(info.eval_count),
        evaluate=bool(trainer.eval and info.eval_count), total_steps=checked.schedule.total_steps,
        steps_per_epoch=checked.schedule.steps_per_epoch, resume=trainer.resume,
        resume_step=checked.resume_step, finished=bool(checked.finished), eval_only=bool(trainer.eval_only))


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
        from train import precheck
        try:
            precheck.check_model(options["trainer"])     # before a rank table or a rendezvous is waited for
        except Exception as error:
            if type(error).__name__ != "ModelError":
                raise
            raise LaunchError(str(error)) from None
    table = server = source = None
    if backend == "npu":
        from launcher import ascend
        notice = ascend.start_notice(options, facts["environ"])
        if notice:
            err.write("launcher: %s\n" % notice)
        table, server, source = ascend.resolve(options, facts)
    else:
        facts = meet_other_nodes(options, facts, backend, err)
    plan = plan_mod.make_plan(options, facts, table, server)
    if not options["command"]:
        plan = plan._replace(trainer=check_trainer_inputs(options, plan))
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
        facts = facts_mod.gather(options["backend"], shm_path(options, facts_mod))
        plan = prepare(options, facts, err)
        if options["dry_run"]:
            data_notes(plan.trainer, err)
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


def hold_shm_dir(plan, err):
    """Free what killed launchers left in /dev/shm (it is RAM), then make and lock this job's directory."""
    for path in files.stale_shm_dirs(os.path.dirname(plan.shm_dir)):
        shutil.rmtree(path, ignore_errors=True)
        err.write("launcher: removed %s: left by a launcher that was killed\n" % path)
    return files.hold_shm_dir(plan.shm_dir)


def run(plan, options, facts, out, err):
    """Write the plan's files, run the job (launcher.supervise.run_job), report. Returns the exit code."""
    from launcher import supervise, tee
    trainer = plan.trainer
    if trainer and trainer.finished:
        err.write("launcher: the run in %s is finished (step %s of %s): nothing to train; --resume never "
                  "starts over (the old checkpoints are kept aside), --eval-only evaluates it\n"
                  % (plan.checkpoint_dir, trainer.resume_step, trainer.total_steps))
        return 0
    continuing = start_notes(plan, trainer, err)
    moved = files.rotate_previous_run(plan, keep_metrics=continuing)
    if moved:
        err.write("launcher: the previous run's logs were kept: %s -> *.1 (and %d more file(s))\n"
                  % (moved[0], len(moved) - 1))
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
    lock = hold_shm_dir(plan, err) if plan.shm_dir else None
    try:
        result = supervise.run_job(plan, facts["environ"], on_tick, on_attempt_end, on_restart)
    finally:
        files.remove_shm_dir(plan)
        if lock:
            lock.close()
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


def start_notes(plan, trainer, err):
    """Say what the ranks will do before they start: the data (synthetic when no --data-path was given),
    no validation split, where the run continues from or that it starts over (moving old checkpoints
    aside), where TensorBoard logs go. True when the run continues (its metrics files are kept)."""
    say = err.write
    data_notes(trainer, err)
    continuing = False
    if not trainer:
        if files.has_checkpoints(plan):
            say("launcher: %s holds files from an earlier run; the command decides what to do with them\n"
                % plan.checkpoint_dir)
    elif trainer.resume == "never" or (trainer.resume not in ("auto", "never") and
                                       not _inside(trainer.resume, plan.checkpoint_dir)):
        # node 0 moves the shared directories (several nodes may share one output directory)
        for path in (plan.checkpoint_dir, plan.tensorboard_dir) if plan.node_rank == 0 else ():
            if files.has_files(path):
                from train import precheck
                say("launcher: %s: the previous run's %s moved to %s (nothing is deleted)\n"
                    % ("--resume never" if trainer.resume == "never" else "--resume PATH",
                       os.path.basename(path), precheck.move_aside(path)))
        if trainer.resume != "never":
            say("launcher: continuing from checkpoint %s (step %s of %s)\n"
                % (trainer.resume, trainer.resume_step, trainer.total_steps))
    elif trainer.resume_step is not None:
        continuing = True
        what = "evaluating" if trainer.eval_only else "resuming"
        say("launcher: %s the run in %s at step %s of %s (--resume never starts over; the summary covers "
            "the whole run)\n"
            % (what, plan.checkpoint_dir, trainer.resume_step, trainer.total_steps))
    if trainer and trainer.resume not in ("auto", "never") and _inside(trainer.resume, plan.checkpoint_dir):
        continuing = True
        say("launcher: continuing from checkpoint %s (step %s of %s)\n"
            % (trainer.resume, trainer.resume_step, trainer.total_steps))
    if trainer:
        say("launcher: TensorBoard logs: %s (view them: tensorboard --logdir %s)\n"
            % (plan.tensorboard_dir, plan.tensorboard_dir))
    return continuing


def data_notes(trainer, err):
    """What the ranks will train on: synthetic data when no --data-path was given, no validation split."""
    if not trainer:
        return
    if trainer.synthetic:
        err.write("launcher: %s: training on synthetic data (random images, no dataset read); give "
                  "--data-path DIR to train on a dataset\n" % (
                      "no --data-path given" if not trainer.data_path_given
                      else "--data-path %s" % trainer.data_path))
    else:
        err.write("launcher: data: %s\n" % trainer.data)
    if not trainer.validation:
        err.write("launcher: %s has no validation split: nothing is evaluated and TrainAccuracy will be the "
                  "training batches' accuracy\n" % trainer.data_path)


def _inside(path, directory):
    path, directory = os.path.abspath(path), os.path.abspath(directory)
    return os.path.dirname(path) == directory or path == directory


def _outcomes(ranks):
    from launcher.supervise import describe_exit
    return [{"rank": r.spec.rank, "device": r.spec.device, "end": describe_exit(r.code)} for r in ranks]


def _success(plan, result, started, out, err, draw=True):
    e2e = time.time() - started
    stats = [report.rank_stats(r.spec, run_records(read_records(r.spec.metrics_file)), r.started, r.ended)
             for r in result.ranks]
    summary = report.summarize(plan, stats, e2e, result.restarts)
    path, case_logs = report.write_success(plan, summary)
    picture, why_not = report.draw_picture(plan.node_dir, summary) if draw else (None, None)
    out.write(report.final_result_text(summary))
    out.write("summary: %s\nModelZoo summary: %s\n" % (path, case_logs[0] if case_logs else "-"))
    if picture:
        out.write("picture: %s\n" % picture)
    elif why_not:
        err.write("launcher: %s\n" % why_not)
    if plan.trainer:
        out.write("TensorBoard: tensorboard --logdir %s\n" % plan.tensorboard_dir)
    err.write("launcher: job %s finished in %s\n" % (plan.job_id, format_duration(e2e)))
    return 0
