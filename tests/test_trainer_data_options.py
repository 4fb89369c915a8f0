"""The data package's options in the trainer: --label-offset / --num-classes, labels.txt beside the
checkpoints, --bad-images skip (a count in the log and the metrics) or stop (one line naming the file),
and a dead peer named in one line. Real image folders and TFRecords, the real data pipeline, the tiny
stand-in model of tests/helpers/trainer_parts.py; the lost peer with two real worker processes."""
import json
import os
import signal
import time

import pytest
from helpers import free_ports, records
from helpers import trainer_parts as standins
from helpers.images import corrupt_garbage, write_folder
from helpers.trainer_job import start_rank, wait_for

from train import config, failures
from train.__main__ import default_parts, main
from train.errors import TrainError
from train.metrics import human_train_lines, log, train_record
from train.trainer import labels_plan

TINY = ["--model", "tiny", "--image-size", "32", "--batch-size", "4", "--log-every", "1", "--no-eval",
        "--no-export"]


def run_here(output, *flags):
    """One rank in this process: the real data wiring of python -m train, the stand-in model."""
    argv = TINY + ["--output-dir", str(output)] + list(flags)
    parts = default_parts(config.parse_flags(argv))._replace(
        build_model=standins.build_model, regularization_loss=standins.regularization_loss,
        make_backend=standins.make_backend)
    log.handlers[:] = []  # the log goes to this test's stdout (capsys), not an earlier test's
    return main(argv, env={"LAUNCH_OUTPUT_DIR": str(output)}, parts=parts)


def error_of(output):
    with open(os.path.join(str(output), "0", "error.json")) as handle:
        return json.load(handle)


# ---- pure decisions -------------------------------------------------------------------------------

def test_data_flags_defaults_aliases_and_the_launchers_view():
    args = config.parse_flags(["--model", "m"])
    assert (args.label_offset, args.num_classes, args.bad_images) == (0, None, "skip")
    args = config.parse_flags(["--model", "m", "--label_offset", "1", "--num_classes", "1000",
                               "--bad_images", "stop"])
    assert (args.label_offset, args.num_classes, args.bad_images) == (1, 1000, "stop")
    for wrong in (["--label-offset", "-1"], ["--num-classes", "0"], ["--bad-images", "ignore"]):
        with pytest.raises(TrainError):
            config.parse_flags(["--model", "m"] + wrong)
    # the launcher reads only the data flags among everything it passes through
    passthrough = ["--lr", "0.1", "--label-smoothing", "0.2", "--num-classes=5", "--label-offset", "1",
                   "--model-option", "width=1.0"]
    assert config.data_options(passthrough) == {"label_offset": 1, "num_classes": 5}
    assert config.data_options([]) == {"label_offset": 0, "num_classes": None}
    with pytest.raises(TrainError, match="--num-classes"):
        config.data_options(["--num-classes", "x"])


def test_labels_plan_checks_resume_and_same_size_finetune_and_writes_on_a_fresh_start(tmp_path):
    names = ["cat", "dog"]
    ckpt, source = str(tmp_path / "ckpt"), str(tmp_path / "source")
    os.makedirs(source)
    with open(os.path.join(source, "labels.txt"), "w") as handle:
        handle.write("a\nb\n")
    own = os.path.join(ckpt, "labels.txt")
    assert labels_plan(names, ckpt, None, None, True, os.path.isfile) == ([], own)
    assert labels_plan(names, ckpt, None, None, False, os.path.isfile) == ([], None)
    assert labels_plan(names, ckpt, "ckpt/model.ckpt-4", None, True, lambda p: True) == ([own], None)
    assert labels_plan(names, ckpt, "ckpt/model.ckpt-4", None, True, lambda p: False) == ([], own)
    finetune = labels_plan(names, ckpt, None, source, True, os.path.isfile)
    assert finetune == ([os.path.join(source, "labels.txt")], own)
    # another class count: a new head, nothing to match
    assert labels_plan(names + ["eel"], ckpt, None, source, True, os.path.isfile) == ([], own)
    assert labels_plan(None, ckpt, None, source, True, os.path.isfile) == ([], None)


