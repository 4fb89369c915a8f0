"""Starting the ranks and watching them until the job ends.

Each rank runs in its own session (process group). The first rank to exit non-zero, die by a signal, or stop
writing metrics for --stall-timeout seconds fails the job: every group gets SIGTERM (and SIGCONT, so that a
stopped process can act on it), then SIGKILL after the grace period. The launcher is a child subreaper on
Linux, so grandchildren whose parent died are re-parented to it and are found and ended too; nothing
outlives it.
"""
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from typing import List, NamedTuple, Optional

import psutil

from contract.worker_env import NAMES as WORKER_ENV
from launcher import envrules, files
from launcher.metrics import MetricsTail, last_change, read_error_file

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_SECONDS = 0.05
WATCH_SECONDS = 0.5


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


LIBC = _load_libc()


def become_subreaper():
    """Orphaned descendants of the workers get re-parented to this process (Linux), so none can escape."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


def describe_exit(code):
    """'exit code 1' or 'killed by SIGKILL' for a Popen return code."""
    if code is None:
        return "still running"
    if code < 0:
        return "killed by %s" % signal_name(-code)
    return "exit code %d" % code


def _child_setup(cores):
    def setup():
        if LIBC is not None:
            LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)
    return setup


class Failure(NamedTuple):
    """The first failure of an attempt: which rank, how (launch, exit, signal, stall), when."""
    rank: int
    device: str
    kind: str
    detail: str
    time: float
    code: Optional[int] = None


class Rank:
    """One running rank: its spec, process, log file and metrics tail."""

    def __init__(self, spec):
        self.spec = spec
        self.proc = None
        self.started = None
        self.ended = None
        self.code = None
        self.tail = None


class Supervisor:
    """Runs one attempt of the job (all local ranks) and reports how it ended."""

    def __init__(self, plan, environ, on_tick=None):
        self.plan = plan
        self.environ = environ
        self.on_tick = on_tick
        self.interrupted = None
        self.ranks = []
        self.failure = None
        self._tracked = {}
        self._foreign = set(child.pid for child in _children())   # not ours: a host process's own children

    def request_stop(self, signum, frame=None):
        """Signal handler for SIGINT/SIGTERM/SIGHUP: the loop tears the job down at its next turn."""
        if self.interrupted is None:
            self.interrupted = signum

    def start(self, attempt):
        self.ranks = []
        self.failure = None
        for spec in self.plan.ranks:
            rank = Rank(spec)
            rank.tail = MetricsTail(spec.metrics_file, offset=_size(spec.metrics_file))
            self.ranks.append(rank)
            settings = dict(spec.env, **{WORKER_ENV["restart"]: str(attempt)})
            if WORKER_ENV["elastic_restart_count"] in settings:      # -- CMD: torchrun's restart count
                settings[WORKER_ENV["elastic_restart_count"]] = str(attempt)
            env = envrules.worker_environ(self.environ, set(self.plan.dropped_env), settings)
            with open(spec.log_path, "ab") as log:
                if attempt:
                    note = "\n[launcher] restart %d of job %s\n" % (attempt, self.plan.job_id)
                    log.write(note.encode())
                    log.flush()
                try:
                    rank.proc = subprocess.Popen(
                        spec.argv, env=env, cwd=self.plan.cwd, stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                        preexec_fn=_child_setup(spec.cores))
                except OSError as error:
                    detail = "cannot start %s: %s" % (spec.argv[0], error.strerror or error)
                    self.failure = Failure(rank=spec.rank, device=spec.device, kind="launch", detail=detail,
                                           time=time.time())
                    return False
            rank.started = time.time()
        return True

    def watch(self):
        """Poll until every rank exited 0, one failed, or the launcher was told to stop; returns a status."""
        next_watch = 0.0
        while True:
            now = time.time()
            if self.interrupted is not None:
                return "interrupted"
            newly = []
            for rank in self.ranks:
                if rank.code is None and rank.proc is not None:
                    code = rank.proc.poll()
                    if code is not None:
                        rank.code, rank.ended = code, now
                        newly.append(rank)
            failed = [rank for rank in newly if rank.code != 0]
            if failed:
                self.failure = self._first_failure(failed)
                return "failed"
            if now >= next_watch:
                next_watch = now + WATCH_SECONDS
                self._track_descendants()
                for rank in self.ranks:
                    rank.tail.poll()
                stalled = self._stalled(now)
                if stalled is not None:
                    self.failure = stalled
                    return "failed"
                if self.on_tick is not None:
                    self.on_tick(self, now)
            if all(rank.code == 0 for rank in self.ranks):
                for rank in self.ranks:
                    rank.tail.poll()
                return "ok"
            time.sleep(POLL_SECONDS)

    def _first_failure(self, failed):
        """Among ranks found dead in the same poll: deaths by signal first, then the earliest error file.

        A rank that failed waiting for a peer (a collective timeout or a lost connection) did not cause the
        failure: when another rank is stopped (SIGSTOP, a debugger) or, for a collective failure, made the
        least progress, that rank is named, and the one that gave up is told as the one that noticed.
        """
        errors = {}

        def order(rank):
            errors[rank] = read_error_file(rank.spec.error_file) or {}
            return (0 if rank.code < 0 else 1, errors[rank].get("time") or rank.ended)
        rank = sorted(failed, key=order)[0]
        failure = Failure(rank=rank.spec.rank, device=rank.spec.device,
                          kind="signal" if rank.code < 0 else "exit", code=rank.code,
                          detail=describe_exit(rank.code), time=rank.ended)
        if rank.code < 0:
            return failure
        others = [other for other in self.ranks if other is not rank and other.code is None]
        stopped = [other for other in others if _stopped(other.proc)]
        culprit = None
        if stopped:
            culprit, how = stopped[0], "its process is stopped (SIGSTOP or a debugger)"
        elif others and _waited_for_a_peer(errors.get(rank)):
            culprit = self._least_progress(others)
            how = "it made the least progress (%s)" % self._progress_text(culprit)
        if culprit is None:
            return failure
        message = (errors.get(rank) or {}).get("message") or ""
        return Failure(rank=culprit.spec.rank, device=culprit.spec.device, kind="blocked",
                       detail="%s; rank %s failed waiting for it (%s%s)"
                              % (how, rank.spec.rank, describe_exit(rank.code),
                                 ": " + message.splitlines()[0] if message else ""),
                       time=rank.ended)

    def _stalled(self, now):
        """A failure when some rank wrote no metrics for --stall-timeout seconds, naming the rank that stopped
        making progress: a stopped process first, then the oldest heartbeat, then the lowest step (the ranks
        that wait for it in a collective are silent too, but they are not the cause)."""
        timeout = self.plan.stall_timeout
        if not timeout:
            return None
        live = [rank for rank in self.ranks if rank.code is None]
        silent = [rank for rank in live if now - self._heartbeat(rank) > timeout]
        if not silent:
            return None
        stopped = [rank for rank in live if _stopped(rank.proc)]
        culprit = stopped[0] if stopped else self._least_progress(live)
        waited = now - self._heartbeat(culprit)
        if stopped:
            detail = "its process is stopped (SIGSTOP or a debugger); no metrics for %.0f s" % waited
        else:
            detail = "no metrics for %.0f s (--stall-timeout %g); %s" % (
                waited, timeout, "it made the least progress (%s)" % self._progress_text(culprit)
                if len(live) > 1 else "no progress")
        waiting = [rank.spec.rank for rank in silent if rank is not culprit]
        if waiting:
            detail += "; rank(s) %s waited for it" % ",".join(str(r) for r in waiting)
        return Failure(rank=culprit.spec.rank, device=culprit.spec.device,
                       kind="stopped" if stopped else "stall", detail=detail, time=now)

    @staticmethod
    def _heartbeat(rank):
        return max(rank.started or 0.0, last_change(rank.spec.metrics_file) or 0.0)

    @staticmethod
    def _step(rank):
        record = rank.tail.last("train") if rank.tail is not None else None
        step = record.get("step") if record else None
        return step if isinstance(step, (int, float)) else -1

    def _least_progress(self, ranks):
        """The rank whose metrics are oldest, then whose step is lowest."""
        return sorted(ranks, key=lambda rank: (self._heartbeat(rank), self._step(rank), rank.spec.rank))[0]

    def _progress_text(self, rank):
        step = self._step(rank)
        return "last metrics %.0f s ago%s" % (time.time() - self._heartbeat(rank),
                                             ", step %d" % step if step >= 0 else ", no step yet")

    def _track_descendants(self):
        """Remember every descendant seen, so that one that left its process group is still ended."""
        for child in _children():
            if child.pid in self._foreign:
                continue
            self._tracked.setdefault(child.pid, child)
            try:
                for proc in child.children(recursive=True):
                    self._tracked.setdefault(proc.pid, proc)
            except psutil.Error:
                pass

    def teardown(self, grace):
        """SIGTERM (+SIGCONT) to every rank's group and every known descendant; SIGKILL after ``grace``."""
        self._track_descendants()
        self._send(signal.SIGTERM)
        self._send(signal.SIGCONT)
        deadline = time.time() + grace
        while time.time() < deadline and self._anything_alive():
            time.sleep(0.02)
        if self._anything_alive():
            self._track_descendants()
            self._send(signal.SIGKILL)
            end = time.time() + 5.0
            while time.time() < end and self._anything_alive():
                time.sleep(0.02)
        now = time.time()
        for rank in self.ranks:
            if rank.proc is not None and rank.code is None:
                rank.code = rank.proc.poll()
                rank.ended = now

    def _groups(self):
        return [rank.proc.pid for rank in self.ranks if rank.proc is not None]

    def _send(self, signum):
        for pgid in self._groups():
            try:
                os.killpg(pgid, signum)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in list(self._tracked.values()):
            try:
                if proc.is_running():
                    proc.send_signal(signum)
            except psutil.Error:
                pass

    def _reap_orphans(self):
        """Collect re-parented descendants that have exited (they are this process's children now)."""
        leaders = set(self._groups())
        for child in _children():
            if child.pid in leaders or child.pid in self._foreign:
                continue
            try:
                os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def _anything_alive(self):
        alive = False
        for rank in self.ranks:
            if rank.proc is not None and rank.proc.poll() is None:
                alive = True
        self._reap_orphans()
        for pgid in self._groups():
            try:
                os.killpg(pgid, 0)
                alive = True
            except ProcessLookupError:
                pass
            except PermissionError:
                alive = True
        for pid, proc in list(self._tracked.items()):
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive = True
                else:
                    del self._tracked[pid]
            except psutil.Error:
                del self._tracked[pid]
        return alive

    def cleanup_after_success(self, grace):
        """After every rank exited 0, end whatever they left running (daemons, forgotten children)."""
        self._track_descendants()
        if self._anything_alive():
            self.teardown(grace)
            return True
        return False


