"""Helpers for the data tests: real JPEG/PNG image folders written with Pillow (no tests here).

Each image is a flat colour that encodes its class and index, so a test can tell images apart after
decoding (JPEG keeps flat colours within a few levels).
"""
import os

import numpy as np
from PIL import Image


def colour_of(label, index):
    return (40 + 50 * (label % 4), 30 + 7 * (index % 30), 200 - 40 * (label // 4))


def write_image(path, label, index, size=(40, 32)):
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:, :] = colour_of(label, index)
    array[: size[1] // 4, : size[0] // 4] = 255  # a corner mark, so flips and crops change pixels
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(array)
    if path.lower().endswith(".png"):
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=95)
    return path


def write_folder(root, classes=("cat", "dog", "eel"), per_class=4, eval_per_class=2, eval_dir="validation",
                 png_every=3):
    """root/train/<class>/*.jpg|png and root/<eval_dir>/<class>/*; returns {path: label}."""
    written = {}
    for split, count in (("train", per_class), (eval_dir, eval_per_class)):
        if not count:
            continue
        for label, name in enumerate(sorted(classes)):
            for index in range(count):
                ext = ".png" if png_every and index % png_every == png_every - 1 else ".jpg"
                path = os.path.join(root, split, name, "%s_%03d%s" % (name, index, ext))
                written[write_image(path, label, index + (100 if split != "train" else 0))] = label
    return written


def corrupt_truncate(path):
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def corrupt_garbage(path):
    with open(path, "wb") as handle:
        handle.write(b"<html>this is not an image</html>")
