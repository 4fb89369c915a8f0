"""Image file lists for tf.data: small ones inside the graph, large ones as text files beside it.

Why: `Dataset.from_tensor_slices(list)` embeds the list in the graph as a constant. For ImageNet
(1.28 million paths, tens of MB) that costs seconds to tens of seconds of start-up and memory on every
rank. Above EMBED_LIMIT files the shard's paths and labels are written once to two text files (named by
a digest of their content, written atomically, reused by later runs) and read with TextLineDataset.
"""
import hashlib
import os
import tempfile

from contract import atomic
from tfcompat import tf

EMBED_LIMIT = 20000


def list_dataset(files, labels, list_dir=None):
    """Dataset of (path string, label int32) in the given order."""
    if list_dir is None and len(files) <= EMBED_LIMIT:
        return tf.data.Dataset.from_tensor_slices((list(files), list(labels)))
    paths_file, labels_file = write_lists(files, labels, list_dir or tempfile.gettempdir())
    paths = tf.data.TextLineDataset(paths_file)
    numbers = tf.data.TextLineDataset(labels_file).map(lambda text: tf.strings.to_number(text, tf.int32))
    return tf.data.Dataset.zip((paths, numbers))


def write_lists(files, labels, directory):
    """(paths file, labels file) holding one entry per line; existing identical files are reused."""
    paths_text = "".join("%s\n" % path for path in files)
    labels_text = "".join("%d\n" % label for label in labels)
    digest = hashlib.sha1((paths_text + "\0" + labels_text).encode("utf-8")).hexdigest()[:16]
    os.makedirs(directory, exist_ok=True)
    written = []
    for kind, text in (("paths", paths_text), ("labels", labels_text)):
        target = os.path.join(directory, "data-%s-%s.txt" % (kind, digest))
        if not os.path.exists(target):
            atomic.write_text(target, text)
        written.append(target)
    return written[0], written[1]