def test_the_skip_count_is_in_the_train_record_and_the_progress_line_once_there_is_one():
    clean = train_record(4, 8, 0.5, 1.0, 0.5, 0.1, 10.0, 0.1, 4)
    assert "skipped_images" not in clean and "skipped" not in human_train_lines(clean, 20.0)[0]
    counted = train_record(4, 8, 0.5, 1.0, 0.5, 0.1, 10.0, 0.1, 4, skipped_images=3)
    assert counted["skipped_images"] == 3 and human_train_lines(counted, 20.0)[0].endswith(" skipped 3")


def test_a_lost_peer_is_named_from_the_task_in_tensorflows_message():
    # the text TF 2.21 gave rank 0 when rank 1 was killed (tests below reproduce it for real)
    message = ("Graph execution error:\n\nDetected at node 'allreduce_gradients/CollectiveReduce'\n"
               "From /job:worker/replica:0/task:0:\nCollective ops is aborted by: recvmsg:Connection "
               "reset by peer\nAdditional GRPC error information from remote target "
               "/job:worker/replica:0/task:2 while calling /tensorflow.WorkerService/RecvBuf:")
    peers = ["127.0.0.1:2000", "127.0.0.1:2001", "10.0.0.2:2000"]
    line = failures.lost_peer_line("UnavailableError", message, 0, peers)
    assert line.startswith("lost contact with rank 2 (10.0.0.2:2000) during a collective")
    timeout = failures.lost_peer_line("DeadlineExceededError", "Collective timed out", 1, peers[:2], 30.0)
    assert "rank 0 (127.0.0.1:2000)" in timeout and "no reply within the 30s collective timeout" in timeout
    assert failures.lost_peer_line("UnavailableError", message, 0, peers[:1]) is None  # one rank: no peer
    assert failures.lost_peer_line("InvalidArgumentError", message, 0, peers) is None


# ---- the real pipeline ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """Two classes of 8 training images, one of them not an image."""
    root = str(tmp_path_factory.mktemp("damaged"))
    write_folder(root, classes=("cat", "dog"), per_class=8, eval_per_class=1)
    bad = os.path.join(root, "train", "dog", "dog_004.jpg")
    corrupt_garbage(bad)
    return root, bad


