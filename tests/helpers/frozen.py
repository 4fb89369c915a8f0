"""Run an exported frozen graph the way a deployment would: import the GraphDef, feed the described input."""
import numpy as np


def run_frozen(path, described, batch=2):
    """Probabilities for `batch` zero images of the exported size, from frozen_graph.pb and the
    preprocessing.json description beside it."""
    from tfcompat import tf
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as handle:
        graph_def.ParseFromString(handle.read())
    _, height, width, channels = described["input"]["shape"]
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        images = np.zeros([batch, height, width, channels], np.float32)
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run(described["outputs"]["probabilities"], {described["input"]["name"]: images})
