"""`python -m train.predict MODEL IMAGE [IMAGE ...]`: top-k class names and probabilities, a line per image.

MODEL is what a training job left behind: an export directory (`<job>/export/step_N`, or `<job>/export`
for the newest, or the job's output directory itself), a SavedModel directory, or a checkpoint directory
(`<job>/checkpoints`, rebuilt from its run_meta.json). IMAGE is a JPEG/PNG/BMP file or a folder (searched
recursively). Why here: the images get exactly the evaluation preprocessing of the trainer
(data.preprocess.eval_image: centre crop, resize, ImageNet normalisation), and the class names come from
what training wrote (preprocessing.json or labels.txt), so a prediction means what validation meant.
Mistakes (no model, an unreadable image, class names that do not fit the model) are one line, exit 2.
"""
import argparse
import json
import os
import sys

import numpy as np

from train.errors import USER_ERROR_EXIT, TrainError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DESCRIPTION = "preprocessing.json"
BATCH = 32


class PredictError(TrainError):
    """A mistake in what predict was given; the message names the fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise PredictError("%s (see python -m train.predict --help)" % message)


def build_parser():
    p = _Parser(prog="python -m train.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="export dir (<job>/export[/step_N]), SavedModel dir, checkpoint dir "
                                 "(<job>/checkpoints) or the job's output dir")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP) or folders of them")
    p.add_argument("--top-k", dest="top_k", type=int, default=5,
                   help="classes per image, most probable first (default 5, at most the class count)")
    p.add_argument("--labels", default=None,
                   help="class names, one per line (default: the names training stored with the model)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    return p


# -- finding the model (pure, given the file system) -----------------------------------------------

def _newest_export(root):
    steps = []
    for name in os.listdir(root):
        head, _, number = name.partition("_")
        if head == "step" and number.isdigit() and os.path.isfile(os.path.join(root, name, DESCRIPTION)):
            steps.append((int(number), name))
    return os.path.join(root, max(steps)[1]) if steps else None


def locate(path):
    """('saved_model', export dir) or ('checkpoint', checkpoint dir) for what a user points at."""
    if not os.path.isdir(path):
        raise PredictError("model %s not found; pass a job's export/step_N directory, its checkpoints "
                           "directory or its output directory" % path)
    if os.path.isfile(os.path.join(path, DESCRIPTION)) and os.path.isdir(os.path.join(path, "saved_model")):
        return "saved_model", path
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.isfile(os.path.join(parent, DESCRIPTION)):
            return "saved_model", parent
        raise PredictError("%s is a SavedModel without the %s written beside it at export; pass the "
                           "export/step_N directory that holds both" % (path, DESCRIPTION))
    newest = _newest_export(path)
    if newest:
        return "saved_model", newest
    if os.path.isdir(os.path.join(path, "export")):
        newest = _newest_export(os.path.join(path, "export"))
        if newest:
            return "saved_model", newest
    if os.path.isfile(os.path.join(path, "checkpoint")):
        return "checkpoint", path
    if os.path.isfile(os.path.join(path, "checkpoints", "checkpoint")):
        return "checkpoint", os.path.join(path, "checkpoints")
    raise PredictError("no exported model or checkpoint in %s; pass a job's export/step_N directory, its "
                       "checkpoints directory or its output directory" % path)


def image_files(paths):
    """Every image to predict, in the order given (folders: recursively, sorted)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                found += [os.path.join(root, name) for name in sorted(names)
                          if name.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                raise PredictError("folder %s holds no .jpg, .jpeg, .png or .bmp image" % path)
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise PredictError("image %s not found" % path)
    return files


def class_names_for(count, stored, labels_file):
    """The names of the model's `count` outputs: --labels, else what training stored, else class_<i>."""
    from data import labels as data_labels

    if labels_file:
        try:
            names = data_labels.read_labels(labels_file)
        except OSError as exc:
            raise PredictError("cannot read --labels %s (%s)" % (labels_file, exc.strerror or exc)) from None
        origin = "--labels %s" % labels_file
    elif stored:
        names, origin = list(stored), "the class names stored with the model"
    else:
        return ["class_%d" % index for index in range(count)]
    if len(names) != count:
        raise PredictError("%s name %d classes but the model has %d outputs; use the labels.txt of the run "
                           "that trained this model" % (origin, len(names), count))
    return names


def top_k(probabilities, names, k):
    """[(name, probability)] of the k most probable classes, most probable first (pure)."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(names[i], float(probabilities[i])) for i in order]


def text_line(path, ranked):
    return "%s\t%s" % (path, "  ".join("%s %.4f" % (name, p) for name, p in ranked))


# -- the models ------------------------------------------------------------------------------------

class _SavedModel:
    def __init__(self, directory, tf):
        with open(os.path.join(directory, DESCRIPTION)) as handle:
            self.description = json.load(handle)
        self.image_size = int(self.description["input"]["shape"][1])
        self.stored_names = self.description.get("class_names")
        self.graph = tf.Graph()
        self.sess = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.sess, ["serve"],
                                                        os.path.join(directory, "saved_model"))
        signature = meta.signature_def["serving_default"]
        self.input = self.graph.get_tensor_by_name(list(signature.inputs.values())[0].name)
        self.output = self.graph.get_tensor_by_name(signature.outputs["probabilities"].name)
        self.count = int(self.output.shape[-1])

    def probabilities(self, images):
        return self.sess.run(self.output, {self.input: images})


class _Checkpoint:
    def __init__(self, directory, tf):
        from data import labels as data_labels
        from models import registry

        meta_path = os.path.join(directory, "run_meta.json")
        if not os.path.isfile(meta_path):
            raise PredictError("checkpoint directory %s has no run_meta.json (model, classes, image size); "
                               "pass the job's export/step_N directory instead" % directory)
        with open(meta_path) as handle:
            meta = json.load(handle)
        self.image_size = int(meta["image_size"])
        labels = data_labels.labels_path(directory)
        self.stored_names = data_labels.read_labels(labels) if os.path.isfile(labels) else None
        self.count = int(meta["num_classes"])
        prefix = tf.compat.v1.train.latest_checkpoint(directory)
        if not prefix:
            raise PredictError("no complete checkpoint in %s" % directory)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.sess = tf.compat.v1.Session(graph=self.graph)
            tf.compat.v1.keras.backend.set_session(self.sess)
            self.input = tf.compat.v1.placeholder(tf.float32, [None, self.image_size, self.image_size, 3])
            options = registry.parse_options(meta["model"], meta.get("model_options") or [])
            model = registry.build(meta["model"], self.count, self.image_size, **options)
            self.output = tf.nn.softmax(tf.cast(model(self.input, training=False), tf.float32))
            saver = tf.compat.v1.train.Saver(var_list={v.op.name: v for v in model.weights})
            saver.restore(self.sess, prefix)

    def probabilities(self, images):
        return self.sess.run(self.output, {self.input: images})


def load_model(kind, directory):
    from tfcompat import tf

    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
    return _SavedModel(directory, tf) if kind == "saved_model" else _Checkpoint(directory, tf)


def preprocess_images(files, image_size):
    """float32 [N, S, S, 3] with the training's evaluation preprocessing; PredictError names a bad file."""
    from data import preprocess
    from tfcompat import tf

    graph = tf.Graph()
    with graph.as_default():
        data = tf.compat.v1.placeholder(tf.string, [])
        image = preprocess.eval_image(data, image_size)
        with tf.compat.v1.Session(graph=graph) as sess:
            out = []
            for path in files:
                try:
                    with open(path, "rb") as handle:
                        encoded = handle.read()
                except OSError as exc:
                    raise PredictError("cannot read image %s (%s)" % (path, exc.strerror or exc)) from None
                try:
                    out.append(sess.run(image, {data: encoded}))
                except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError):
                    raise PredictError("image %s is unreadable (not a complete JPEG, PNG or BMP file); "
                                       "remove it or convert it" % path) from None
    return np.stack(out).astype(np.float32)


def predict(argv, out):
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise PredictError("--top-k must be at least 1")
    kind, directory = locate(args.model)
    files = image_files(args.images)
    model = load_model(kind, directory)
    names = class_names_for(model.count, model.stored_names, args.labels)
    images = preprocess_images(files, model.image_size)
    k = min(args.top_k, model.count)
    for start in range(0, len(files), BATCH):
        probabilities = model.probabilities(images[start:start + BATCH])
        for path, row in zip(files[start:start + BATCH], probabilities):
            ranked = top_k(row, names, k)
            if args.json:
                out.write(json.dumps({"image": path, "top": [{"class": name, "probability": round(p, 6)}
                                                             for name, p in ranked]}) + "\n")
            else:
                out.write(text_line(path, ranked) + "\n")
    return 0


def main(argv=None, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return predict(sys.argv[1:] if argv is None else list(argv), out)
    except TrainError as exc:
        err.write("error: %s\n" % exc)
        return USER_ERROR_EXIT
    except Exception as exc:  # a user error from data/ or models/ (imported lazily)
        if type(exc).__name__ in ("DataError", "ModelError"):
            err.write("error: %s\n" % exc)
            return USER_ERROR_EXIT
        raise


if __name__ == "__main__":
    sys.exit(main())
