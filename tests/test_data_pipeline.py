"""data.pipeline in graph mode on image folders the tests write (real JPEG and PNG files)."""
import os

import numpy as np
import pytest
from helpers.images import colour_of, corrupt_garbage, corrupt_truncate, write_folder

from data import layout, pipeline
from data.errors import DataError
from data.preprocess import MEAN_RGB, STDDEV_RGB
from tfcompat import tf

SIZE = 32


def identity_table(written):
    """{path: expected flat colour} from write_folder's {path: label}."""
    table = {}
    for path, label in written.items():
        index = int(os.path.splitext(os.path.basename(path))[0].rsplit("_", 1)[1])
        split_offset = 0 if os.sep + "train" + os.sep in path else 100
        table[path] = np.array(colour_of(label, index + split_offset), np.float64)
    return table


def identify(image, table):
    """The written file an output image came from, by its median colour."""
    pixels = (image * np.array(STDDEV_RGB) + np.array(MEAN_RGB)) * 255.0
    median = np.median(pixels.reshape(-1, 3), axis=0)
    paths = sorted(table)
    distances = [np.abs(table[path] - median).max() for path in paths]
    best = int(np.argmin(distances))
    assert distances[best] < 3.5, "image matches no written file (off by %.1f)" % distances[best]
    return paths[best]


def run(make_dataset, count):
    """The first `count` elements of a dataset built in a fresh graph (one-shot iterator, Session)."""
    with tf.Graph().as_default():
        element = tf.compat.v1.data.make_one_shot_iterator(make_dataset()).get_next()
        with tf.compat.v1.Session() as session:
            return [session.run(element) for _ in range(count)]


def run_all(make_dataset):
    with tf.Graph().as_default():
        element = tf.compat.v1.data.make_one_shot_iterator(make_dataset()).get_next()
        out = []
        with tf.compat.v1.Session() as session:
            while True:
                try:
                    out.append(session.run(element))
                except tf.errors.OutOfRangeError:
                    return out


@pytest.fixture
def folder(tmp_path):
    written = write_folder(str(tmp_path / "ds"), classes=("cat", "dog", "eel"), per_class=4, eval_per_class=2)
    return layout.inspect(str(tmp_path / "ds")), written


@pytest.mark.slow
def test_training_batches_have_static_shapes_and_correct_labels(folder):
    info, written = folder
    table = identity_table(written)
    batches = run(lambda: pipeline.train_dataset(info, 4, SIZE, seed=1), 3)
    with tf.Graph().as_default():  # the trainer's way: an initializable iterator, initialised twice
        dataset = pipeline.train_dataset(info, 4, SIZE, seed=1)
        iterator = tf.compat.v1.data.make_initializable_iterator(dataset)
        element = iterator.get_next()
        with tf.compat.v1.Session() as session:
            for _ in range(2):
                session.run(iterator.initializer)
                batches.append(session.run(element))
    for images, labels in batches:
        assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == np.float32
        assert labels.shape == (4,) and labels.dtype == np.int32
        for image, label in zip(images, labels):
            assert written[identify(image, table)] == label


@pytest.mark.slow
def test_rank_shards_are_disjoint_complete_and_reshuffled_every_epoch(folder, tmp_path):
    info, written = folder
    table = identity_table(written)
    shards, reordered = [], []
    for rank in range(2):
        shard_size = len(info.train_files[rank::2])
        elements = run(lambda rank=rank: pipeline.train_dataset(info, 1, SIZE, rank=rank, size=2, seed=5,
                                                                list_dir=str(tmp_path / "lists")),
                       2 * shard_size)
        order = [identify(images[0], table) for images, _ in elements]
        first, second = order[:shard_size], order[shard_size:]
        assert sorted(first) == sorted(second) and len(set(first)) == shard_size
        shards.append(set(first))
        reordered.append(first != second)
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(info.train_files)
    assert any(reordered)


