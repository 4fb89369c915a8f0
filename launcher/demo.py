"""`python -m launcher.demo` (`make demo`): the whole system on any machine in a few minutes.

Why: a newcomer should see a real multi-worker job work before reading anything. The demo writes a small
real dataset that needs no download (scikit-learn's bundled UCI digits, via `python -m data.digits`) as an
image folder, trains on it with the launcher (2 CPU workers, TensorFlow collective allreduce), and ends
with the launcher's summary and its PNG picture of the run. Nothing here is special-cased: the demo is an
ordinary `python -m launcher` command, printed so that it can be copied.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from data.errors import AUGMENT_MODES
from launcher.errors import LaunchError

# The validation top-1 the README promises for the default demo (measured; see README "Quick start").
EXPECTED_TOP1 = 0.70

DEFAULTS = {
    "data_dir": os.path.join("demo_data", "digits"),
    "output_root": os.path.join("output", "demo"),
    "workers": 2,
    "model": "mobilenetv3_small",
    "batch_size": 32,
    "epochs": 30,
    "image_size": 32,
    "learning_rate": 0.8,
    "augment": "light",  # 8x8 digits: ImageNet's crops down to 8% of the image leave nothing to learn
}
AUGMENTS = AUGMENT_MODES


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise LaunchError("%s (see python -m launcher.demo --help)" % message)


def build_parser():
    parser = _Parser(prog="python -m launcher.demo", allow_abbrev=False,
                     description="Train a small real dataset (UCI digits) with 2 CPU workers through the "
                                 "launcher; options it does not know go to the launcher (and the trainer).")
    add = parser.add_argument
    add("--data-dir", default=DEFAULTS["data_dir"], help="where the digits image folder is written (default "
        "%(default)s; reused when present)")
    add("--output-root", default=DEFAULTS["output_root"],
        help="each run gets a fresh <root>/<time>/ output directory (default %(default)s)")
    add("--workers", type=int, default=DEFAULTS["workers"], help="worker processes (default %(default)s)")
    add("--model", default=DEFAULTS["model"], help="model name (default %(default)s)")
    add("--batch-size", type=int, default=DEFAULTS["batch_size"], help="per worker (default %(default)s)")
    add("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs (default %(default)s)")
    add("--image-size", type=int, default=DEFAULTS["image_size"], help="input size (default %(default)s)")
    add("--learning-rate", type=float, default=DEFAULTS["learning_rate"],
        help="base rate for a global batch of 256, scaled linearly (default %(default)s)")
    add("--augment", choices=AUGMENTS, default=DEFAULTS["augment"],
        help="training augmentation (default %(default)s: mild scale/translate + flip for small images)")
    return parser


def prepare_command(data_dir, python=None):
    """The command that writes the digits image folder (data.digits does nothing when it is complete)."""
    return [python or sys.executable, "-m", "data.digits", "--dst", data_dir]


def launcher_args(options, output_dir, extra=()):
    """The launcher arguments of the demo job (a plain `python -m launcher` command line)."""
    args = ["--backend", "cpu", "--devices", str(options["workers"]), "--model", options["model"],
            "--data-path", options["data_dir"], "--batch-size", str(options["batch_size"]),
            "--epochs", str(options["epochs"]), "--output-dir", output_dir, "--network", "digits-demo",
            "--image_size=%d" % options["image_size"], "--learning_rate=%g" % options["learning_rate"],
            "--warmup_epochs=1", "--augment=%s" % options.get("augment", DEFAULTS["augment"])]
    return args + list(extra)


def fresh_output_dir(root, now=None):
    """<root>/<YYYYmmdd-HHMMSS>[-n]: a new directory name per run, so no run resumes or overwrites another."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    path = os.path.join(root, stamp)
    suffix = 1
    while os.path.exists(path):
        suffix += 1
        path = os.path.join(root, "%s-%d" % (stamp, suffix))
    return path


def verdict(summary, expected=EXPECTED_TOP1):
    """(ok, line) comparing the run's validation top-1 with the figure the README states."""
    evals = [r.get("eval") for r in summary.get("ranks", []) if r.get("eval")]
    top1 = evals[0].get("top1") if evals else None
    if not isinstance(top1, (int, float)):
        return False, "demo: no validation accuracy in the summary (was evaluation switched off?)"
    if top1 >= expected:
        return True, "demo: validation top-1 %.3f (the README promises at least %.2f)" % (top1, expected)
    return False, ("demo: validation top-1 %.3f is below the %.2f the README promises; see the picture and "
                   "the rank logs" % (top1, expected))


def check(options):
    for key in ("workers", "batch_size", "epochs", "image_size"):
        if options[key] < 1:
            raise LaunchError("--%s must be at least 1" % key.replace("_", "-"))
    if options["learning_rate"] <= 0:
        raise LaunchError("--learning-rate must be positive")


def main(argv=None, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    argv = sys.argv[1:] if argv is None else list(argv)
    from launcher import cli, plot
    try:
        args, extra = build_parser().parse_known_args(argv)
        options = vars(args)
        check(options)
    except LaunchError as error:
        err.write("demo: error: %s\n" % error)
        return 2
    command = prepare_command(options["data_dir"])
    out.write("demo: %s\n" % " ".join(command))
    out.flush()
    if subprocess.call(command) != 0:
        err.write("demo: error: the digits could not be prepared in %s (see above)\n" % options["data_dir"])
        return 2
    output_dir = fresh_output_dir(options["output_root"])
    args = launcher_args(options, output_dir, extra)
    out.write("demo: python -m launcher %s\n" % " ".join(args))
    out.flush()
    code = cli.main(args, out=out, err=err)
    if code != 0:
        return code
    with open(os.path.join(output_dir, "summary.json")) as handle:
        summary = json.load(handle)
    ok, line = verdict(summary)
    out.write(line + "\n")
    picture = os.path.join(output_dir, plot.PICTURE_NAME)
    if os.path.exists(picture):
        out.write("demo: picture of the run: %s\n" % picture)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
