"""What a --data-path holds: an image folder, TF-Slim TFRecords or synthetic data (no TensorFlow).

Why: the launcher checks the data before it starts any worker, and the trainer needs the class list and
example counts to size epochs; both must agree and must fail with one clear line on a user's mistake.

Layouts:
- image folder: DIR/train/<class>/*.{jpg,jpeg,png,bmp} and optionally DIR/validation/<class>/ (or val/,
  eval/). Class index = position in the sorted training class names.
- TFRecords (TF-Slim/ImageNet convention): DIR/train-* and DIR/validation-* (or val-*, eval-*), class
  names from DIR/labels.txt (one name per line, or Slim's `index:name`) or from `num_classes`.
  Records are counted here in pure Python (one seek per record), unless count_records=False.
- synthetic[:CLASSES[:TRAIN[:EVAL]]]: generated inside the pipeline; defaults 1000, 10000, 1000.
"""
import glob
import os

from data.errors import DataError
from data.labels import FILE_NAME as LABELS_FILE
from data.labels import read_labels
from data.records import TruncatedRecordFile, count_records

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
EVAL_DIRS = ("validation", "val", "eval")
TRAIN_PATTERN = "train-*"
EVAL_PATTERNS = ("validation-*", "val-*", "eval-*")
SYNTHETIC = "synthetic"
SYNTHETIC_DEFAULTS = (1000, 10000, 1000)  # classes, train examples, eval examples


class DataInfo:
    """Everything the pipeline needs to read one dataset (plain data, no TensorFlow)."""

    def __init__(self, kind, path, class_names, train_count, eval_count, label_offset=0,
                 train_files=(), train_labels=(), eval_files=(), eval_labels=(),
                 train_records=(), train_record_counts=(), eval_records=(), eval_record_counts=()):
        self.kind = kind
        self.path = path
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.train_count = train_count
        self.eval_count = eval_count
        self.label_offset = label_offset
        # kind == "folder": image paths and their class indices, sorted by class then path
        self.train_files = list(train_files)
        self.train_labels = list(train_labels)
        self.eval_files = list(eval_files)
        self.eval_labels = list(eval_labels)
        # kind == "tfrecord": file names (sorted) and their record counts (None when not counted)
        self.train_records = list(train_records)
        self.train_record_counts = list(train_record_counts)
        self.eval_records = list(eval_records)
        self.eval_record_counts = list(eval_record_counts)

    def summary(self):
        """One human line: what was found."""
        return "%s dataset %s: %d classes, %s training and %s validation examples" % (
            self.kind, self.path, self.num_classes, _count_text(self.train_count),
            _count_text(self.eval_count))

    def __repr__(self):
        return "DataInfo(%s)" % self.summary()


def folder_shard(files, labels, rank, size, what):
    """Rank ``rank``'s share of an image folder (every size-th example); DataError if it gets none."""
    mine = list(files[rank::size])
    if not mine:
        raise DataError("%d %s images cannot give each of %d ranks at least one; use fewer ranks or more data"
                        % (len(files), what, size))
    return mine, list(labels[rank::size])


def record_shard(records, counts, rank, size, what):
    """Rank ``rank``'s whole TFRecord files (every size-th); DataError when there are fewer files than ranks
    or this rank's files hold no records."""
    if len(records) < size:
        raise DataError("%d %s-* TFRecord files cannot give each of %d ranks whole files; convert again "
                        "with --shards %d or more (a multiple of the rank count)"
                        % (len(records), what, size, size))
    mine = records[rank::size]
    mine_counts = [count for count in counts[rank::size] if count is not None]
    if len(mine_counts) == len(mine) and sum(mine_counts) == 0:
        raise DataError("rank %d's %s-* TFRecord files hold no records; convert again with fewer shards"
                        % (rank, what))
    return mine


