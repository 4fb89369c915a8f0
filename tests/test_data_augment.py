"""--augment imagenet|light|none (data/augment.py, data/preprocess.py) and the BN calibration batches
(data.pipeline.calibration_dataset)."""
import numpy as np
import pytest
from helpers.images import write_folder

from data import augment, layout, pipeline, preprocess
from data.errors import DataError
from tfcompat import tf

SIZE = 32


def windows(shape, function, count=200):
    with tf.Graph().as_default():
        uniforms = tf.compat.v1.placeholder(tf.float32, [augment.NUM_DRAWS])
        window = function(tf.constant(shape), uniforms)
        rng = np.random.RandomState(0)
        with tf.compat.v1.Session() as sess:
            return np.array([sess.run(window, {uniforms: rng.uniform(size=augment.NUM_DRAWS)})
                             for _ in range(count)])


def test_light_windows_are_mild_and_inside_the_image():
    found = windows([25, 40, 3], augment.light_crop_window)
    y, x, h, w = found.T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= 25).all() and (x + w <= 40).all()
    assert h.min() >= round(25 * 0.75) and w.min() >= round(40 * 0.75)  # never below 75% of a side
    assert np.allclose(h / 25.0, w / 40.0, atol=0.03)  # one scale for both sides: the aspect stays
    assert len(set(map(tuple, found))) > 50 and (h < 25).any() and (y > 0).any()  # it does move
    imagenet = windows([25, 40, 3], lambda shape, u: augment.random_crop_window(shape, u))
    assert (imagenet[:, 2] * imagenet[:, 3]).min() < 0.3 * 25 * 40  # imagenet crops far deeper


def test_unknown_mode_is_a_data_error():
    with pytest.raises(DataError, match="unknown augmentation 'heavy'"):
        augment.check_mode("heavy")


@pytest.mark.slow
def test_modes_through_the_pipeline(tmp_path):
    write_folder(str(tmp_path / "ds"), classes=("cat", "dog"), per_class=4, eval_per_class=2)
    info = layout.inspect(str(tmp_path / "ds"))
    with tf.Graph().as_default():
        data = tf.io.read_file(tf.constant(info.train_files[0]))
        draws = augment.draws(5)
        out = {mode: preprocess.train_image(data, SIZE, draws, mode=mode) for mode in augment.MODES}
        reference = preprocess.eval_image(data, SIZE)
        with tf.compat.v1.Session() as sess:
            values = sess.run([out, reference])
    images, reference = values
    assert np.array_equal(images["none"], reference)  # none: exactly the evaluation preprocessing
    for mode in ("light", "imagenet"):
        assert images[mode].shape == (SIZE, SIZE, 3)
    for mode in augment.MODES:
        dataset = pipeline.train_dataset(info, 4, SIZE, seed=1, augment_mode=mode)
        assert dataset.element_spec[0].shape.as_list() == [4, SIZE, SIZE, 3]


@pytest.mark.slow
def test_calibration_batches_are_training_images_in_one_fixed_order(tmp_path):
    write_folder(str(tmp_path / "ds"), classes=("cat", "dog"), per_class=6, eval_per_class=2)
    info = layout.inspect(str(tmp_path / "ds"))
    with tf.Graph().as_default():
        iterator = tf.compat.v1.data.make_initializable_iterator(
            pipeline.calibration_dataset(info, 4, SIZE, rank=0, size=2, seed=3))
        element = iterator.get_next()
        with tf.compat.v1.Session() as sess:
            passes = []
            for _ in range(2):
                sess.run(iterator.initializer)
                passes.append([sess.run(element) for _ in range(2)])
    first, second = passes
    for (a_images, a_labels), (b_images, b_labels) in zip(first, second):
        assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)  # same each time
    labels = np.concatenate([batch[1] for batch in first])
    assert sorted(labels[:6].tolist()) == sorted(info.train_labels[0::2])  # rank 0's share, once, first


def test_the_trainer_default_follows_the_image_size():
    from train.config import parse_flags
    assert parse_flags(["--model", "m"]).augment == "imagenet"  # 224 px
    assert parse_flags(["--model", "m", "--image-size", "64"]).augment == "light"
    assert parse_flags(["--model", "m", "--image-size", "64", "--augment", "none"]).augment == "none"
    assert parse_flags(["--model", "m", "--image_size=128"]).augment == "imagenet"
