"""Training augmentation: crop windows and flips from random numbers drawn elsewhere (TensorFlow 1.15 API).

Modes (`--augment`): `imagenet`, Inception's random-resized crop + flip, for ImageNet-sized photos;
`light`, a mild scale/translate crop + flip, for small images (a crop down to 8% of an 8x8 digit or a
25x25 face leaves nothing to learn from); `none`, the evaluation preprocessing unchanged.

Why: decoding runs inside a small per-image dataset so a corrupt file can be caught (see robust.py);
random ops created in such a function may be re-instantiated per image and repeat the same numbers.
So the random numbers are drawn once per image upstream (`draws`) and turned into a crop here, purely.
The sampler is Inception's: area 8%-100% of the image, aspect ratio 3/4-4/3 (log-uniform), up to
ATTEMPTS tries, a try being valid when it fits and covers >= 10% of some bounding box (if any);
the whole image when no try is valid.
"""
import math

from data.errors import AUGMENT_MODES, DataError
from tfcompat import tf

ATTEMPTS = 10
NUM_DRAWS = 4 * ATTEMPTS + 1  # area, ratio, y, x per attempt; one for the flip
AREA_RANGE = (0.08, 1.0)
LOG_RATIO_RANGE = (math.log(3.0 / 4.0), math.log(4.0 / 3.0))
MIN_OBJECT_COVERED = 0.1
MODES = AUGMENT_MODES
# light: a square-ish window of 75%-100% of each side (its mean, 87.5%, is the evaluation's centre crop),
# anywhere in the image: at most a 25% shift and a 1.33x zoom.
LIGHT_SCALE_RANGE = (0.75, 1.0)


def check_mode(mode):
    if mode not in MODES:
        raise DataError("unknown augmentation %r; use one of: %s" % (mode, ", ".join(MODES)))


def draws(seed=None):
    """float32 [NUM_DRAWS] uniform in [0, 1): the randomness of one image's augmentation."""
    return tf.random.uniform([NUM_DRAWS], seed=seed)


def random_crop_window(shape, uniforms, boxes=None):
    """[y, x, h, w] int32 of a random resized crop of an image of `shape` [H, W, ...].

    uniforms: float32 [NUM_DRAWS]; boxes: float32 [N, 4] (ymin, xmin, ymax, xmax) in [0, 1], N may be 0.
    """
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    u = tf.reshape(uniforms[:4 * ATTEMPTS], [4, ATTEMPTS])
    area = height * width * (AREA_RANGE[0] + (AREA_RANGE[1] - AREA_RANGE[0]) * u[0])
    ratio = tf.exp(LOG_RATIO_RANGE[0] + (LOG_RATIO_RANGE[1] - LOG_RATIO_RANGE[0]) * u[1])
    crop_w = tf.round(tf.sqrt(area * ratio))
    crop_h = tf.round(tf.sqrt(area / ratio))
    fits = (crop_w >= 1.0) & (crop_h >= 1.0) & (crop_w <= width) & (crop_h <= height)
    crop_y = tf.floor(u[2] * (height - crop_h + 1.0))
    crop_x = tf.floor(u[3] * (width - crop_w + 1.0))
    valid = fits
    if boxes is not None:
        valid = fits & _covers_a_box(crop_y, crop_x, crop_h, crop_w, boxes, height, width)
    any_valid = tf.reduce_any(valid)
    first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)
    chosen = tf.stack([tf.gather(crop_y, first), tf.gather(crop_x, first),
                       tf.gather(crop_h, first), tf.gather(crop_w, first)])
    whole = tf.stack([0.0, 0.0, height, width])
    return tf.cast(tf.cond(any_valid, lambda: chosen, lambda: whole), tf.int32)


def light_crop_window(shape, uniforms):
    """[y, x, h, w] int32 of a mild random crop: each side scaled by one factor in LIGHT_SCALE_RANGE,
    placed uniformly in the image (uses the first three draws)."""
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    scale = LIGHT_SCALE_RANGE[0] + (LIGHT_SCALE_RANGE[1] - LIGHT_SCALE_RANGE[0]) * uniforms[0]
    crop_h = tf.maximum(tf.round(height * scale), 1.0)
    crop_w = tf.maximum(tf.round(width * scale), 1.0)
    crop_y = tf.floor(uniforms[1] * (height - crop_h + 1.0))
    crop_x = tf.floor(uniforms[2] * (width - crop_w + 1.0))
    return tf.cast(tf.stack([crop_y, crop_x, crop_h, crop_w]), tf.int32)


def _covers_a_box(crop_y, crop_x, crop_h, crop_w, boxes, height, width):
    """bool [ATTEMPTS]: the crop covers >= MIN_OBJECT_COVERED of at least one box (True without boxes)."""
    box_y0 = boxes[:, 0] * height
    box_x0 = boxes[:, 1] * width
    box_y1 = boxes[:, 2] * height
    box_x1 = boxes[:, 3] * width
    top = tf.maximum(crop_y[:, None], box_y0[None, :])
    left = tf.maximum(crop_x[:, None], box_x0[None, :])
    bottom = tf.minimum((crop_y + crop_h)[:, None], box_y1[None, :])
    right = tf.minimum((crop_x + crop_w)[:, None], box_x1[None, :])
    inter = tf.maximum(bottom - top, 0.0) * tf.maximum(right - left, 0.0)
    box_area = tf.maximum((box_y1 - box_y0) * (box_x1 - box_x0), 1e-6)
    covered = tf.reduce_any(inter / box_area[None, :] >= MIN_OBJECT_COVERED, axis=1)
    no_boxes = tf.equal(tf.shape(boxes)[0], 0)
    return covered | no_boxes


def maybe_flip(image, uniforms):
    """Mirror left-right when the image's last draw is below one half."""
    return tf.cond(uniforms[NUM_DRAWS - 1] < 0.5, lambda: tf.reverse(image, axis=[1]), lambda: image)
