"""Export for inference: a SavedModel, a frozen graph (.pb) and the input preprocessing beside them.

Why: Ascend's ATC converter takes a frozen TensorFlow graph, serving takes a SavedModel, and both
need to know how images were normalised in training; writing that description next to the files
keeps the three in one place. The inference graph is rebuilt in a fresh graph (inference mode: BN
statistics, no dropout) and its weights are read from the final checkpoint, so the export never
depends on the training session or its distributed runtime. Each export goes to its own
`export/step_<N>/` directory (written under a temporary name, then renamed): nothing earlier is
overwritten.
"""
import os
import shutil

from contract import atomic
from tfcompat import tf

INPUT_NAME = "images"
LOGITS_NAME = "output_logits"
PROBS_NAME = "output_probabilities"


def export_plan(export_root, step, image_size, num_classes, preprocessing, class_names=None):
    """Where the files go and what the description says (pure)."""
    directory = os.path.join(export_root, "step_%d" % int(step))
    description = {
        "input": {"name": INPUT_NAME + ":0", "shape": [None, image_size, image_size, 3], "dtype": "float32",
                  "layout": "NHWC"},
        "outputs": {"logits": LOGITS_NAME + ":0", "probabilities": PROBS_NAME + ":0"},
        "num_classes": int(num_classes),
        "preprocessing": preprocessing,
        "frozen_graph": "frozen_graph.pb",
        "saved_model": "saved_model",
        "atc_example": "atc --model=frozen_graph.pb --framework=3 --output=model --soc_version=Ascend910 "
                       "--input_shape=\"%s:1,%d,%d,3\"" % (INPUT_NAME, image_size, image_size),
    }
    if class_names:
        description["class_names"] = list(class_names)
    return directory, description


def export_model(build_model, checkpoint_prefix, directory, description, image_size):
    """Rebuild the model for inference, load the checkpoint, write SavedModel + frozen .pb + JSON."""
    if os.path.exists(directory):
        return directory
    tmp = directory + ".tmp.%d" % os.getpid()
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    graph = tf.Graph()
    with graph.as_default():
        sess = tf.compat.v1.Session(graph=graph)
        tf.compat.v1.keras.backend.set_session(sess)
        try:
            images = tf.compat.v1.placeholder(tf.float32, [None, image_size, image_size, 3], name=INPUT_NAME)
            model = build_model()
            logits = tf.identity(tf.cast(model(images, training=False), tf.float32), name=LOGITS_NAME)
            probs = tf.nn.softmax(logits, name=PROBS_NAME)
            saver = tf.compat.v1.train.Saver(var_list={v.op.name: v for v in model.weights})
            saver.restore(sess, checkpoint_prefix)
            tf.compat.v1.saved_model.simple_save(sess, os.path.join(tmp, "saved_model"),
                                                 inputs={INPUT_NAME: images},
                                                 outputs={"logits": logits, "probabilities": probs})
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), [LOGITS_NAME, PROBS_NAME])
            tf.io.write_graph(frozen, tmp, "frozen_graph.pb", as_text=False)
        finally:
            sess.close()
    atomic.write_json(os.path.join(tmp, "preprocessing.json"), description, indent=1)
    os.rename(tmp, directory)
    return directory
