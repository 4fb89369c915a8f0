"""Resume is explicit and visible at the launcher: a finished run says so and exits 0 without starting a
rank; --resume never moves the old checkpoints aside and starts over; a resumed run's summary covers
every segment; no validation split and the TensorBoard directory are told at start."""
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

JOB = ["--devices", "1", "--backend", "cpu", "--plot", "off", "--model", "smoke",
       "--data-path", "synthetic:4:16:0", "--image-size", "32", "--batch-size", "4", "--no-export",
       "--log-every", "1"]


def launch(tmp_path, *argv, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "launcher"] + list(argv), cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def fake_checkpoint(directory, step):
    """The files a finished run leaves (the launcher reads only the index file and checks the .index)."""
    os.makedirs(str(directory))
    (directory / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-%d"\n' % step)
    (directory / ("model.ckpt-%d.index" % step)).write_bytes(b"")


def test_a_finished_run_says_so_and_starts_no_rank(tmp_path):
    fake_checkpoint(tmp_path / "output" / "checkpoints", 8)
    code, _, err = launch(tmp_path, *(JOB + ["--max-steps", "8"]), timeout=120)
    assert code == 0, err
    assert "is finished (step 8 of 8): nothing to train; --resume never starts over" in err
    assert not os.path.exists(str(tmp_path / "output" / "0" / "train_0.log"))


@pytest.mark.slow
def test_never_moves_old_checkpoints_aside_and_auto_continues_with_a_whole_run_summary(tmp_path):
    fake_checkpoint(tmp_path / "output" / "checkpoints", 100)
    code, out, err = launch(tmp_path, *(JOB + ["--max-steps", "2", "--resume", "never"]))
    assert code == 0, out + err
    assert "--resume never: the previous run's checkpoints moved to" in err
    assert os.path.exists(str(tmp_path / "output" / "checkpoints.1" / "model.ckpt-100.index"))
    assert "has no validation split: nothing is evaluated" in err
    tensorboard = str(tmp_path / "output" / "tensorboard")
    assert "TensorBoard logs: %s (view them: tensorboard --logdir %s)" % (tensorboard, tensorboard) in err
    assert "TensorBoard: tensorboard --logdir %s" % tensorboard in out
    assert "Train Accuracy measured on : training batches" in out

    code, out, err = launch(tmp_path, *(JOB + ["--max-steps", "4"]))
    assert code == 0, out + err
    assert "resuming the run in %s at step 2 of 4" % str(tmp_path / "output" / "checkpoints") in err
    summary = json.loads((tmp_path / "output" / "summary.json").read_text())
    assert summary["ranks"][0]["segments"] == 2 and summary["ranks"][0]["steps"] == 4
    steps = [json.loads(line)["step"] for line in open(str(tmp_path / "output" / "0" / "metrics.jsonl"))
             if '"event": "train"' in line]
    assert steps == [1, 2, 3, 4]                    # one metrics file for the whole run
    assert summary["fps_method"].startswith("images/s = images / seconds")
