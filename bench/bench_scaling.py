"""Data-parallel scaling of the collective backend, measured side by side in one run (real processes).

1. scaling efficiency: 2 workers with 1 intra/inter-op thread each (one core each, as the launcher binds
   them) against 1 worker with 1 thread; efficiency = images/s of the pair / (2 x images/s of one worker);
   target >= 0.9.
2. fused buckets against one collective per tensor: the same 2-worker job with ``bucket_bytes`` 4 MiB
   (the default) and 0 (per tensor).
3. ``--steps-per-run K``: also the 2-worker job with K training steps chained in one graph and one
   sess.run (fewer host round trips per step), against one step per sess.run.

Every configuration runs ``--repeats`` times, interleaved (A B C A B C ...), so that a busy machine hurts
all of them alike; the median per configuration is reported. Workers train MobileNetV3-Small (models/)
on in-graph random images: the data pipeline is not what is measured.

Usage: python bench/bench_scaling.py [--repeats 3] [--steps 30] [--batch-size 16] [--image-size 64]
                                    [--steps-per-run 4]
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
    """One rank: build, broadcast, warm up, time ``steps`` training steps, write a JSON result."""
    rank = int(os.environ.get("RANK_ID", "0"))
    core = int(os.environ.get("BENCH_CORE", rank))
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[core % len(cpus)]})
    from models import registry
    from tfcompat import tf
    from train.backends import make_backend, plan_from_env

    plan = plan_from_env(bucket_bytes=args.bucket_bytes)
    if getattr(args, "mode", "normal") == "server1":  # one rank, but through a server and collectives
        plan.update(kind="collective", peers=os.environ["LAUNCH_PEERS"], timeout=300)
    backend = make_backend(**plan)
    graph = tf.Graph()
    with graph.as_default():
        sess = tf.compat.v1.Session(backend.session_target(), graph=graph, config=backend.session_config())
        tf.compat.v1.keras.backend.set_session(sess)
        model = registry.build(args.model, num_classes=10, image_size=args.image_size)
        optimizer = backend.wrap_optimizer(tf.compat.v1.train.MomentumOptimizer(0.01, 0.9))
        train_op = tf.no_op()
        per_run = max(1, getattr(args, "per_run", 1))
        for _ in range(per_run):  # K steps chained in one graph: one sess.run runs them all
            with tf.control_dependencies([train_op]):
                images = tf.random.uniform([args.batch_size, args.image_size, args.image_size, 3], seed=rank)
                labels = tf.random.uniform([args.batch_size], maxval=10, dtype=tf.int32, seed=rank + 1)
                logits = model(images, training=True)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                                     logits=logits))
                train_op = optimizer.minimize(loss, var_list=model.trainable_weights)
        broadcast = backend.broadcast_variables_op(tf.compat.v1.global_variables())
        tensors = len(model.trainable_weights)
        sess.run(tf.compat.v1.global_variables_initializer())
        sess.run(broadcast)
        runs = max(1, args.steps // per_run)
        for _ in range(max(1, args.warmup // per_run)):
            sess.run(train_op)
        start, cpu_start = time.time(), time.process_time()
        for _ in range(runs):
            sess.run(train_op)
        seconds, cpu_seconds = time.time() - start, time.process_time() - cpu_start
        sess.close()
    steps = runs * per_run
    result = {"rank": rank, "seconds": seconds, "cpu_seconds": cpu_seconds, "steps": steps,
              "tensors": tensors, "images": steps * args.batch_size,
              "images_per_sec": steps * args.batch_size / seconds}
    name = getattr(args, "result", None) or "result_%d.json" % rank
    with open(os.path.join(args.out, name), "w") as handle:
        json.dump(result, handle)
    return 0


def run_job(size, bucket_bytes, args, mode="normal", per_run=1):
    """Start ``size`` workers, wait for them, return the job's images/s and images per CPU-second.

    mode "independent": the processes do not form a job (each is a one-rank job on its own core);
    mode "server1": one rank through a tf.distribute.Server and collective ops of group size 1.
    """
    out = tempfile.mkdtemp(prefix="bench_scaling_")
    peers = ",".join("127.0.0.1:%d" % port for port in free_ports(size))
    procs = []
    for rank in range(size):
        env = dict(os.environ, RANK_ID=str(rank), RANK_SIZE=str(size), LAUNCH_BACKEND="cpu",
                   LAUNCH_PEERS=peers, LAUNCH_COLLECTIVE_TIMEOUT="300", LAUNCH_INTRA_OP_THREADS="1",
                   LAUNCH_INTER_OP_THREADS="1", PYTHONPATH=ROOT, BENCH_CORE=str(rank))
        if mode == "independent":
            env.update(RANK_ID="0", RANK_SIZE="1")
        argv = [sys.executable, os.path.abspath(__file__), "--worker", "--out", out,
                "--bucket-bytes", str(bucket_bytes), "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
                "--model", args.model, "--mode", mode, "--result", "result_%d.json" % rank,
                "--per-run", str(per_run)]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=1800)
            if proc.returncode != 0:
                raise SystemExit("worker failed (%d):\n%s" % (proc.returncode, err.decode()[-2000:]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for rank in range(size):
        with open(os.path.join(out, "result_%d.json" % rank)) as handle:
            results.append(json.load(handle))
    rate = sum(item["images_per_sec"] for item in results)
    per_cpu = sum(item["images"] for item in results) / sum(item["cpu_seconds"] for item in results)
    return rate, per_cpu, results[0]["tensors"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--bucket-bytes", type=int, default=4 * 1024 * 1024, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--model", default="mobilenetv3_small")
    parser.add_argument("--mode", default="normal", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--per-run", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--steps-per-run", type=int, default=0,
                        help="also run the 2-worker job with this many steps chained in one sess.run")
    parser.add_argument("--diagnose", action="store_true",
                        help="also run 2 independent workers (no allreduce) and 1 worker through a server")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    configs = [("1 worker, 1 thread", 1, 0, "normal", 1),
               ("2 workers fused 4 MiB", 2, 4 * 1024 * 1024, "normal", 1),
               ("2 workers per tensor", 2, 0, "normal", 1)]
    if args.diagnose:
        configs += [("2 independent workers", 2, 0, "independent", 1),
                    ("1 worker via server", 1, 4 * 1024 * 1024, "server1", 1)]
    if args.steps_per_run > 1:
        configs += [("2 workers, %d steps/run" % args.steps_per_run, 2, 4 * 1024 * 1024, "normal",
                     args.steps_per_run)]
    runs = {config[0]: [] for config in configs}
    per_cpu = {config[0]: [] for config in configs}
    tensors = None
    print("machine: %d CPUs, load average %.1f %.1f %.1f" % ((os.cpu_count(),) + os.getloadavg()))
    for repeat in range(args.repeats):
        for name, size, bucket, mode, per_run in configs:
            rate, cpu_rate, tensors = run_job(size, bucket, args, mode, per_run)
            runs[name].append(rate)
            per_cpu[name].append(cpu_rate)
            print("  run %d %-22s %8.1f images/s  %6.1f images/CPU-s" % (repeat + 1, name, rate, cpu_rate),
                  flush=True)
    median = {name: statistics.median(values) for name, values in runs.items()}
    print("model %s, %d gradient tensors, batch %d per worker, %dx%d images, %d timed steps (median of %d):"
          % (args.model, tensors, args.batch_size, args.image_size, args.image_size, args.steps,
             args.repeats))
    for name, _, _, _, _ in configs:
        print("  %-22s: %8.1f images/s  (runs %s)" % (name, median[name],
                                                      " ".join("%.1f" % v for v in runs[name])))
    cpu_median = {name: statistics.median(values) for name, values in per_cpu.items()}
    for name, _, _, _, _ in configs:
        print("  %-22s: %8.1f images per CPU-second" % (name, cpu_median[name]))
    single = median["1 worker, 1 thread"]
    efficiency = median["2 workers fused 4 MiB"] / (2 * single)
    print("  scaling efficiency    : %.2f  (2 workers fused / (2 x 1 worker); target >= 0.90)" % efficiency)
    print("  CPU-normalised eff.   : %.2f  (images per CPU-second, pair / single: the cost of communication "
          "in CPU work, insensitive to other jobs taking cores)"
          % (cpu_median["2 workers fused 4 MiB"] / cpu_median["1 worker, 1 thread"]))
    fused_ratio = median["2 workers fused 4 MiB"] / median["2 workers per tensor"]
    print("  fused / per tensor    : %.2fx" % fused_ratio)
    if args.steps_per_run > 1:
        name = "2 workers, %d steps/run" % args.steps_per_run
        print("  %d steps/run / 1      : %.2fx"
              % (args.steps_per_run, median[name] / median["2 workers fused 4 MiB"]))
    print("  load average at end   : %.1f %.1f %.1f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
