"""python -m train.predict: an exported model or a checkpoint directory plus images -> top-k class names.

One short real training run (the registry's ShuffleNetV1 on scikit-image's faces, 2 steps) provides both
an export and checkpoints; the two must give the same probabilities for the same images, since both use
the trainer's evaluation preprocessing and the same weights. The same run is the test of python -m
train's own wiring (models.registry, data.pipeline on an image folder, train.backends, the export).
"""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, records
from helpers.frozen import run_frozen

from data import faces
from train import predict
from train.__main__ import main as train_main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    base = tmp_path_factory.mktemp("predict")
    data = str(base / "faces")
    faces.write_faces(data)
    out = str(base / "job")
    argv = ["--model", "shufflenetv1", "--model-option", "groups=1", "--model-option", "scale=0.5",
            "--data-path", data, "--image-size", "32",
            "--batch-size", "8", "--max-steps", "2", "--log-every", "1", "--output-dir", out]
    assert train_main(argv, env={"LAUNCH_OUTPUT_DIR": out}) == 0
    return {"data": data, "out": out}


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = predict.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def parse(text):
    rows = {}
    for line in text.splitlines():
        path, ranked = line.split("\t")
        parts = ranked.split("  ")
        rows[path] = [(part.split(" ")[0], float(part.split(" ")[1])) for part in parts]
    return rows


def test_the_real_registry_and_pipeline_train_evaluate_and_export(job):
    metrics = os.path.join(job["out"], "0", "metrics.jsonl")
    assert [r["step"] for r in records(metrics, "train")] == [1, 2]
    assert records(metrics, "eval")[-1]["count"] == 40  # every validation image once
    export = os.path.join(job["out"], "export", "step_2")
    with open(os.path.join(export, "preprocessing.json")) as handle:
        described = json.load(handle)
    assert described["preprocessing"]["mean"] and described["num_classes"] == 2
    assert run_frozen(os.path.join(export, "frozen_graph.pb"), described).shape == (2, 2)
    with open(os.path.join(job["out"], "checkpoints", "run_meta.json")) as handle:
        assert json.load(handle)["model_options"] == ["groups=1", "scale=0.5"]


def test_export_and_checkpoint_give_the_same_top_k(job):
    images = os.path.join(job["data"], "validation", "face")
    code, text, err = run(os.path.join(job["out"], "export", "step_2"), images, "--top-k", "2")
    assert code == 0, err
    by_export = parse(text)
    expected = sorted(os.path.join(images, name) for name in os.listdir(images))
    assert sorted(by_export) == expected and len(text.splitlines()) == len(expected)  # one line per image
    for ranked in by_export.values():
        assert sorted(name for name, _ in ranked) == ["face", "nonface"]
        assert ranked[0][1] >= ranked[1][1] and sum(p for _, p in ranked) == pytest.approx(1.0, abs=2e-4)
    code, text, err = run(os.path.join(job["out"], "checkpoints"), images, "--top-k", "2")
    assert code == 0, err
    by_checkpoint = parse(text)
    for path, ranked in by_export.items():
        assert dict(ranked) == pytest.approx(dict(by_checkpoint[path]), abs=2e-4)


def test_job_dir_json_and_top_1(job):
    image = os.path.join(job["data"], "validation", "nonface", sorted(
        os.listdir(os.path.join(job["data"], "validation", "nonface")))[0])
    code, text, err = run(job["out"], image, "--json", "--top-k", "1")  # the newest export of the job
    assert code == 0, err
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 1 and rows[0]["image"] == image
    assert len(rows[0]["top"]) == 1 and rows[0]["top"][0]["class"] in ("face", "nonface")
    assert 0.5 <= rows[0]["top"][0]["probability"] <= 1.0


def test_top_k_orders_by_probability():
    names = ["a", "b", "c"]
    assert predict.top_k(np.array([0.2, 0.5, 0.3]), names, 2) == [("b", 0.5), ("c", 0.3)]


def test_mistakes_are_one_line_and_exit_2(job, tmp_path):
    export = os.path.join(job["out"], "export", "step_2")
    image = os.path.join(job["data"], "validation", "face", "lfw_000.png")
    if not os.path.exists(image):
        image = os.path.join(job["data"], "validation", "face",
                             sorted(os.listdir(os.path.join(job["data"], "validation", "face")))[0])
    code, _, err = run(str(tmp_path / "nothing"), image)
    assert code == 2 and err.count("\n") == 1 and "model %s not found" % (tmp_path / "nothing") in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(str(tmp_path / "empty"), image)
    assert code == 2 and "no exported model or checkpoint in" in err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    code, out, err = run(export, image, str(broken))
    assert code == 2 and err.count("\n") == 1 and "image %s is unreadable" % broken in err and not out
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    code, _, err = run(export, image, "--labels", str(labels))
    assert code == 2 and "name 3 classes but the model has 2 outputs" in err
    code, _, err = run(export, str(tmp_path / "missing.jpg"))
    assert code == 2 and "image %s not found" % (tmp_path / "missing.jpg") in err
    code, _, err = run(export, str(tmp_path / "empty"))
    assert code == 2 and "holds no .jpg" in err


def test_the_command_line(job):
    image = os.path.join(job["data"], "validation", "face")
    code, out, err = run(os.path.join(job["out"], "checkpoints"), image, "--top-k", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(os.listdir(image)) and all(line.split("\t")[1].split(" ")[0] in
                                                        ("face", "nonface") for line in lines)
    # python -m train.predict is that main() (a mistake is found before TensorFlow loads: a cheap process)
    proc = subprocess.run([sys.executable, "-m", "train.predict", "nowhere", image], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: model nowhere not found")
    assert "Traceback" not in proc.stderr
