"""data.layout, data.labels, data.records: dataset discovery without TensorFlow."""
import os
import struct
import subprocess
import sys

import pytest
from helpers import ROOT
from helpers.images import write_folder, write_image

from data import labels, layout
from data.errors import DataError
from data.records import count_records


def one_line_error(call, *args, **kwargs):
    with pytest.raises(DataError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message
    return message


def test_folder_labels_follow_sorted_class_names(tmp_path):
    written = write_folder(str(tmp_path), classes=("zebra", "ant", "moth"), per_class=3, eval_per_class=1)
    info = layout.inspect(str(tmp_path))
    assert info.kind == "folder"
    assert info.class_names == ["ant", "moth", "zebra"]
    assert info.num_classes == 3 and info.train_count == 9 and info.eval_count == 3
    for path, label in zip(info.train_files + info.eval_files, info.train_labels + info.eval_labels):
        assert info.class_names[label] == os.path.basename(os.path.dirname(path))
        assert written[path] == label


@pytest.mark.parametrize("eval_dir", ["validation", "val", "eval"])
def test_validation_folder_names(tmp_path, eval_dir):
    write_folder(str(tmp_path), per_class=2, eval_per_class=1, eval_dir=eval_dir)
    info = layout.inspect(str(tmp_path))
    assert info.eval_count == 3
    assert all(os.sep + eval_dir + os.sep in path for path in info.eval_files)


def test_validation_may_hold_a_subset_of_classes_and_keeps_training_indices(tmp_path):
    write_folder(str(tmp_path), classes=("a", "b", "c"), per_class=1, eval_per_class=0)
    write_image(str(tmp_path / "validation" / "c" / "x.jpg"), 2, 0)
    info = layout.inspect(str(tmp_path))
    assert info.eval_labels == [2]


def test_extensions_any_case_and_other_files_ignored(tmp_path):
    write_image(str(tmp_path / "train" / "a" / "one.JPEG"), 0, 0)
    write_image(str(tmp_path / "train" / "a" / "two.png"), 0, 1)
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "a" / ".hidden.jpg").write_bytes(b"")
    info = layout.inspect(str(tmp_path))
    assert [os.path.basename(p) for p in info.train_files] == ["one.JPEG", "two.png"]


def test_user_mistakes_give_one_clear_line(tmp_path):
    assert "does not exist" in one_line_error(layout.inspect, str(tmp_path / "missing"))
    assert "no train/ folder" in one_line_error(layout.inspect, str(tmp_path))
    (tmp_path / "train").mkdir()
    assert "no class folders" in one_line_error(layout.inspect, str(tmp_path))
    (tmp_path / "train" / "cat").mkdir()
    assert "has no .jpg" in one_line_error(layout.inspect, str(tmp_path))
    write_image(str(tmp_path / "train" / "cat" / "1.jpg"), 0, 0)
    write_image(str(tmp_path / "validation" / "dog" / "1.jpg"), 1, 0)
    message = one_line_error(layout.inspect, str(tmp_path))
    assert "validation classes absent from training: dog" in message
    assert "is a file" in one_line_error(layout.inspect, str(tmp_path / "train" / "cat" / "1.jpg"))


def test_synthetic_specs():
    info = layout.inspect("synthetic")
    assert (info.kind, info.num_classes) == ("synthetic", 1000)
    assert (info.train_count, info.eval_count) == (10000, 1000)
    info = layout.inspect("synthetic:10:200:50")
    assert (info.num_classes, info.train_count, info.eval_count) == (10, 200, 50)
    assert "bad synthetic spec" in one_line_error(layout.inspect, "synthetic:ten")
    assert "bad synthetic spec" in one_line_error(layout.inspect, "synthetic:0")


def write_framed_records(path, payloads):
    """TFRecord framing (CRCs zeroed: counting does not read them)."""
    with open(path, "wb") as handle:
        for payload in payloads:
            handle.write(struct.pack("<Q", len(payload)) + b"\0" * 4 + payload + b"\0" * 4)


def test_tfrecords_counted_in_pure_python_with_slim_labels_and_offset(tmp_path):
    write_framed_records(str(tmp_path / "train-00000-of-00002"), [b"a" * 10, b"b" * 3000])
    write_framed_records(str(tmp_path / "train-00001-of-00002"), [b"c"])
    write_framed_records(str(tmp_path / "validation-00000-of-00001"), [b"d", b"e", b"f"])
    (tmp_path / "labels.txt").write_text("0:background\n1:n01440764\n2:n01443537\n")
    info = layout.inspect(str(tmp_path), label_offset=1)
    assert info.kind == "tfrecord"
    assert info.class_names == ["n01440764", "n01443537"]
    assert info.train_record_counts == [2, 1] and info.train_count == 3 and info.eval_count == 3
    info = layout.inspect(str(tmp_path), count_records=False)
    assert info.train_count is None and info.num_classes == 3


def test_tfrecord_mistakes(tmp_path):
    write_framed_records(str(tmp_path / "train-00000-of-00001"), [b"abc"])
    assert "no labels.txt" in one_line_error(layout.inspect, str(tmp_path))
    assert layout.inspect(str(tmp_path), num_classes=5).class_names[4] == "class_0004"
    with open(str(tmp_path / "train-00000-of-00001"), "ab") as handle:
        handle.write(struct.pack("<Q", 100) + b"\0" * 10)
    assert "truncated" in one_line_error(layout.inspect, str(tmp_path), num_classes=5)


def test_count_records_of_an_empty_file(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    assert count_records(str(tmp_path / "f")) == 0


def test_labels_file_round_trip_and_mismatch(tmp_path):
    path = labels.labels_path(str(tmp_path))
    labels.write_labels(path, ["cat", "dog"])
    labels.check_labels(path, ["cat", "dog"])
    message = one_line_error(labels.check_labels, path, ["cat", "dog", "eel"])
    assert "new in the data: eel" in message and "fresh output directory" in message
    assert "different order" in one_line_error(labels.check_labels, path, ["dog", "cat"])
    assert "cannot read" in one_line_error(labels.check_labels, str(tmp_path / "missing.txt"), ["cat"])


def test_layout_imports_without_tensorflow(tmp_path):
    code = ("import sys, data.layout, data.labels, data.convert, data.digits; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.check_call([sys.executable, "-c", code], cwd=ROOT)


def test_cli_info_and_mistake_exit_codes(tmp_path):
    write_folder(str(tmp_path), per_class=1, eval_per_class=0)
    out = subprocess.run([sys.executable, "-m", "data", "--info", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "3 classes, 3 training" in out.stdout
    out = subprocess.run([sys.executable, "-m", "data", "--check", str(tmp_path / "nope")], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "does not exist" in out.stderr
    out = subprocess.run([sys.executable, "-m", "data.convert", "--src", str(tmp_path / "nope"), "--dst",
                          str(tmp_path / "out"), "--shards", "2"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