class JobResult(NamedTuple):
    """How a job ended after every attempt: ok, interrupted (by a signal) or failed (see failure.kind)."""
    status: str
    restarts: int                  # attempts after the first
    failure: Optional[Failure]     # the last attempt's first failure (status failed)
    signal: Optional[int]          # the signal that stopped the launcher (status interrupted)
    ranks: List[Rank]              # the last attempt's ranks (records, start/end times, exit codes)


def run_job(plan, environ, on_tick=None, on_attempt_end=None, on_restart=None):
    """Start, watch and restart the ranks per the restart policy; every worker has ended on return.

    Policy: a failed attempt (not a worker that could not be started, not a stop signal) is retried up to
    plan.max_restarts times, the ranks' error files moved aside first. SIGINT/SIGTERM/SIGHUP end the job.
    ``on_tick(supervisor, now)`` runs while watching, ``on_attempt_end(supervisor)`` after each attempt's
    teardown, ``on_restart(failure, attempt)`` before a restart.
    """
    sup = Supervisor(plan, environ, on_tick=on_tick)
    previous = {signum: signal.signal(signum, sup.request_stop) for signum in STOP_SIGNALS}
    try:
        attempt = 0
        while True:
            status = "failed" if not sup.start(attempt) else sup.watch()
            if status == "ok":
                sup.cleanup_after_success(plan.grace_period)
            else:
                sup.teardown(plan.grace_period)
            if on_attempt_end is not None:
                on_attempt_end(sup)
            if status == "failed" and sup.failure.kind != "launch" and attempt < plan.max_restarts:
                attempt += 1
                if on_restart is not None:
                    on_restart(sup.failure, attempt)
                for spec in plan.ranks:
                    files.rotate(spec.error_file)
                continue
            return JobResult(status=status, restarts=attempt,
                             failure=sup.failure if status == "failed" else None,
                             signal=sup.interrupted if status == "interrupted" else None, ranks=sup.ranks)
    except BaseException:
        sup.teardown(min(plan.grace_period, 2.0))    # a launcher bug or a closed stdout: no orphans either
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stopped(proc):
    """True when the rank's process, or any of its descendants, is stopped (SIGSTOP, a debugger)."""
    if proc is None:
        return False
    try:
        root = psutil.Process(proc.pid)
        for each in [root] + root.children(recursive=True):
            if each.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
                return True
    except psutil.Error:
        return False
    return False


def _waited_for_a_peer(error):
    """True when a rank's error record says it failed in a collective: a timeout or a lost peer."""
    if not error:
        return False
    text = "%s %s" % (error.get("type") or "", error.get("message") or "")
    return any(mark in text for mark in ("DeadlineExceeded", "lost contact", "collective", "Collective",
                                         "timed out", "Unavailable"))


def _children():
    """This process's direct children (psutil), [] if they cannot be listed."""
    try:
        return psutil.Process().children()
    except psutil.Error:
        return []


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
