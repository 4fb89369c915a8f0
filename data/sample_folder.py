"""A small labelled photo set written as an image folder, the shared half of data.digits and data.faces.

DST/train/<class>/*.png and DST/validation/<class>/*.png, split per class with a fixed seed. The folder is
built beside DST and renamed into place with a marker file when complete, so a partial folder never looks
complete, and re-running on a complete folder with the same settings does nothing.
"""
import json
import os
import shutil

from data.errors import DataError


def split_indices(labels, eval_fraction, seed):
    """Pure: (train indices, eval indices), stratified: each class keeps round(fraction * n) for eval."""
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    train, evaluation = [], []
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        cut = int(round(eval_fraction * len(members)))
        evaluation.extend(members[:cut].tolist())
        train.extend(members[cut:].tolist())
    return sorted(train), sorted(evaluation)


def write_folder(dst, kind, marker, settings, load):
    """Write the folder unless it is already complete; returns the marker's record.

    ``settings`` holds at least eval_fraction and seed; ``load()`` returns (labels, class names, a function
    index -> PNG bytes, a function index -> file name, extra record fields).
    """
    eval_fraction = settings["eval_fraction"]
    if not 0.0 < eval_fraction < 1.0:
        raise DataError("--eval-fraction %r must be between 0 and 1 (e.g. 0.2)" % eval_fraction)
    marker_path = os.path.join(dst, marker)
    if os.path.isfile(marker_path):
        with open(marker_path) as handle:
            record = json.load(handle)
        if any(record.get(key) != value for key, value in settings.items()):
            written = ", ".join("%s=%s" % (key, record.get(key)) for key in sorted(settings))
            raise DataError("%s holds %s written with %s; remove it or pass the same options"
                            % (dst, kind, written))
        return record
    if os.path.exists(dst):
        raise DataError("%s exists but is not a complete %s folder; remove it or choose another --dst"
                        % (dst, kind))
    labels, classes, png_of, file_name, extra = load()
    train, evaluation = split_indices(labels, eval_fraction, settings["seed"])
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    building = os.path.join(parent, ".%s.partial-%d" % (os.path.basename(os.path.abspath(dst)), os.getpid()))
    shutil.rmtree(building, ignore_errors=True)
    try:
        for split, indices in (("train", train), ("validation", evaluation)):
            for index in indices:
                folder = os.path.join(building, split, classes[int(labels[index])])
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, file_name(index)), "wb") as handle:
                    handle.write(png_of(index))
        record = dict(settings, train_count=len(train), eval_count=len(evaluation), classes=list(classes),
                      **extra)
        with open(os.path.join(building, marker), "w") as handle:
            json.dump(record, handle, indent=1, sort_keys=True)
        os.rename(building, dst)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return record
