"""Image folder -> TF-Slim style TFRecord shards, in parallel, resumable.

    python -m data.convert --src DIR --dst DIR --shards N [--eval-shards M] [--workers W]

Why: reading a few large files is far faster than a million small ones, and whole-file sharding by
rank needs at least one file per rank. Each shard is written under a hidden temporary name and renamed
only when complete, so an interrupted run leaves no half shard under a final name; re-running skips the
shards that exist. Every image is decoded once on the way in; unreadable ones are left out and listed
(bad_files.txt), so the shards hold only good images.

Records: image/encoded (the original bytes), image/format (JPEG|PNG|BMP), image/class/label (class index
+ --label-offset), image/class/text, image/filename (path relative to --src). DST gets labels.txt too.
"""
import argparse
import hashlib
import json
import multiprocessing
import os
import random
import sys
import time

from contract import atomic
from data.errors import DataError
from data.labels import labels_path, write_labels
from data.layout import inspect_folder

PLAN_FILE = "convert.json"
BAD_FILE = "bad_files.txt"
SHUFFLE_SEED = 20240229


def shard_name(split, index, count):
    return "%s-%05d-of-%05d" % (split, index, count)


def plan_shards(info, shards, eval_shards, label_offset=0, seed=SHUFFLE_SEED):
    """Pure: [(file name, [(path, label), ...]), ...] for train and validation shards.

    Training examples are shuffled with a fixed seed first, so every shard (and every rank's whole
    files) holds a mix of classes; examples are dealt round-robin so shard sizes differ by at most one.
    """
    if shards < 1:
        raise DataError("--shards %d must be at least 1 (use at least the number of ranks)" % shards)
    train = list(zip(info.train_files, [label + label_offset for label in info.train_labels]))
    random.Random(seed).shuffle(train)
    if len(train) < shards:
        raise DataError("%d training images cannot fill %d shards; use --shards %d or fewer"
                        % (len(train), shards, len(train)))
    plan = [(shard_name("train", i, shards), train[i::shards]) for i in range(shards)]
    evaluation = list(zip(info.eval_files, [label + label_offset for label in info.eval_labels]))
    if evaluation:
        eval_shards = max(1, min(eval_shards, len(evaluation)))
        plan += [(shard_name("validation", i, eval_shards), evaluation[i::eval_shards])
                 for i in range(eval_shards)]
    return plan


def plan_fingerprint(plan, src):
    """A short digest of what a conversion would write; a resume must match it."""
    digest = hashlib.sha1()
    for name, examples in plan:
        digest.update(name.encode())
        for path, label in examples:
            digest.update(("%s\t%d\n" % (os.path.relpath(path, src), label)).encode())
    return digest.hexdigest()


def image_format(data):
    if data[:2] == b"\xff\xd8":
        return b"JPEG"
    if data[:4] == b"\x89PNG":
        return b"PNG"
    if data[:2] == b"BM":
        return b"BMP"
    return b""


class _ShardWriter:
    """Runs in a worker process (spawned: TensorFlow is imported there, never in the parent)."""

    def __init__(self, counter):
        from data import preprocess
        from tfcompat import tf

        self.tf = tf
        self.counter = counter
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.encoded = tf.compat.v1.placeholder(tf.string, [])
            self.decoded = tf.shape(preprocess.decode_full(self.encoded))
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)

    def load(self, path):
        """(bytes, None) for a good image, (None, reason) otherwise."""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            return None, "unreadable: %s" % (exc.strerror or exc)
        if not image_format(data):
            return None, "not a JPEG, PNG or BMP image"
        try:
            self.session.run(self.decoded, {self.encoded: data})
        except self.tf.errors.OpError:
            return None, "corrupt image (decoding failed)"
        return data, None

    def example(self, data, label, class_name, relative):
        train = self.tf.train

        def feature_bytes(value):
            return train.Feature(bytes_list=train.BytesList(value=[value]))

        features = {
            "image/encoded": feature_bytes(data),
            "image/format": feature_bytes(image_format(data)),
            "image/class/label": train.Feature(int64_list=train.Int64List(value=[label])),
            "image/class/text": feature_bytes(class_name.encode("utf-8")),
            "image/filename": feature_bytes(relative.encode("utf-8")),
        }
        return train.Example(features=train.Features(feature=features)).SerializeToString()

    def write(self, task):
        final, examples, src, class_names, label_offset = task
        directory, name = os.path.split(final)
        temporary = os.path.join(directory, ".%s.tmp-%d" % (name, os.getpid()))
        bad = []
        with self.tf.io.TFRecordWriter(temporary) as writer:
            for path, label in examples:
                data, problem = self.load(path)
                if problem:
                    bad.append((path, problem))
                else:
                    relative = os.path.relpath(path, src)
                    writer.write(self.example(data, label, class_names[label - label_offset], relative))
                with self.counter.get_lock():
                    self.counter.value += 1
        os.replace(temporary, final)
        return final, len(examples) - len(bad), bad


_WRITER = None


def _init_worker(counter):
    global _WRITER
    _WRITER = _ShardWriter(counter)


def _write_shard(task):
    return _WRITER.write(task)


