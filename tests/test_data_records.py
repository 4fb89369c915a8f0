"""TFRecords: the converter (python -m data.convert), TF-Slim records, and the --check scanner."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT
from helpers.images import corrupt_garbage, corrupt_truncate, write_folder
from PIL import Image
from test_data_pipeline import SIZE, identify, identity_table, run, run_all

from data import check, convert, layout, pipeline
from data.errors import DataError
from data.layout import DataInfo
from data.preprocess import MEAN_RGB, STDDEV_RGB
from data.records import count_records
from tfcompat import tf


def as_eval_of_train(info):
    """The same dataset with its training split in the evaluation slot (to read it in a fixed order)."""
    return DataInfo(info.kind, info.path, info.class_names, info.eval_count, info.train_count,
                    label_offset=info.label_offset, eval_files=info.train_files,
                    eval_labels=info.train_labels,
                    eval_records=info.train_records, eval_record_counts=info.train_record_counts)


def pairs(info):
    """Sorted (label, image bytes) of every real example of the evaluation split."""
    found = []
    for images, labels, valid in run_all(lambda: pipeline.eval_dataset(info, 4, SIZE)):
        found.extend((int(label), image.tobytes()) for image, label, ok in zip(images, labels, valid) if ok)
    return sorted(found)


@pytest.mark.slow
def test_converter_shards_match_the_folder_and_resume(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "tfr")
    written = write_folder(src, per_class=4, eval_per_class=2)
    folder = layout.inspect(src)
    corrupt = folder.train_files[5]
    corrupt_truncate(corrupt)
    result = convert.convert(src, dst, shards=4, eval_shards=2, workers=2, progress=False)
    assert sorted(result["written"]) == ["train-0000%d-of-00004" % i for i in range(4)] + [
        "validation-00000-of-00002", "validation-00001-of-00002"]
    assert [path for path, _ in result["bad"]] == [corrupt]
    assert corrupt in open(os.path.join(dst, convert.BAD_FILE)).read()
    records = layout.inspect(dst)
    assert records.kind == "tfrecord" and records.class_names == folder.class_names
    assert (records.train_count, records.eval_count) == (folder.train_count - 1, folder.eval_count)
    # the same (image, label) pairs through the same preprocessing, both splits
    assert pairs(records) == pairs(folder)
    assert pairs(as_eval_of_train(records)) == pairs(as_eval_of_train(folder))

    # each rank reads whole files: one epoch of rank r = the examples of its shard files
    table = identity_table(written)
    plan = dict(convert.plan_shards(folder, 4, 2))
    for rank in range(2):
        files = records.train_records[rank::2]
        expected = {path for name in files for path, _ in plan[os.path.basename(name)]} - {corrupt}
        elements = run(lambda rank=rank: pipeline.train_dataset(records, 1, SIZE, rank=rank, size=2, seed=1),
                       len(expected))
        assert {identify(images[0], table) for images, _ in elements} == expected

    # resume: only the missing shard is written again; stale temporaries go
    victim = os.path.join(dst, "train-00002-of-00004")
    before = open(victim, "rb").read()
    os.remove(victim)
    open(os.path.join(dst, ".train-00002-of-00004.tmp-999"), "wb").close()
    again = convert.convert(src, dst, shards=4, eval_shards=2, workers=1, progress=False)
    assert again["written"] == ["train-00002-of-00004"] and len(again["skipped"]) == 5
    assert os.path.getsize(victim) == len(before)  # same records (protobuf map order may differ)
    assert records.train_record_counts[2] == count_records(victim)
    assert not [name for name in os.listdir(dst) if ".tmp-" in name]
    with pytest.raises(DataError):
        convert.convert(src, dst, shards=3, eval_shards=2, workers=1, progress=False)
    with pytest.raises(DataError):
        pipeline.train_dataset(records, 1, SIZE, rank=0, size=5)  # 4 files cannot serve 5 ranks


def slim_example(encoded, label, boxes):
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    for i, name in enumerate(("ymin", "xmin", "ymax", "xmax")):
        values = [box[i] for box in boxes]
        feature["image/object/bbox/" + name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def jpeg_bytes(colour):
    buffer = io.BytesIO()
    Image.fromarray(np.full((30, 40, 3), colour, np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.slow
def test_slim_records_with_boxes_and_label_offset(tmp_path):
    colours = {1: (200, 20, 20), 2: (20, 200, 20), 3: (20, 20, 200)}
    with tf.io.TFRecordWriter(str(tmp_path / "train-00000-of-00001")) as writer:
        for label, colour in colours.items():
            boxes = [(0.1, 0.1, 0.9, 0.6)] if label != 2 else []
            writer.write(slim_example(jpeg_bytes(colour), label, boxes))
    (tmp_path / "labels.txt").write_text("0:background\n1:n01\n2:n02\n3:n03\n")
    info = layout.inspect(str(tmp_path), label_offset=1)
    assert info.class_names == ["n01", "n02", "n03"]
    images, labels = run(lambda: pipeline.train_dataset(info, 3, SIZE, seed=4), 1)[0]
    for image, label in zip(images, labels):
        colour = (np.median(image.reshape(-1, 3), axis=0) * np.array(STDDEV_RGB) + np.array(MEAN_RGB)) * 255
        assert np.abs(colour - colours[label + 1]).max() < 4
    os.remove(str(tmp_path / "labels.txt"))
    unshifted = layout.inspect(str(tmp_path), num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        run(lambda: pipeline.train_dataset(unshifted, 3, SIZE), 2)
    assert "label offset" in str(caught.value)


@pytest.mark.slow
def test_check_lists_exactly_the_bad_files(tmp_path):
    write_folder(str(tmp_path), per_class=3, eval_per_class=1)
    info = layout.inspect(str(tmp_path))
    corrupt_truncate(info.train_files[2])
    corrupt_garbage(info.eval_files[1])
    (tmp_path / "train" / "cat" / "empty.jpg").write_bytes(b"")
    bad = check.scan(layout.inspect(str(tmp_path)), progress=False)
    expected = {info.train_files[2], info.eval_files[1], str(tmp_path / "train" / "cat" / "empty.jpg")}
    assert {name for name, _ in bad} == expected
    out = subprocess.run([sys.executable, "-m", "data", "--check", str(tmp_path), "--no-progress"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert sorted(line.split(": ")[0][4:] for line in out.stdout.splitlines() if line.startswith("BAD ")) == \
        sorted(expected)


@pytest.mark.slow
def test_check_finds_damaged_record_files(tmp_path):
    with tf.io.TFRecordWriter(str(tmp_path / "train-00000-of-00001")) as writer:
        for label in range(3):
            writer.write(slim_example(jpeg_bytes((50 * label, 0, 0)), label, []))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    path = str(tmp_path / "train-00000-of-00001")
    assert check.scan(layout.inspect(str(tmp_path)), progress=False) == [
        (path + " (image/filename: )", "label 2 outside 0..1 (label offset 0)")]
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the second record: its CRC no longer matches
    open(path, "wb").write(bytes(data))
    bad = check.scan(layout.inspect(str(tmp_path)), progress=False)
    assert len(bad) == 1 and bad[0][0] == path and "damaged TFRecord data" in bad[0][1]