def check_sharding(info, size):
    """Every rank of a job of ``size`` gets training data: the pipeline's own checks, run for each rank
    before any starts (the launcher calls this so a bad split fails once, not in every worker)."""
    for rank in range(size):
        if info.kind == "folder":
            folder_shard(info.train_files, info.train_labels, rank, size, "training")
        elif info.kind == "tfrecord":
            record_shard(info.train_records, info.train_record_counts, rank, size, "train")


def inspect(path, label_offset=0, num_classes=None, count_records=True):
    """Look at a --data-path and return a DataInfo; DataError (one line) for every user mistake.

    label_offset: subtracted from TFRecord labels (TF-Slim's ImageNet labels run 1..1000 with 0 meaning
    background: use 1). num_classes: class count for TFRecords without labels.txt.
    """
    if path is None or str(path).strip() == "":
        raise DataError("no data path given; pass --data-path DIR (image folder or TFRecords) or 'synthetic'")
    path = str(path)
    if path == SYNTHETIC or path.startswith(SYNTHETIC + ":"):
        return inspect_synthetic(path)
    if not os.path.exists(path):
        raise DataError("data path %s does not exist; pass a folder with train/<class>/ images, "
                        "train-* TFRecords, or 'synthetic'" % path)
    if not os.path.isdir(path):
        raise DataError("data path %s is a file; pass the folder that holds train/ (or train-* TFRecords)"
                        % path)
    if os.path.isdir(os.path.join(path, "train")):
        return inspect_folder(path)
    if _record_files(path, TRAIN_PATTERN):
        return inspect_tfrecords(path, label_offset, num_classes, count_records)
    raise DataError("%s has no train/ folder (train/<class>/*.jpg) and no train-* TFRecord files; "
                    "point --data-path at the dataset's top folder" % path)


def inspect_synthetic(spec):
    """'synthetic[:CLASSES[:TRAIN[:EVAL]]]' -> DataInfo of kind 'synthetic'."""
    parts = spec.split(":")[1:]
    if len(parts) > 3:
        raise DataError("bad synthetic spec %r; use synthetic[:CLASSES[:TRAIN[:EVAL]]], "
                        "e.g. synthetic:10:2000:500" % spec)
    values = list(SYNTHETIC_DEFAULTS)
    for i, text in enumerate(parts):
        if not text.strip().isdigit() or (i < 2 and int(text) < 1):
            raise DataError("bad synthetic spec %r: %r is not a positive whole number; "
                            "use e.g. synthetic:10:2000:500" % (spec, text))
        values[i] = int(text)
    classes, train, evaluation = values
    return DataInfo("synthetic", spec, ["class_%04d" % i for i in range(classes)], train, evaluation)


def inspect_folder(path):
    """DIR/train/<class>/ images (+ optional validation) -> DataInfo of kind 'folder'."""
    train_dir = os.path.join(path, "train")
    class_names = _class_dirs(train_dir)
    if not class_names:
        raise DataError("%s has no class folders; put the images in %s/<class name>/*.jpg"
                        % (train_dir, train_dir))
    index = {name: i for i, name in enumerate(class_names)}
    train_files, train_labels = _folder_images(train_dir, class_names, index)
    eval_files, eval_labels = [], []
    eval_dir = _first_dir(path, EVAL_DIRS)
    if eval_dir is not None:
        eval_classes = _class_dirs(eval_dir)
        unknown = [name for name in eval_classes if name not in index]
        if unknown:
            raise DataError("validation classes absent from training: %s (in %s); every validation class "
                            "needs a folder of training images" % (_few(unknown), eval_dir))
        if not eval_classes:
            raise DataError("%s has no class folders; put the images in %s/<class name>/ or remove it"
                            % (eval_dir, eval_dir))
        eval_files, eval_labels = _folder_images(eval_dir, eval_classes, index)
    return DataInfo("folder", path, class_names, len(train_files), len(eval_files),
                    train_files=train_files, train_labels=train_labels,
                    eval_files=eval_files, eval_labels=eval_labels)


