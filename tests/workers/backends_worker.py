"""A tiny real worker for the backend tests and the scaling benchmark (not a test module itself).

It reads the launcher's variables (RANK_ID, RANK_SIZE, LAUNCH_PEERS, LAUNCH_COLLECTIVE_TIMEOUT, ...)
through ``train.backends.backend_from_env``, builds a small two-layer classifier whose initial values
differ per rank (so the broadcast matters), trains on rank-dependent data and writes its final
trainable weights to ``<out>/weights_<rank>.npz``. ``--allreduce-dtype float32,float16`` trains once per
wire dtype, each in a new graph and session on the same collective server (one process start for all),
into ``<out>/weights_<rank>_<dtype>.npz``; with ``--shm-dir DIR`` each dtype trains once more with a second
backend as the launcher makes it on one host (LAUNCH_SHM_DIR=DIR: shared memory, no server) into
``weights_<rank>_<dtype>_shm.npz``. ``<out>/progress_<rank>`` holds the last finished
step, so a test can wait for training to be under way before it kills or freezes a peer.
Exit codes: 0 ok, 3 a collective failed (the message is on stderr).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository

from tfcompat import tf  # noqa: E402
from train.backends import BackendError, backend_from_env  # noqa: E402
from train.collective_backend import parse_wire_dtype  # noqa: E402


def build(rank, features, hidden, classes, batch):
    """Variables initialised differently on every rank; data differs per rank too."""
    init = tf.compat.v1.random_normal_initializer(stddev=0.1, seed=100 + rank)
    w1 = tf.compat.v1.get_variable("w1", [features, hidden], initializer=init)
    b1 = tf.compat.v1.get_variable("b1", [hidden], initializer=tf.compat.v1.zeros_initializer())
    w2 = tf.compat.v1.get_variable("w2", [hidden, classes], initializer=init)
    b2 = tf.compat.v1.get_variable("b2", [classes], initializer=tf.compat.v1.zeros_initializer())
    x = tf.random.normal([batch, features], seed=7 + rank)
    y = tf.random.uniform([batch], maxval=classes, dtype=tf.int32, seed=11 + rank)
    logits = tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return loss


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--bucket-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--allreduce-dtype", default=None,
                        help="gradients on the wire: float16, bfloat16; a comma list trains once per dtype")
    parser.add_argument("--shm-dir", default=None,
                        help="also train every dtype with the shared-memory allreduce in this directory")
    parser.add_argument("--session-timeout", action="store_true",
                        help="bound collectives with the session's operation timeout (the TF 1.15 way)")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK_ID", "0"))
    dtypes = args.allreduce_dtype.split(",") if args.allreduce_dtype else [None]
    try:
        wires = [parse_wire_dtype(dtype) for dtype in dtypes]
        extra = {"op_timeouts": False} if args.session_timeout else {}
        backend = backend_from_env(bucket_bytes=args.bucket_bytes, allreduce_dtype=dtypes[0], **extra)
    except BackendError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    backends = [("", backend)]
    if args.shm_dir:
        backends.append(("_shm", backend_from_env(bucket_bytes=args.bucket_bytes, allreduce_dtype=dtypes[0],
                                                  shm_dir=args.shm_dir, **extra)))
    for suffix, each in backends:
        for dtype, wire in zip(dtypes, wires):
            each.wire_dtype = wire
            name = "weights_%d%s.npz" if len(dtypes) == 1 else "weights_%d_%s%s.npz"
            name = name % ((rank, suffix) if len(dtypes) == 1 else (rank, dtype, suffix))
            train(args, each, rank, os.path.join(args.out, name))
        each.close()
    return 0


def train(args, backend, rank, weights_file):
    """Train args.steps steps in a new graph and session, then save the weights (exit 3 if a collective
    fails)."""
    progress = os.path.join(args.out, "progress_%d" % rank)
    try:
        with tf.Graph().as_default():
            loss = build(rank, args.features, args.hidden, args.classes, args.batch)
            optimizer = backend.wrap_optimizer(tf.compat.v1.train.MomentumOptimizer(0.1, 0.9))
            train_op = optimizer.minimize(loss)
            variables = tf.compat.v1.trainable_variables()
            broadcast = backend.broadcast_variables_op(tf.compat.v1.global_variables())
            count = backend.allreduce_sum([tf.constant(float(rank + 1))])[0]
            init = tf.compat.v1.global_variables_initializer()
            with tf.compat.v1.Session(backend.session_target(), config=backend.session_config()) as sess:
                sess.run(init)
                sess.run(broadcast)
                start = time.time()
                for step in range(1, args.steps + 1):
                    sess.run(train_op)
                    with open(progress + ".tmp", "w") as handle:
                        handle.write("%d %.6f\n" % (step, time.time() - start))
                    os.replace(progress + ".tmp", progress)
                total, values = sess.run([count, variables])
        import numpy as np
        np.savez(weights_file, total=total, **{v.op.name: value for v, value in zip(variables, values)})
    except tf.errors.OpError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        why = [line for line in lines if "shared-memory allreduce" in line][:1]  # the transport says why
        sys.stderr.write("rank %d: collective failed: %s: %s\n"
                         % (rank, type(exc).__name__, " ".join(lines[:1] + why)))
        sys.stderr.flush()
        os._exit(3)


if __name__ == "__main__":
    sys.exit(main())
