"""ImageNet-style preprocessing from encoded image bytes (TensorFlow 1.15 API).

Why: training wants random resized crops (Inception-style, see augment.py) and flips;
evaluation wants a deterministic resize to size/0.875 (256 for 224) and a centre crop. For JPEG the
crop window is computed from the header and decoding is fused with cropping (decode_and_crop_jpeg),
which skips decoding the pixels the crop throws away. PNG and BMP are decoded whole, then cropped.
"""
from data import augment
from tfcompat import tf

MEAN_RGB = (0.485, 0.456, 0.406)
STDDEV_RGB = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875  # 224 / 256
TRAIN_DCT_METHOD = "INTEGER_FAST"  # faster JPEG decoding for augmented training; evaluation keeps the default


def is_png(data):
    return tf.equal(tf.strings.substr(data, 0, 4), b"\x89PNG")


def is_bmp(data):
    return tf.equal(tf.strings.substr(data, 0, 2), b"BM")


def decode_full(data):
    """uint8 [H, W, 3] from JPEG, PNG or BMP bytes; an InvalidArgumentError for anything else."""
    def other():
        check = tf.debugging.Assert(tf.constant(False), ["not a JPEG, PNG or BMP image"])
        with tf.control_dependencies([check]):
            return tf.zeros([1, 1, 3], tf.uint8)

    def png_or_other():
        return tf.cond(is_bmp(data), lambda: tf.io.decode_bmp(data, channels=3), other)

    def not_jpeg():
        return tf.cond(is_png(data), lambda: tf.io.decode_png(data, channels=3), png_or_other)

    image = tf.cond(tf.io.is_jpeg(data), lambda: tf.io.decode_jpeg(data, channels=3), not_jpeg)
    image.set_shape([None, None, 3])
    return image


def decode_window(data, window_of_shape, dct_method=""):
    """uint8 [h, w, 3] of the crop window_of_shape([H, W, C]) returns as [y, x, h, w].

    JPEG: the shape comes from the header and decoding is fused with cropping. Other formats are
    decoded once, whole, then sliced.
    """
    def jpeg():
        window = window_of_shape(tf.io.extract_jpeg_shape(data))
        return tf.io.decode_and_crop_jpeg(data, window, channels=3, dct_method=dct_method)

    def other():
        image = decode_full(data)
        window = window_of_shape(tf.shape(image))
        return tf.slice(image, tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], 3]))

    image = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def center_crop_window(shape, image_size):
    """[y, x, h, w] of the centre square that becomes image_size after resizing the short side to
    image_size / 0.875 (the 256/224 rule)."""
    height, width = shape[0], shape[1]
    short = tf.cast(tf.minimum(height, width), tf.float32)
    side = tf.cast(tf.round(short * EVAL_CROP_FRACTION), tf.int32)
    side = tf.maximum(side, 1)
    return tf.stack([(height - side) // 2, (width - side) // 2, side, side])


def normalize(image):
    """uint8/float [.., 3] in 0..255 -> float32 standardised with the ImageNet mean and std."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(MEAN_RGB, tf.float32)) / tf.constant(STDDEV_RGB, tf.float32)


def resize(image, image_size):
    bilinear = tf.image.ResizeMethod.BILINEAR
    resized = tf.compat.v1.image.resize(image, [image_size, image_size], method=bilinear)
    resized.set_shape([image_size, image_size, 3])
    return resized


def train_image(data, image_size, uniforms, boxes=None, mode="imagenet"):
    """Encoded bytes -> float32 [S, S, 3] augmented by `mode` (augment.MODES), normalised.

    imagenet: random resized crop + horizontal flip; light: mild scale/translate crop + flip; none: the
    evaluation preprocessing. uniforms: augment.NUM_DRAWS numbers from augment.draws(); boxes: optional
    [N, 4] object boxes (imagenet only).
    """
    augment.check_mode(mode)
    if mode == "none":
        return eval_image(data, image_size)
    if mode == "light":
        def window(shape):
            return augment.light_crop_window(shape, uniforms)
    else:
        def window(shape):
            return augment.random_crop_window(shape, uniforms, boxes)
    image = decode_window(data, window, dct_method=TRAIN_DCT_METHOD)
    return normalize(augment.maybe_flip(resize(image, image_size), uniforms))


def eval_image(data, image_size):
    """Encoded bytes -> float32 [S, S, 3]: centre crop (256/224 rule), resize, normalised; deterministic."""
    image = decode_window(data, lambda shape: center_crop_window(shape, image_size))
    return normalize(resize(image, image_size))