@pytest.mark.slow
@pytest.mark.parametrize("ranks,from_files", [(2, False), (4, True)])
def test_evaluation_counts_every_example_once_with_padding(folder, tmp_path, ranks, from_files):
    info, written = folder
    table = identity_table(written)
    steps = pipeline.eval_steps(info, 2, ranks)
    seen = []
    list_dir = str(tmp_path / "lists") if from_files else None  # file lists instead of graph constants
    for rank in range(ranks):
        batches = run_all(lambda rank=rank: pipeline.eval_dataset(info, 2, SIZE, rank=rank, size=ranks,
                                                                  list_dir=list_dir))
        assert len(batches) == steps
        for images, labels, valid in batches:
            assert images.shape == (2, SIZE, SIZE, 3) and valid.dtype == np.float32
            for image, label, flag in zip(images, labels, valid):
                if flag:
                    path = identify(image, table)
                    assert written[path] == label
                    seen.append(path)
                else:
                    assert not image.any()
    assert sorted(seen) == sorted(info.eval_files)
    if from_files:
        assert len(os.listdir(list_dir)) == 2 * min(ranks, info.eval_count)


@pytest.mark.slow
def test_evaluation_preprocessing_is_deterministic(folder):
    info, _ = folder
    first = run_all(lambda: pipeline.eval_dataset(info, 3, SIZE))
    second = run_all(lambda: pipeline.eval_dataset(info, 3, SIZE))
    assert len(first) == len(second) == 2
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            assert np.array_equal(x, y)


@pytest.mark.slow
def test_bad_images_are_skipped_with_a_count(folder):
    info, written = folder
    table = identity_table(written)
    corrupt_truncate(info.train_files[1])
    corrupt_garbage(info.train_files[6])
    bad = {info.train_files[1], info.train_files[6]}
    elements = run(lambda: pipeline.train_dataset(info, 1, SIZE, seed=2, return_skipped=True), 20)
    assert not {identify(images[0], table) for images, _, _ in elements} & bad
    assert 2 <= elements[-1][2] <= 4  # 10 good images per epoch: both bad ones of epoch 1 were passed
    assert [skipped for _, _, skipped in elements] == sorted(skipped for _, _, skipped in elements)


@pytest.mark.slow
def test_bad_images_stop_with_the_file_path(folder):
    info, _ = folder
    corrupt_truncate(info.train_files[4])
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        run(lambda: pipeline.train_dataset(info, 2, SIZE, seed=2, bad_images="stop"), 12)
    assert info.train_files[4] in str(caught.value)
    assert "Unreadable or corrupt image" in str(caught.value)


@pytest.mark.slow
def test_a_folder_of_bad_images_stops_instead_of_spinning(tmp_path):
    write_folder(str(tmp_path), classes=("a",), per_class=12, eval_per_class=0)
    info = layout.inspect(str(tmp_path))
    for path in info.train_files:
        corrupt_garbage(path)
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        run(lambda: pipeline.train_dataset(info, 2, SIZE), 1)
    assert "Too many unreadable or corrupt images" in str(caught.value)


@pytest.mark.slow
def test_synthetic_data_is_generated_in_the_graph():
    info = layout.inspect("synthetic:5:20:7")
    with tf.Graph().as_default() as graph:
        dataset = pipeline.train_dataset(info, 4, 64, seed=3)
        images, labels = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        assert graph.as_graph_def().ByteSize() < 50000  # no image data embedded as constants
        with tf.compat.v1.Session() as session:
            a, b = session.run([images, labels])
    assert a.shape == (4, 64, 64, 3) and b.dtype == np.int32 and ((b >= 0) & (b < 5)).all()
    counts = []
    for rank in range(2):
        batches = run_all(lambda rank=rank: pipeline.eval_dataset(info, 2, 16, rank=rank, size=2))
        again = run_all(lambda rank=rank: pipeline.eval_dataset(info, 2, 16, rank=rank, size=2))
        assert len(batches) == pipeline.eval_steps(info, 2, 2) == 2
        assert all(np.array_equal(x[0], y[0]) for x, y in zip(batches, again))
        counts.append(sum(float(valid.sum()) for _, _, valid in batches))
    assert counts == [4.0, 3.0]


def test_steps_and_sharding_arithmetic(folder):
    # (steps per epoch: train.trainer.schedule_plan, tested in test_trainer_units)
    info, _ = folder
    assert pipeline.eval_steps(info, 4, 1) == 2 and pipeline.eval_steps(info, 2, 4) == 1
    with pytest.raises(DataError):
        pipeline.train_dataset(info, 1, SIZE, rank=2, size=2)
    with pytest.raises(DataError):
        pipeline.train_dataset(info, 1, SIZE, bad_images="ignore")
