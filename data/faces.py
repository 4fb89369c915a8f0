"""A small real 2-class photo set: scikit-image's bundled LFW subset (faces / non-faces) as an image folder.

    python -m data.faces --dst DIR [--eval-fraction 0.2] [--seed 0]

Writes DIR/train/{face,nonface}/*.png and DIR/validation/{face,nonface}/*.png: 200 grey 25x25 crops
(`skimage.data.lfw_subset()`: the first 100 are faces from Labeled Faces in the Wild, the other 100 are
random non-face patches of the same photos), 160 for training and 40 for validation, split per class with a
fixed seed. Why this set: it is inside the scikit-image wheel (skimage/data/lfw_subset.npy, no download),
it is real photographs, and it is the shape of a user's own small job (two classes, a few hundred images),
unlike the digits of the demo. The images keep their 25x25 pixels: the trainer resizes to --image-size like
any user's photos. The folder is built beside DIR and renamed into place when complete.
"""
import argparse
import os
import sys

from data.errors import DataError
from data.png import encode_rgb
from data.sample_folder import write_folder

MARKER = "faces.json"
CLASSES = ("face", "nonface")
PER_CLASS = 100


def load():
    """(images float [200, 25, 25] in 0..1, labels [200]: 0 face, 1 non-face) from the scikit-image wheel."""
    try:
        from skimage import data as skdata
    except ImportError:
        raise DataError("scikit-image is not installed; pip install scikit-image (it ships the faces)") \
            from None
    import numpy as np

    images = np.asarray(skdata.lfw_subset(), np.float64)
    labels = np.array([0] * PER_CLASS + [1] * (len(images) - PER_CLASS))
    return images, labels


def to_rgb_rows(image):
    """A grey image with values 0..1 -> its rows of RGB bytes."""
    import numpy as np

    grey = np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    return [rgb[row].tobytes() for row in range(rgb.shape[0])]


def write_faces(dst, eval_fraction=0.2, seed=0, loader=load):
    """Write the folder unless it is already complete; returns the marker's record."""

    def samples():
        images, labels = loader()
        height, width = images[0].shape
        return (labels, CLASSES, lambda index: encode_rgb(to_rgb_rows(images[index]), width, height),
                lambda index: "lfw_%03d.png" % index,
                {"size": int(images.shape[1]), "source": "skimage.data.lfw_subset"})

    return write_folder(dst, "faces", MARKER, {"eval_fraction": eval_fraction, "seed": seed}, samples)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.faces", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dst", required=True, help="folder to create (train/ and validation/ inside)")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="validation share per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    args = parser.parse_args(argv)
    try:
        existed = os.path.isfile(os.path.join(args.dst, MARKER))
        record = write_faces(args.dst, args.eval_fraction, args.seed)
    except DataError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    print("%s %s: %d training and %d validation images, %dx%d, classes %s"
          % ("already complete:" if existed else "wrote", args.dst, record["train_count"],
             record["eval_count"], record["size"], record["size"], ", ".join(record["classes"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