def remove_temporaries(dst):
    for name in os.listdir(dst):
        if name.startswith(".") and ".tmp-" in name:
            os.remove(os.path.join(dst, name))


def check_resume(dst, fingerprint, record):
    """Write the plan record on a first run; on a re-run insist it is the same conversion."""
    path = os.path.join(dst, PLAN_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            previous = json.load(handle)
        if previous.get("fingerprint") != fingerprint:
            raise DataError("%s holds shards of a different conversion (other source, files or shard "
                            "counts); use an empty --dst or the same options" % dst)
        return
    existing = [name for name in os.listdir(dst) if name.startswith(("train-", "validation-"))]
    if existing:
        raise DataError("%s already holds TFRecord files (%s, ...) not written by this converter; use an "
                        "empty --dst" % (dst, existing[0]))
    record = dict(record, fingerprint=fingerprint)
    atomic.write_json(path, record, indent=1)


def convert(src, dst, shards, eval_shards=1, workers=None, label_offset=0, progress=True):
    """Write the shards that are missing; returns {"written": [...], "skipped": [...], "bad": [...]}."""
    info = inspect_folder(src)
    plan = plan_shards(info, shards, eval_shards, label_offset)
    os.makedirs(dst, exist_ok=True)
    check_resume(dst, plan_fingerprint(plan, src),
                 {"src": os.path.abspath(src), "shards": shards, "eval_shards": eval_shards,
                  "label_offset": label_offset, "train_count": info.train_count,
                  "eval_count": info.eval_count})
    remove_temporaries(dst)
    write_labels(labels_path(dst), ["background"] * label_offset + info.class_names)
    todo = [(os.path.join(dst, name), examples, src, info.class_names, label_offset)
            for name, examples in plan if not os.path.exists(os.path.join(dst, name))]
    done = [name for name, _ in plan if os.path.exists(os.path.join(dst, name))]
    bad = []
    written = []
    if todo:
        written, bad = _run(todo, workers, progress)
    _append_bad(dst, bad)
    return {"written": written, "skipped": done, "bad": bad}


def _run(todo, workers, progress):
    total = sum(len(task[1]) for task in todo)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    bar = _progress_bar(total, progress)
    written, bad = [], []
    pool = context.Pool(workers, initializer=_init_worker, initargs=(counter,))
    try:
        pending = pool.imap_unordered(_write_shard, todo)
        results = []
        collector = _collect(pending, results)
        while not collector.finished():
            time.sleep(0.2)
            bar.update(counter.value - bar.n)
        bar.update(counter.value - bar.n)
        collector.raise_error()
        for final, _count, shard_bad in results:
            written.append(os.path.basename(final))
            bad.extend(shard_bad)
    finally:
        pool.terminate()
        pool.join()
        bar.close()
    return written, bad


class _collect:
    """Drains an imap iterator on a thread so the main thread can keep the progress bar moving."""

    def __init__(self, pending, results):
        import threading

        self.error = None
        self.results = results
        self.thread = threading.Thread(target=self._drain, args=(pending,))
        self.thread.daemon = True
        self.thread.start()

    def _drain(self, pending):
        try:
            for item in pending:
                self.results.append(item)
        except Exception as exc:  # re-raised in the main thread
            self.error = exc

    def finished(self):
        return not self.thread.is_alive()

    def raise_error(self):
        if self.error is not None:
            raise self.error


def _progress_bar(total, enabled):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="convert", disable=not enabled, file=sys.stderr)


def _append_bad(dst, bad):
    if not bad:
        return
    with open(os.path.join(dst, BAD_FILE), "a") as handle:
        for path, reason in bad:
            handle.write("%s\t%s\n" % (path, reason))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="image folder with train/<class>/ (and validation/)")
    parser.add_argument("--dst", required=True, help="output folder for train-*/validation-* shards")
    parser.add_argument("--shards", type=int, required=True,
                        help="training shards (>= ranks; 1024 for ImageNet)")
    parser.add_argument("--eval-shards", type=int, default=None, help="validation shards (default: shards/8)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument("--label-offset", type=int, default=0,
                        help="added to class indices (1 = TF-Slim ImageNet style, 0 is background)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    eval_shards = args.eval_shards if args.eval_shards is not None else max(1, args.shards // 8)
    try:
        if not os.path.isdir(args.src):
            raise DataError("--src %s is not a folder; pass the image folder that holds train/" % args.src)
        if args.label_offset < 0:
            raise DataError("--label-offset %d is negative; use 0 or 1" % args.label_offset)
        result = convert(args.src, args.dst, args.shards, eval_shards, args.workers, args.label_offset,
                         progress=not args.no_progress)
    except DataError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; complete shards are kept, re-run the same command to resume\n")
        return 130
    print("wrote %d shard(s), %d already complete, into %s" % (len(result["written"]), len(result["skipped"]),
                                                               args.dst))
    if result["bad"]:
        print("left out %d unreadable image(s), listed in %s:"
              % (len(result["bad"]), os.path.join(args.dst, BAD_FILE)))
        for path, reason in result["bad"][:20]:
            print("  %s (%s)" % (path, reason))
    return 0


if __name__ == "__main__":
    sys.exit(main())
