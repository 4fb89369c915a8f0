"""The demo's small real dataset: scikit-learn's bundled UCI digits as an image folder.

    python -m data.digits --dst DIR [--size 32] [--eval-fraction 0.2] [--seed 0]

Writes DIR/train/<digit>/*.png and DIR/validation/<digit>/*.png: 1797 8x8 grey images (10 classes)
upsampled to SIZE x SIZE RGB, split per class with a fixed seed. Why this set: load_digits() reads from
the scikit-learn wheel, so the demo needs no network. The folder is built beside DIR and renamed into
place when complete, so a partial folder never looks complete; re-running on a complete folder does
nothing.
"""
import argparse
import os
import sys

from data.errors import DataError
from data.png import encode_rgb
from data.sample_folder import write_folder

MARKER = "digits.json"


def to_rgb_rows(image, size):
    """8x8 values 0..16 -> `size` rows of RGB bytes (nearest-neighbour upsampling, grey in 3 channels)."""
    import numpy as np

    grey = np.clip(np.asarray(image, np.float64) * (255.0 / 16.0), 0, 255).astype(np.uint8)
    rows_index = (np.arange(size) * grey.shape[0]) // size
    cols_index = (np.arange(size) * grey.shape[1]) // size
    big = grey[rows_index][:, cols_index]
    rgb = np.repeat(big[:, :, None], 3, axis=2)
    return [rgb[row].tobytes() for row in range(size)]


def is_complete(dst):
    return os.path.isfile(os.path.join(dst, MARKER))


def write_digits(dst, size=32, eval_fraction=0.2, seed=0):
    """Write the folder unless it is already complete; returns the marker's record."""
    if size < 8:
        raise DataError("--size %d is too small; use 8 or more (e.g. 32)" % size)

    def load():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (digits.target, [str(label) for label in range(10)],
                lambda index: encode_rgb(to_rgb_rows(digits.images[index], size), size, size),
                lambda index: "digit_%04d.png" % index, {"source": "sklearn.datasets.load_digits"})

    return write_folder(dst, "digits", MARKER, {"size": size, "eval_fraction": eval_fraction, "seed": seed},
                        load)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.digits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dst", required=True, help="folder to create (train/ and validation/ inside)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="validation share per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    args = parser.parse_args(argv)
    try:
        existed = is_complete(args.dst)
        record = write_digits(args.dst, args.size, args.eval_fraction, args.seed)
    except DataError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    print("%s %s: %d training and %d validation images, %dx%d, 10 classes"
          % ("already complete:" if existed else "wrote", args.dst, record["train_count"],
             record["eval_count"], record["size"], record["size"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
