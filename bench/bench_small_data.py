"""Small datasets train right: the seed's 2-class job from scratch and through --finetune, and the short run
that BatchNorm statistics used to break, each with and without their re-estimation.

Why: the seed job (MobileNetV3, a 2-class image folder, batch 2 per device, 20 epochs, lr 0.001 without
scaling, Adam as in ModelZoo ID0256's train_cls.py) must reach a validation top-1 well above chance on a
small real dataset, also when it starts from a checkpoint trained on other classes; and a short run
(MobileNetV3-Small, batch 16, 30 epochs = 150 steps on 2 workers) must not evaluate and export with BN
moving averages that have not caught up. Data: scikit-image's bundled LFW subset (100 faces, 100
non-faces, 25x25, `python -m data.faces`) and, for the other classes of the fine-tuning source,
scikit-learn's bundled digits (`python -m data.digits`). Every job is a plain `python -m launcher` command
(2 CPU workers), printed before it runs; the table at the end lists validation top-1 per job.

    .venv/bin/python bench/bench_small_data.py [--work DIR] [--image-size 64] [--jobs seed,finetune,short]
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SEED = ["--model", "mobilenetv3_small", "--batch-size", "2", "--epochs", "20", "--learning_rate=0.001",
        "--lr_scaling=none", "--optimizer=adam"]
PRETRAIN = ["--model", "mobilenetv3_small", "--batch-size", "32", "--epochs", "10", "--learning_rate=0.8",
            "--warmup_epochs=1"]
SHORT = ["--model", "mobilenetv3_small", "--batch-size", "16", "--epochs", "30"]


def launch(name, work, data, flags, extra, image_size, devices):
    out = os.path.join(work, "runs", name)
    command = [sys.executable, "-m", "launcher", "--backend", "cpu", "--devices", str(devices),
               "--data-path", data, "--output-dir", out, "--plot", "off",
               "--image_size=%d" % image_size, "--no-resume"] + flags + list(extra)
    print("bench: %s" % " ".join(command[1:]), flush=True)
    started = time.time()
    code = subprocess.call(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.time() - started
    if code:
        raise SystemExit("bench: job %s failed with exit code %d (see %s)" % (name, code, out))
    with open(os.path.join(out, "summary.json")) as handle:
        summary = json.load(handle)
    evals = [rank.get("eval") for rank in summary["ranks"] if rank.get("eval")]
    return {"job": name, "top1": evals[0]["top1"], "count": evals[0]["count"], "seconds": round(seconds),
            "out": out}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.join(ROOT, "output", "bench_small_data"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--devices", type=int, default=2, help="CPU workers (default 2)")
    parser.add_argument("--jobs", default="seed,finetune,short", help="which comparisons to run")
    args = parser.parse_args(argv)
    jobs = set(args.jobs.split(","))
    faces = os.path.join(args.work, "faces")
    digits = os.path.join(args.work, "digits")
    subprocess.check_call([sys.executable, "-m", "data.faces", "--dst", faces], cwd=ROOT)
    rows = []

    def run(name, data, flags, *extra):
        rows.append(launch(name, args.work, data, flags, extra, args.image_size, args.devices))
        print("bench: %(job)s validation top-1 %(top1).3f of %(count)d images (%(seconds)ds)" % rows[-1],
              flush=True)
        return rows[-1]

    if "seed" in jobs:
        run("seed", faces, SEED)
        run("seed-no-recalibration", faces, SEED, "--bn-recalibrate-batches", "0")
    if "finetune" in jobs:
        subprocess.check_call([sys.executable, "-m", "data.digits", "--dst", digits, "--size", "32"],
                              cwd=ROOT)
        source = run("digits-pretrain", digits, PRETRAIN, "--no-export")
        checkpoints = os.path.join(source["out"], "checkpoints")
        run("seed-finetune", faces, SEED, "--finetune", checkpoints)
        run("seed-finetune-no-recalibration", faces, SEED, "--finetune", checkpoints,
            "--bn-recalibrate-batches", "0")
    if "short" in jobs:
        run("short", faces, SHORT)
        run("short-no-recalibration", faces, SHORT, "--bn-recalibrate-batches", "0")
    print("\n| job | validation top-1 | images | wall time |\n|---|---|---|---|")
    for row in rows:
        print("| %(job)s | %(top1).3f | %(count)d | %(seconds)d s |" % row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
