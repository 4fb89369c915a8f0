"""The seed's own job, shortened: a 2-class image folder of real photos (scikit-image's bundled faces /
non-faces) at the seed's settings (batch 2, learning rate 0.001 unscaled, Adam) from scratch and through
--finetune from a checkpoint trained on other classes (the digits) must reach a validation top-1 well above
chance (0.5). The full-length job is bench/bench_small_data.py (figures in bench/RESULTS.md); here 3 epochs
at 48 px keep the suite light."""
import json
import os

import pytest

from data import digits, faces
from train.__main__ import main

pytestmark = pytest.mark.slow

SEED = ["--model", "mobilenetv3_small", "--image-size", "48", "--batch-size", "2",
        "--learning_rate=0.001", "--lr_scaling=none", "--optimizer=adam", "--no-export", "--log-every", "40"]
WELL_ABOVE_CHANCE = 0.75  # 30 of the 40 validation images; chance is 20


def final_eval(output):
    with open(os.path.join(output, "0", "metrics.jsonl")) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    evals = [r for r in rows if r["event"] == "eval"]
    return (evals[-1] if evals else None), [r for r in rows if r["event"] == "bn_recalibrate"]


def train(output, *flags):
    output = str(output)
    # one thread per pool: CPU kernels then sum in one order, so the run (and the test) is reproducible
    env = {"LAUNCH_OUTPUT_DIR": output, "LAUNCH_INTRA_OP_THREADS": "1", "LAUNCH_INTER_OP_THREADS": "1"}
    assert main(list(flags) + ["--output-dir", output], env=env) == 0
    return final_eval(output)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("small")
    faces.write_faces(str(base / "faces"))
    digits.write_digits(str(base / "digits"), size=16)
    return str(base / "faces"), str(base / "digits")


def test_the_seed_job_learns_the_faces_from_scratch(folders, tmp_path):
    result, told = train(tmp_path / "scratch", "--data-path", folders[0], "--epochs", "3", *SEED)
    assert result["count"] == 40 and result["top1"] >= WELL_ABOVE_CHANCE
    assert told and told[-1]["batches"] >= 1  # evaluated with re-estimated BN statistics


def test_the_seed_job_through_finetune_from_other_classes(folders, tmp_path):
    source = tmp_path / "digits"
    train(source, "--model", "mobilenetv3_small", "--image-size", "48", "--data-path", folders[1],
          "--batch-size", "16", "--max-steps", "60", "--learning_rate=0.4", "--no-eval", "--no-export")
    # the new head starts from nothing on a backbone tuned to digits: 5 epochs instead of 3
    result, _ = train(tmp_path / "finetune", "--data-path", folders[0], "--finetune",
                      str(source / "checkpoints"), "--epochs", "5", *SEED)
    assert result["count"] == 40 and result["top1"] >= WELL_ABOVE_CHANCE
