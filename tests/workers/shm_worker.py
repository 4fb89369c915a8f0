"""One rank of the shared-memory allreduce (train/shm_allreduce.py) as a plain process, for
tests/test_shm_allreduce.py (not a test module itself; no TensorFlow).

    python shm_worker.py RANK SIZE DIR TIMEOUT MODE OUT

MODE ``sums``: allreduce arrays of several sizes and dtypes (sum and mean), save them to OUT/rank_<RANK>.npz.
MODE ``die``/``hang``: one allreduce, then end at once (os._exit) or sleep; a rank of MODE ``survive``
goes on to a second allreduce and writes what happened to OUT/survivor.txt (the error and the seconds it
took after the first allreduce). MODE ``diverge``: every rank sums an array of its own size and writes the
error to OUT/diverged_<RANK>.txt. Exit 0, or 3 when the allreduce failed.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from train.shm_allreduce import SharedMemoryAllreduce, TransportError

CASES = [(7, "float32"), (300000, "float32"), (1000, "float16"), (50, "float64")]


def inputs(rank, count, dtype):
    """Rank-dependent values that are not exact in float16/float32 sums (so the order would show)."""
    return (np.sin(np.arange(count) * 0.37 + rank) * (rank + 1.3)).astype(dtype)


def main():
    rank, size, directory, timeout, mode, out = sys.argv[1:7]
    rank, size = int(rank), int(size)
    ends = SharedMemoryAllreduce(rank, size, directory, float(timeout))
    if mode == "sums":
        ends.reserve(4 * 1000)                    # smaller than the largest case: the region grows
        results = {}
        for count, dtype in CASES:
            results["sum_%s_%d" % (dtype, count)] = ends.allreduce(inputs(rank, count, dtype))
            results["mean_%s_%d" % (dtype, count)] = ends.allreduce(inputs(rank, count, dtype), divide=True)
        results["shape"] = ends.allreduce(np.ones((3, 4), np.float32) * rank)
        np.savez(os.path.join(out, "rank_%d.npz" % rank), **results)
        ends.close()
        return 0
    if mode == "diverge":                         # every rank sums an array of another size
        try:
            ends.allreduce(np.ones(1000 + rank, np.float32))
        except TransportError as error:
            with open(os.path.join(out, "diverged_%d.txt" % rank), "w") as handle:
                handle.write(str(error))
            return 3
        return 0
    ends.allreduce(np.ones(1000, np.float32))
    if mode == "die":
        os._exit(1)
    if mode == "hang":
        time.sleep(120)
        return 0
    started = time.time()
    try:
        ends.allreduce(np.ones(1000, np.float32))
    except TransportError as error:
        with open(os.path.join(out, "survivor.txt"), "w") as handle:
            handle.write("%.3f\n%s\n" % (time.time() - started, error))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