@pytest.mark.slow
def test_skip_counts_bad_images_writes_labels_txt_and_refuses_changed_classes(damaged, tmp_path, capsys):
    root, bad = damaged
    out = tmp_path / "run"
    # 15 readable images, 4 steps of 4: the bad one has been read by the last step
    assert run_here(out, "--data-path", root, "--max-steps", "4") == 0
    train = records(str(out / "0" / "metrics.jsonl"), "train")
    assert len(train) == 4 and train[-1]["skipped_images"] == 1
    assert records(str(out / "0" / "metrics.jsonl"), "end")[-1]["skipped_images"] == 1
    logged = capsys.readouterr().out
    assert "rank 0: skipped 1 unreadable or corrupt image so far" in logged
    assert (out / "checkpoints" / "labels.txt").read_text() == "cat\ndog\n"

    # the dataset's classes change between runs: resuming would scramble the labels -> one line, exit 2,
    # checkpoints kept (a renamed class keeps the count, which is all the checkpoint itself could tell)
    before = sorted(os.listdir(str(out / "checkpoints")))
    for classes, detail in ((("bat", "cat"), "missing from the data: dog; new in the data: bat"),
                            (("cat", "dog", "eel"), "new in the data: eel")):
        changed = tmp_path / "-".join(classes)
        write_folder(str(changed), classes=classes, per_class=2, eval_per_class=0)
        assert run_here(out, "--data-path", str(changed), "--max-steps", "8") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "classes do not match" in err[0] and detail in err[0], err
        assert sorted(os.listdir(str(out / "checkpoints"))) == before
        assert error_of(out)["type"] == "DataError"

    # fine-tuning with the same class count checks the source's names too
    renamed = tmp_path / "renamed"
    write_folder(str(renamed), classes=("cat", "fox"), per_class=2, eval_per_class=0)
    target = tmp_path / "target"
    assert run_here(target, "--data-path", str(renamed), "--max-steps", "1",
                    "--finetune", str(out / "checkpoints")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing from the data: dog; new in the data: fox" in err[0]


@pytest.mark.slow
def test_stop_names_the_bad_file_in_one_line(damaged, tmp_path, capsys):
    root, bad = damaged
    out = tmp_path / "run"
    assert run_here(out, "--data-path", root, "--max-steps", "4", "--bad-images", "stop") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unreadable or corrupt image: %s; remove or replace it (list every bad file with: "
                   "python -m data --check DATA_PATH), or train with --bad-images skip" % bad]
    record = error_of(out)
    assert record["type"] == "BadData" and bad in record["message"]
    assert "Unreadable or corrupt image" in record["detail"]
    assert record["cause_type"] == "InvalidArgumentError"
    assert records(str(out / "0" / "metrics.jsonl"), "end")[-1]["status"] == "error"


def write_slim_records(tmp_path):
    """TF-Slim style TFRecords (labels 1..N, background first in labels.txt) by the project's converter."""
    from data import convert
    src, dst = str(tmp_path / "images"), str(tmp_path / "records")
    write_folder(src, classes=("cat", "dog"), per_class=4, eval_per_class=1, png_every=0)
    convert.convert(src, dst, shards=1, eval_shards=1, workers=1, label_offset=1, progress=False)
    return dst


@pytest.mark.slow
def test_slim_records_train_with_label_offset_and_num_classes(tmp_path, capsys):
    dst = write_slim_records(tmp_path)
    assert run_here(tmp_path / "a", "--data-path", dst, "--max-steps", "1", "--label-offset", "1") == 0
    assert (tmp_path / "a" / "checkpoints" / "labels.txt").read_text() == "cat\ndog\n"
    # without the offset, labels.txt lists background too: 3 classes, not the 2 asked for
    assert run_here(tmp_path / "b", "--data-path", dst, "--max-steps", "1", "--num-classes", "2") == 2
    assert "lists 3 classes" in capsys.readouterr().err
    # no labels.txt: the class count names the classes
    os.remove(os.path.join(dst, "labels.txt"))
    assert run_here(tmp_path / "c", "--data-path", dst, "--max-steps", "1", "--label-offset", "1") == 2
    assert "no labels.txt" in capsys.readouterr().err
    assert run_here(tmp_path / "d", "--data-path", dst, "--max-steps", "1", "--label-offset", "1",
                    "--num-classes", "2") == 0
    assert (tmp_path / "d" / "checkpoints" / "labels.txt").read_text() == "class_0000\nclass_0001\n"


# ---- a dead peer ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_killed_peer_is_named_in_one_line_by_the_survivor(tmp_path, reap):
    # One host, as the launcher runs it: the gradients go through shared memory (a killed peer across
    # hosts, through the collective ops, is test_multihost's)
    ports = free_ports(2)
    peers = ",".join("127.0.0.1:%d" % p for p in ports)
    flags = ["--model", "tiny", "--image-size", "32", "--batch-size", "4", "--log-every", "1",
             "--data-path", "tiny:2:64:8", "--max-steps", "100000", "--no-eval", "--no-export"]
    procs = [start_rank(tmp_path, r, 2, peers, flags, shm_dir=str(tmp_path / "shm")) for r in range(2)]
    reap.extend(procs)
    metrics = str(tmp_path / "1" / "metrics.jsonl")
    assert wait_for(lambda: os.path.exists(metrics) and records(metrics, "train"), procs[1])
    procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    procs[1].wait()
    procs[0].wait(timeout=200)
    # its connections were reset: the survivor ends within seconds, not at the collective timeout (120 s)
    assert time.time() - killed < 60
    with open(procs[0].log_path) as handle:
        output = handle.read()
    assert procs[0].returncode == 1, output
    line = "lost contact with rank 1 (127.0.0.1:%d) during a collective" % ports[1]
    assert "error: rank 0: " + line in output
    assert "Traceback" not in output  # the one line, not TensorFlow's traceback
    record = json.loads((tmp_path / "0" / "error.json").read_text())
    assert record["type"] == "StepFailure" and record["message"].startswith(line)
    assert "shared-memory allreduce: lost contact with rank 1" in record["detail"]  # the error is kept
    assert record["cause_type"] == "UnknownError" and record["traceback"]  # a numpy_function's error
