"""python -m data.digits: the demo's image folder from scikit-learn's bundled digits."""
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT
from PIL import Image

from data import digits, layout, sample_folder
from data.errors import DataError
from data.png import encode_rgb


def test_png_writer_round_trips_through_pillow(tmp_path):
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    path = tmp_path / "x.png"
    path.write_bytes(encode_rgb([row.tobytes() for row in rgb], 7, 5))
    assert np.array_equal(np.asarray(Image.open(str(path)).convert("RGB")), rgb)


def test_split_is_stratified_seeded_and_complete():
    labels = np.repeat(np.arange(3), [10, 20, 5])
    train, evaluation = sample_folder.split_indices(labels, 0.2, seed=3)
    assert sorted(train + evaluation) == list(range(35)) and not set(train) & set(evaluation)
    assert [int((labels[evaluation] == k).sum()) for k in range(3)] == [2, 4, 1]
    assert sample_folder.split_indices(labels, 0.2, seed=3) == (train, evaluation)
    assert sample_folder.split_indices(labels, 0.2, seed=4) != (train, evaluation)


def test_writes_a_complete_folder_once(tmp_path):
    dst = str(tmp_path / "digits")
    record = digits.write_digits(dst, size=16)
    assert record["train_count"] + record["eval_count"] == 1797
    info = layout.inspect(dst)
    assert info.class_names == [str(k) for k in range(10)]
    assert info.train_count + info.eval_count == 1797
    assert 0.19 < info.eval_count / 1797.0 < 0.21
    image = Image.open(info.train_files[0])
    assert image.size == (16, 16) and image.mode == "RGB"
    assert not [name for name in os.listdir(str(tmp_path)) if name != "digits"]  # no leftovers
    stamp = os.path.getmtime(info.train_files[0])
    again = subprocess.run([sys.executable, "-m", "data.digits", "--dst", dst, "--size", "16"], cwd=ROOT,
                           capture_output=True, text=True)
    assert again.returncode == 0 and "already complete" in again.stdout
    assert os.path.getmtime(info.train_files[0]) == stamp
    other = subprocess.run([sys.executable, "-m", "data.digits", "--dst", dst, "--size", "32"], cwd=ROOT,
                           capture_output=True, text=True)
    assert other.returncode == 2 and "remove it or pass the same options" in other.stderr


def test_an_interrupted_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    dst = str(tmp_path / "digits")
    calls = []

    def failing_encode(rows, width, height):
        calls.append(1)
        if len(calls) > 50:
            raise KeyboardInterrupt()
        return encode_rgb(rows, width, height)

    monkeypatch.setattr(digits, "encode_rgb", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        digits.write_digits(dst, size=8)
    assert os.listdir(str(tmp_path)) == []
    os.makedirs(os.path.join(dst, "train"))
    with pytest.raises(DataError):
        digits.write_digits(dst, size=8)
