"""`make demo` (python -m launcher.demo): its dataset preparation, the launcher command it builds (parsed by
the real launcher and trainer parsers), its verdict, and one tiny end-to-end run."""
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

from launcher import cli, demo


def options(**changes):
    values = dict(demo.DEFAULTS)
    values["data_dir"] = "demo_data/digits"
    values.update(changes)
    return values


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo's dataset preparation, run once for this module: (folder, first run, second run)."""
    target = str(tmp_path_factory.mktemp("demo_data") / "digits")
    command = demo.prepare_command(target)
    assert command == [sys.executable, "-m", "data.digits", "--dst", target]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return target, first, again


@pytest.mark.slow
def test_the_digits_become_an_image_folder_the_launcher_accepts(digits):
    from data import layout
    target, first, again = digits
    assert first.returncode == 0, first.stderr
    info = layout.inspect(target)
    assert info.kind == "folder"
    assert info.class_names == [str(digit) for digit in range(10)]
    assert info.train_count + info.eval_count == 1797       # every UCI digit, each in one split
    assert 300 < info.eval_count < 400                     # about a fifth of each class
    with open(info.train_files[0], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert again.returncode == 0 and "already complete" in again.stdout    # a second demo reuses it


def test_a_half_written_folder_stops_the_demo_with_one_line(tmp_path, capsys):
    target = tmp_path / "digits"
    (target / "train").mkdir(parents=True)
    code = demo.main(["--data-dir", str(target), "--output-root", str(tmp_path / "runs")])
    assert code == 2
    captured = capsys.readouterr()
    assert "could not be prepared in %s" % target in captured.err
    assert not (tmp_path / "runs").exists()


def test_the_demo_command_is_a_plain_launcher_command_on_two_cpu_workers():
    args = demo.launcher_args(options(), "output/demo/x", ["--tee", "0"])
    parsed = cli.parse(args)
    assert parsed["backend"] == "cpu" and parsed["devices"] == "2"
    assert parsed["model"] == "mobilenetv3_small" and parsed["data_path"] == "demo_data/digits"
    assert parsed["output_dir"] == "output/demo/x" and parsed["tee"] == "0"
    flags = parsed["trainer"]                       # read by the trainer's own parser
    assert flags.batch_size == demo.DEFAULTS["batch_size"]
    assert flags.image_size == 32 and flags.learning_rate == pytest.approx(0.8)
    assert flags.epochs == demo.DEFAULTS["epochs"]
    assert flags.augment == "light"  # 8x8 digits: mild scale/translate, not ImageNet's crops
    parsed = cli.parse(demo.launcher_args(options(augment="none"), "output/demo/x"))
    assert "--augment=none" in parsed["passthrough"]


def test_each_run_gets_its_own_output_dir(tmp_path):
    first = demo.fresh_output_dir(str(tmp_path), now=0)
    os.makedirs(first)
    second = demo.fresh_output_dir(str(tmp_path), now=0)
    assert second != first and second.startswith(first)


def test_verdict_compares_validation_top1_with_the_promise():
    summary = {"ranks": [{"eval": None}, {"eval": {"top1": 0.95}}]}
    assert demo.verdict(summary, 0.9)[0] is True
    ok, line = demo.verdict({"ranks": [{"eval": {"top1": 0.5}}]}, 0.9)
    assert not ok and "below the 0.90" in line
    assert demo.verdict({"ranks": [{"eval": None}]}, 0.9)[0] is False


def test_bad_demo_flags_are_one_line_and_exit_2(capsys):
    assert demo.main(["--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["demo: error: --workers must be at least 1"]


@pytest.mark.slow
def test_a_tiny_demo_runs_end_to_end(digits, tmp_path):
    """Two steps on one worker instead of minutes on two (the suite stays light): the accuracy promise is
    then missed, and the demo says so with exit code 1 after the launcher's summary and picture."""
    result = subprocess.run(
        [sys.executable, "-m", "launcher.demo", "--data-dir", digits[0],
         "--output-root", str(tmp_path / "runs"), "--workers", "1", "--batch-size", "8", "--image-size", "32",
         "--max_step=2", "--no-export", "--progress-interval", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Final Performance images/sec" in result.stdout
    assert "is below the %.2f the README promises" % demo.EXPECTED_TOP1 in result.stdout
    (run,) = os.listdir(str(tmp_path / "runs"))
    run_dir = tmp_path / "runs" / run
    assert (run_dir / "run.png").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 1 and summary["backend"] == "cpu"
    assert "demo: picture of the run: %s" % (run_dir / "run.png") in result.stdout
