"""The launcher against real worker processes (tests/workers/worker.py): success, failures, stalls, signals,
forked children, restarts, a second run, --tee, --dry-run. No process is mocked."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from helpers import ROOT, project_env

from launcher import cores

WORKER = os.path.join(ROOT, "tests", "workers", "worker.py")


def env():
    return project_env()


def launcher_argv(out, *options, worker=()):
    return ([sys.executable, "-m", "launcher", "--output-dir", str(out), "--progress-interval", "0"]
            + list(options) + ["--", sys.executable, WORKER] + list(worker))


def launch(tmp_path, *options, worker=(), timeout=60, plot="off"):
    out = tmp_path / "out"
    proc = subprocess.run(launcher_argv(out, "--plot", plot, *options, worker=worker), cwd=str(tmp_path),
                          env=env(), capture_output=True, timeout=timeout)
    text = proc.stdout.decode("utf-8", "replace")
    return proc.returncode, text, proc.stderr.decode("utf-8", "replace"), out


def seen(out, device):
    with open(str(out / str(device) / "seen_env.json")) as handle:
        return json.load(handle)


def worker_pids(out, devices):
    pids = [int(seen(out, d)["PID"]) for d in devices]
    for device in devices:
        path = out / str(device) / "children.json"
        if path.exists():
            pids += json.loads(path.read_text())
    return pids


def assert_all_gone(pids):
    deadline = time.time() + 5
    alive = pids
    while alive and time.time() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    assert not alive, "survivors: %s" % alive


def test_all_ranks_succeed_and_the_report_covers_every_rank(tmp_path):
    code, out_text, err_text, out = launch(tmp_path, "--devices", "2", "--network", "tiny", "--case", "perf",
                                           worker=["--steps", "4", "--fork", "2"], plot="on")
    assert code == 0, err_text
    assert "------------------ Final result ------------------" in out_text
    assert "Final Performance images/sec : 201.0" in out_text and "E2E Training Duration sec :" in out_text
    assert "step 4/4 (100%)" in out_text and (out / "run.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [r["rank"] for r in summary["ranks"]] == [0, 1] and summary["total_images_per_sec"] == 201.0
    case_log = (out / "0" / "tiny_bs8_2p_perf.log").read_text().splitlines()
    assert case_log[0] == "Network = tiny" and case_log[4] == "CaseName = tiny_bs8_2p_perf"
    assert case_log[7] == "TrainAccuracy = 0.5" and len(case_log) == 10
    assert "step 4 loss" in (out / "1" / "train_1.log").read_text()
    plan = json.loads((out / "launch.json").read_text())
    expected = cores.split_cores(sorted(os.sched_getaffinity(0)), 2)
    for device in (0, 1):
        env_seen = seen(out, device)
        assert env_seen["RANK_ID"] == str(device) and env_seen["RANK_SIZE"] == "2"
        assert env_seen["LAUNCH_PEERS"] == ",".join(plan["peers"]) and env_seen["JOB_ID"] == plan["job_id"]
        assert json.loads(env_seen["AFFINITY"]) == expected[device]
    assert_all_gone(worker_pids(out, (0, 1)))          # the forked children were ended too


def test_a_rank_that_exits_1_stops_the_job_and_is_named(tmp_path):
    code, _, err_text, out = launch(tmp_path, "--devices", "2",
                                    worker=["--rank", "1", "--exit", "3", "--forever"])
    assert code == 1
    assert "first failure: rank 1 (device 1): exit code 3" in err_text
    assert "ValueError: planned failure at step" in err_text and "| failing on purpose" in err_text
    failure = json.loads((out / "failure.json").read_text())
    assert failure["first_failure"]["rank"] == 1 and failure["error"]["type"] == "ValueError"
    assert "Traceback" not in err_text.split("traceback:")[0]
    assert_all_gone(worker_pids(out, (0, 1)))


def test_a_sigkilled_rank_is_reported_by_signal_name(tmp_path):
    code, _, err_text, out = launch(tmp_path, "--devices", "3",
                                    worker=["--rank", "2", "--kill-self", "--forever"])
    assert code == 1 and "first failure: rank 2 (device 2): killed by SIGKILL" in err_text
    assert_all_gone(worker_pids(out, (0, 1, 2)))


def test_a_frozen_rank_is_caught_by_the_stall_timeout(tmp_path):
    code, _, err_text, out = launch(tmp_path, "--devices", "2", "--stall-timeout", "3",
                                    "--grace-period", "1",
                                    worker=["--rank", "0", "--freeze", "--forever"])
    assert code == 1 and "first failure: rank 0 (device 0): its process is stopped" in err_text
    assert_all_gone(worker_pids(out, (0, 1)))


def test_a_restart_resumes_from_the_checkpoint(tmp_path):
    code, _, err_text, out = launch(tmp_path, "--devices", "2", "--max-restarts", "1",
                                    worker=["--rank", "0", "--exit", "1", "--only-first-attempt",
                                            "--steps", "4", "--at-step", "3"])
    assert code == 0, err_text
    assert "rank 0 failed (exit code 1); restarting the job (1/1)" in err_text
    assert seen(out, 1)["LAUNCH_RESTART"] == "1"
    restored = []
    for device in (0, 1):       # rank 0 saved step 3 before it failed; the restarted ranks resume from there
        lines = (out / str(device) / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        restored.append([r["step"] for r in records if r.get("phase") == "restore"])
    assert restored[0] == [3] and len(restored[1]) == 1 and restored[1][0] >= 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["restarts"] == 1 and [r["steps"] for r in summary["ranks"]] == [7, restored[1][0] + 4]
    assert "[launcher] restart 1" in (out / "0" / "train_0.log").read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stopping_the_launcher_ends_every_worker_and_child(tmp_path, signum):
    out = tmp_path / "out"
    proc = subprocess.Popen(launcher_argv(out, "--devices", "2", "--grace-period", "0.5",
                                          worker=["--forever", "--fork", "2", "--ignore-term"]),
                            cwd=str(tmp_path), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline and not all((out / str(d) / "children.json").exists() for d in (0, 1)):
        time.sleep(0.05)
    pids = worker_pids(out, (0, 1))
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum
    assert ("stopped by %s" % signal.Signals(signum).name) in err.decode()
    assert_all_gone(pids)


def test_a_second_run_keeps_the_first_runs_files(tmp_path):
    assert launch(tmp_path, "--devices", "1", worker=["--steps", "2"])[0] == 0
    code, _, err_text, out = launch(tmp_path, "--devices", "1", worker=["--steps", "2"])
    assert code == 0
    for name in ("0/train_0.log.1", "0/metrics.jsonl.1", "summary.json.1", "launch.json.1"):
        assert (out / name).exists(), name
    assert "previous run's logs were kept" in err_text and "holds files from an earlier run" in err_text


def test_tee_shows_chosen_ranks_with_a_prefix_and_survives_bad_bytes(tmp_path):
    code, out_text, _, _ = launch(tmp_path, "--devices", "2", "--tee", "0",
                                  worker=["--garbage", "--steps", "2"])
    assert code == 0
    assert "[rank 0] bad bytes \ufffd\ufffd here" in out_text and "[rank 0] step 2 loss 0.500" in out_text
    assert "[rank 1]" not in out_text


def test_dry_run_writes_the_plan_and_starts_nothing_and_the_run_script_works(tmp_path):
    code, out_text, _, out = launch(tmp_path, "--devices", "2", "--dry-run", worker=["--steps", "1"])
    assert code == 0 and "rank 1" in out_text and "launch.json" in out_text
    assert (out / "launch.json").exists() and (out / "1" / "rank.env").exists()
    assert not (out / "0" / "seen_env.json").exists() and not (out / "0" / "train_0.log").exists()
    script = str(out / "1" / "run_1.sh")
    subprocess.run(["sh", script], env=dict(env(), RANK_ID="7"), timeout=60, check=True,
                   stdout=subprocess.DEVNULL)
    assert seen(out, 1)["RANK_ID"] == "1" and seen(out, 1)["RANK_SIZE"] == "2"


def test_a_closed_stdout_ends_the_job_without_a_traceback(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(launcher_argv(out, "--devices", "2", "--tee", "all", "--grace-period", "1",
                                          worker=["--forever"]),
                            cwd=str(tmp_path), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()                 # like `python -m launcher ... | head -1`
    err = proc.stderr.read().decode()
    proc.wait(timeout=30)
    assert proc.returncode == 1 and "stdout was closed" in err and "Traceback" not in err
    assert_all_gone(worker_pids(out, (0, 1)))


def test_a_second_job_on_the_host_avoids_the_first_jobs_ports(tmp_path):
    first_out = tmp_path / "first"
    argv = launcher_argv(first_out, "--devices", "2", "--job-id", "4242", "--grace-period", "1",
                         worker=["--forever", "--listen"])
    proc = subprocess.Popen(argv, cwd=str(tmp_path), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not all((first_out / str(d) / "listening").exists()
                                                 for d in (0, 1)):
            time.sleep(0.05)
        code, _, err, second_out = launch(tmp_path, "--devices", "2", "--job-id", "4242", "--dry-run")
        assert code == 0, err
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    first = json.loads((first_out / "launch.json").read_text())["peers"]
    second = json.loads((second_out / "launch.json").read_text())["peers"]
    assert len(first) == len(second) == 2 and not set(first) & set(second)


def test_a_killed_launchers_shared_memory_is_freed_by_the_next_launcher_but_a_live_ones_is_kept(tmp_path):
    """A launcher removes its shared-memory directory (RAM, under /dev/shm) when the job ends; one killed
    before it could (SIGKILL, the OOM killer) leaves it behind. The next launcher frees such a directory,
    never a running launcher's: each holds a lock in its own (a pid could be another namespace's). The
    jobs share a --shm-root of this test's, so no other launcher on the host takes part."""
    root = tmp_path / "shm"
    root.mkdir()

    def job(name, *worker):
        out = tmp_path / name
        argv = launcher_argv(out, "--devices", "2", "--shm-root", str(root), "--plot", "off", worker=worker)
        return out, subprocess.Popen(argv, cwd=str(tmp_path), env=env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    first_out, first = job("first", "--forever")
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not all((first_out / str(d) / "seen_env.json").exists()
                                                 for d in (0, 1)):
            time.sleep(0.05)
        shm_dir = json.loads((first_out / "launch.json").read_text())["shm_dir"]
        assert os.path.dirname(shm_dir) == str(root) and seen(first_out, 0)["LAUNCH_SHM_DIR"] == shm_dir
        assert os.path.isdir(shm_dir)

        _, second = job("second", "--steps", "1")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err.decode()
        assert os.path.isdir(shm_dir), "a running launcher's directory was removed"
        assert os.listdir(str(root)) == [os.path.basename(shm_dir)]     # the second's own is gone too

        pids = worker_pids(first_out, (0, 1))
        first.kill()
        first.wait(timeout=30)
        assert_all_gone(pids)                     # the workers die with their launcher (PR_SET_PDEATHSIG)
        assert os.path.isdir(shm_dir)             # no cleanup ran in a SIGKILLed launcher
        _, third = job("third", "--steps", "1")
        _, err = third.communicate(timeout=60)
        assert third.returncode == 0, err.decode()
        assert "launcher: removed %s: left by a launcher that was killed" % shm_dir in err.decode()
        assert os.listdir(str(root)) == []
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_a_shm_root_that_is_not_a_writable_directory_is_one_line(tmp_path):
    code, _, err, out = launch(tmp_path, "--devices", "2", "--shm-root", str(tmp_path / "nowhere"))
    assert code == 2 and err.strip().splitlines() == [
        "launcher: error: --shm-root %s is not a writable directory" % (tmp_path / "nowhere")]
    assert not out.exists()