def inspect_tfrecords(path, label_offset=0, num_classes=None, count_records=True):
    """DIR/train-* and DIR/validation-* TFRecords -> DataInfo of kind 'tfrecord'."""
    if label_offset < 0:
        raise DataError("label offset %d is negative; use 0, or 1 for TF-Slim ImageNet records"
                        % label_offset)
    class_names = _record_class_names(path, label_offset, num_classes)
    train_records = _record_files(path, TRAIN_PATTERN)
    eval_records = []
    for pattern in EVAL_PATTERNS:
        eval_records = _record_files(path, pattern)
        if eval_records:
            break
    train_counts = _counts(train_records, count_records)
    eval_counts = _counts(eval_records, count_records)
    train_count = sum(train_counts) if count_records else None
    eval_count = sum(eval_counts) if count_records else None
    if count_records and train_count == 0:
        raise DataError("the train-* TFRecord files in %s hold no records; re-run the converter" % path)
    return DataInfo("tfrecord", path, class_names, train_count, eval_count, label_offset=label_offset,
                    train_records=train_records, train_record_counts=train_counts,
                    eval_records=eval_records, eval_record_counts=eval_counts)


def _record_class_names(path, label_offset, num_classes):
    labels_file = os.path.join(path, LABELS_FILE)
    if os.path.isfile(labels_file):
        names = read_labels(labels_file)[label_offset:]
        if not names:
            raise DataError("%s lists no classes after the label offset %d; fix the file or the offset"
                            % (labels_file, label_offset))
        if num_classes is not None and num_classes != len(names):
            raise DataError("%s lists %d classes (after label offset %d) but %d were asked for; "
                            "drop the class count or fix the file"
                            % (labels_file, len(names), label_offset, num_classes))
        return names
    if num_classes is None:
        raise DataError("%s holds TFRecords but no %s; add one (a class name per line, or Slim's index:name) "
                        "or give the number of classes" % (path, LABELS_FILE))
    if num_classes < 1:
        raise DataError("number of classes %d must be at least 1" % num_classes)
    return ["class_%04d" % i for i in range(num_classes)]


def _counts(files, count):
    if not count:
        return [None] * len(files)
    counts = []
    for name in files:
        try:
            counts.append(count_records(name))
        except TruncatedRecordFile as exc:
            raise DataError("TFRecord file is truncated (%s); re-run the converter (it resumes) or copy "
                            "it again" % exc) from None
    return counts


def _record_files(path, pattern):
    """Complete TFRecord files matching a pattern, sorted (the converter's temporaries are hidden)."""
    return sorted(name for name in glob.glob(os.path.join(path, pattern)) if os.path.isfile(name))


def _first_dir(path, names):
    for name in names:
        candidate = os.path.join(path, name)
        if os.path.isdir(candidate):
            return candidate
    return None


def _class_dirs(directory):
    return sorted(name for name in os.listdir(directory)
                  if not name.startswith(".") and os.path.isdir(os.path.join(directory, name)))


def is_image_name(name):
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _folder_images(directory, class_names, index):
    """(paths, labels) of every image below each class folder; DataError for an empty class."""
    files, labels = [], []
    for name in class_names:
        found = []
        for root, dirs, names in os.walk(os.path.join(directory, name), followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(os.path.join(root, item) for item in names if is_image_name(item))
        if not found:
            raise DataError("class folder %s has no .jpg/.jpeg/.png/.bmp images; add images or remove "
                            "the folder" % os.path.join(directory, name))
        found.sort()
        files.extend(found)
        labels.extend([index[name]] * len(found))
    return files, labels


def _few(names, limit=5):
    shown = ", ".join(names[:limit])
    return shown + (" and %d more" % (len(names) - limit) if len(names) > limit else "")


def _count_text(count):
    return "uncounted" if count is None else str(count)
