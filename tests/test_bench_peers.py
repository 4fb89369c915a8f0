"""bench/bench_peers.py's ceiling arithmetic: what one-worker jobs on their own cores compute together, and
the lockstep bound (each step as slow as the slower core's), from the per-step records the jobs log."""
import json
import types

import pytest

from bench.bench_peers import alone_rates


def write_steps(directory, times):
    directory.mkdir()
    with open(str(directory / "metrics.jsonl"), "w") as handle:
        handle.write(json.dumps({"event": "phase", "phase": "train"}) + "\n")
        for step, seconds in enumerate(times, start=1):
            handle.write(json.dumps({"event": "train", "step": step, "step_time": seconds}) + "\n")


def test_the_lockstep_bound_waits_for_the_slower_core_at_every_step(tmp_path):
    # 2 warm-up steps, then 4 timed: core 0 is slow in the first half, core 1 in the second
    write_steps(tmp_path / "0", [9.0, 9.0, 0.2, 0.2, 0.1, 0.1])
    write_steps(tmp_path / "1", [9.0, 9.0, 0.1, 0.1, 0.2, 0.2])
    together, lockstep = alone_rates(str(tmp_path), 2, types.SimpleNamespace(steps=2, batch_size=32))
    # each job alone: 4 steps of 32 images in 0.6 s; in lockstep every step takes 0.2 s
    assert together == pytest.approx(2 * 32 * 4 / 0.6)
    assert lockstep == pytest.approx(2 * 32 * 4 / 0.8)


def test_a_job_that_logged_too_few_steps_is_an_error(tmp_path):
    write_steps(tmp_path / "0", [9.0, 9.0, 0.2, 0.2])
    write_steps(tmp_path / "1", [9.0, 9.0, 0.2])
    with pytest.raises(SystemExit, match="1 timed steps logged, expected 2"):
        alone_rates(str(tmp_path), 2, types.SimpleNamespace(steps=2, batch_size=32))
