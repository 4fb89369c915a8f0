"""Cost of one allreduce between worker processes, by size, through each transport of the collective
backend: TF's CollectiveReduce over gRPC (``ring``) and the shared-memory allreduce of ranks on one host
(``shm``, train/shm_allreduce.py).

Why: the cost model in docs/performance.md needs the two numbers of the usual latency-bandwidth model,
a fixed cost per collective (alpha) and a cost per byte (1 / beta), for this machine's transport (gRPC on
loopback between two processes, each pinned to its own core, 1 intra/inter-op thread, as the launcher
binds them). Each worker times ``--repeats`` allreduces of one tensor per size and dtype; the least-squares
line through (bytes, seconds) gives alpha and beta. Wall time and the process's CPU time are both printed:
on a core that also computes, the CPU time is what the allreduce takes away from the model.

    .venv/bin/python bench/bench_allreduce.py --sizes-mb 0.25 1 3 6 12 --repeats 20 --transports ring shm
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.ports import free_ports  # noqa: E402


def worker(args):
    rank = int(os.environ["RANK_ID"])
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[rank % len(cpus)]})
    from tfcompat import tf
    from train.backends import backend_from_env

    backend = backend_from_env()
    results = []
    with tf.Graph().as_default() as graph:
        sess = tf.compat.v1.Session(backend.session_target(), graph=graph, config=backend.session_config())
        cases = []
        for size_mb in args.sizes_mb:
            for dtype in args.dtypes:
                count = int(size_mb * 1024 * 1024 / tf.as_dtype(dtype).size)
                var = tf.Variable(tf.random.uniform([count], seed=rank), dtype=tf.float32)
                value = tf.cast(var.read_value(), dtype)
                # one tensor is one bucket: what a gradient bucket does, through shared memory on one host
                # (LAUNCH_SHM_DIR set) or the collective ops across hosts, in the value's own dtype
                op = backend.allreduce_mean([value])[0]
                cases.append((args.transport, size_mb, dtype, count * tf.as_dtype(dtype).size, tf.group(op)))
        sess.run(tf.compat.v1.global_variables_initializer())
        for transport, size_mb, dtype, nbytes, op in cases:
            for _ in range(3):
                sess.run(op)
            walls, cpus_used = [], []
            for _ in range(args.repeats):
                start, cpu = time.time(), time.process_time()
                sess.run(op)
                walls.append(time.time() - start)
                cpus_used.append(time.process_time() - cpu)
            results.append({"transport": transport, "size_mb": size_mb, "dtype": dtype, "bytes": nbytes,
                            "wall": statistics.median(walls), "cpu": statistics.median(cpus_used)})
        sess.close()
    with open(os.path.join(args.out, "allreduce_%d.json" % rank), "w") as handle:
        json.dump(results, handle)
    return 0


def run_pair(args, transport):
    """Two pinned workers timing one transport; their results (rank 0's, rank 1's)."""
    out = tempfile.mkdtemp(prefix="bench_allreduce_")
    peers = ",".join("127.0.0.1:%d" % port for port in free_ports(2))
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK_ID=str(rank), RANK_SIZE="2", LAUNCH_BACKEND="cpu", LAUNCH_PEERS=peers,
                   LAUNCH_INTRA_OP_THREADS="1", LAUNCH_INTER_OP_THREADS="1", PYTHONPATH=ROOT)
        env.pop("LAUNCH_SHM_DIR", None)
        if transport == "shm":
            env["LAUNCH_SHM_DIR"] = os.path.join(out, "shm")
        argv_worker = [sys.executable, os.path.abspath(__file__), "--worker", "--out", out,
                       "--repeats", str(args.repeats), "--sizes-mb"] + [str(s) for s in args.sizes_mb] + \
                      ["--dtypes"] + list(args.dtypes) + ["--transport", transport]
        procs.append(subprocess.Popen(argv_worker, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate(timeout=1800)
        if proc.returncode:
            raise SystemExit("worker failed:\n%s" % err.decode()[-3000:])
    results = []
    for rank in range(2):
        with open(os.path.join(out, "allreduce_%d.json" % rank)) as handle:
            results.append(json.load(handle))
    return results


def fit_line(points):
    """Least squares y = a + b x over (x, y) points -> (a, b)."""
    n = float(len(points))
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    return mean_y - slope * mean_x, slope


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[0.25, 1, 3, 6, 12])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--transports", nargs="+", choices=("ring", "shm"), default=["ring", "shm"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transport", help=argparse.SUPPRESS)  # a worker pair's one transport
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    print("machine: %d CPUs, load average %.1f %.1f %.1f at the start"
          % ((os.cpu_count(),) + os.getloadavg()))
    rank0, rank1 = [], []
    for transport in args.transports:
        first, second = run_pair(args, transport)
        rank0 += first
        rank1 += second
    print("2 workers, 1 core each, medians of %d allreduces (mean over ranks):" % args.repeats)
    print("  %9s %8s %8s %10s %10s %10s" % ("transport", "MiB", "dtype", "bytes", "wall ms", "CPU ms"))
    points = {}
    for first, second in zip(rank0, rank1):
        wall = (first["wall"] + second["wall"]) / 2
        cpu = (first["cpu"] + second["cpu"]) / 2
        print("  %9s %8.2f %8s %10d %10.2f %10.2f"
              % (first["transport"], first["size_mb"], first["dtype"], first["bytes"], wall * 1e3, cpu * 1e3))
        points.setdefault((first["transport"], "wall"), []).append((first["bytes"], wall))
        points.setdefault((first["transport"], "CPU"), []).append((first["bytes"], cpu))
    for (transport, name), line in points.items():
        alpha, per_byte = fit_line(line)
        print("fit (%s, %s): alpha %.2f ms per allreduce, %.3f ms per MB (beta %.0f MB/s)"
              % (transport, name, alpha * 1e3, per_byte * 1e9,
                 1e-6 / per_byte if per_byte > 0 else float("inf")))
    print("load average at the end: %.1f %.1f %.1f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
