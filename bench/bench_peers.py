"""Data-parallel training throughput against the peers a user would pick, side by side in one run.

Candidates, each with 1 worker and with N workers, the same model (MobileNetV3-Small, 10 classes), image
size, batch per worker and core binding (worker i pinned to core i, 1 intra-op / 1 inter-op thread):

- ours:  `python -m train` (this project's trainer and collective backend), started with the variables the
         launcher sets (RANK_ID, RANK_SIZE, LAUNCH_PEERS, LAUNCH_*_THREADS, and on one host LAUNCH_SHM_DIR:
         the gradients through shared memory, the launcher's default; ``@shm=off`` runs them through
         TF's collective ops instead); synthetic data from the project's pipeline (generated every step,
         so it is not the cheaper side of the comparison);
- mwms:  tf.distribute.MultiWorkerMirroredStrategy with tf_keras `fit` (TF 2, eager + tf.function), N
         processes with TF_CONFIG on localhost ports, the same model code (models.registry), one fixed
         random batch repeated; 1 worker = plain `fit` without a strategy;
- torch: PyTorch DistributedDataParallel (gloo) with torchvision's mobilenet_v3_small, one fixed random
         batch; 1 worker = plain training without DDP. Skipped, with a line saying so, when the interpreter
         (--torch-python, default this one) cannot import torch and torchvision (requirements-bench.txt).

Every configuration runs once per round, rounds interleaved (the order rotates each round) so that a
busy machine hurts all alike; the medians are reported with scaling efficiency (N workers / (N x 1
worker)) and the ratios ours / peer. ``--variant NAME=FLAGS`` adds more N-worker runs of ours with other
trainer flags (e.g. ``fp16=--allreduce-dtype float16``) or other placement (``@shm=off``: collective ops
instead of shared memory; ``@bind=off``: workers not
pinned; ``@inter=2``: 2 inter-op threads), to measure one lever at a time against the default.

``ours xN alone`` (with --ceiling) runs N one-worker jobs of ours at the same time, each pinned to its core
and talking to nobody: what N workers can compute on this machine when nothing is communicated (shared
caches, memory bandwidth, a hypervisor's vCPUs). ``xN / alone`` then isolates what the communication costs
from what the machine costs. Those jobs log every step, and ``ours xN lockstep`` is what N workers that wait
for each other at every step but communicate for free would get on the same cores: N x batch x steps / the
sum over steps of the slowest job's step time (step i of each job, timed on its own core). A synchronous
trainer cannot beat it; where cores run at different speeds (a hypervisor's vCPUs), it is below ``alone``.

    .venv/bin/python bench/bench_peers.py --image-size 128 --batch-size 32 --workers 2 --rounds 3
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.ports import free_ports  # noqa: E402
from contract.worker_env import WorkerEnv  # noqa: E402
from launcher.metrics import read_records  # noqa: E402

CLASSES = 10
LOCKSTEP = "ours x%d lockstep"


# --- workers (each runs in its own process) ------------------------------------------------------------
def _write_result(path, steps, batch, seconds):
    with open(path, "w") as handle:
        json.dump({"images_per_sec": steps * batch / seconds, "seconds": seconds, "steps": steps}, handle)


def mwms_worker(args):
    """One MWMS worker (or plain fit when --workers 1): time the second of two `fit` epochs."""
    from models import registry
    from tfcompat import tf  # tf_keras (Keras 2), as the model code needs; it switches eager off, so:

    tf.compat.v1.enable_eager_execution()  # the peer runs the way TF 2 users run fit: eagerly
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    strategy = None
    if args.workers > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    global_batch = args.batch_size * args.workers
    images = tf.random.uniform([global_batch, args.image_size, args.image_size, 3], seed=1)
    labels = tf.random.uniform([global_batch], maxval=CLASSES, dtype=tf.int32, seed=2)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = dataset.with_options(options)

    def build():
        model = registry.build("mobilenetv3_small", CLASSES, args.image_size)
        model.compile(optimizer=tf.keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    if strategy is None:
        model = build()
    else:
        with strategy.scope():
            model = build()

    class Timer(tf.keras.callbacks.Callback):
        times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.time()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.time() - self.start)

    timer = Timer()
    model.fit(dataset, steps_per_epoch=args.steps, epochs=2, verbose=0, callbacks=[timer])
    _write_result(args.result, args.steps, args.batch_size, timer.times[-1])


def torch_worker(args):
    """One DDP (gloo) worker (or plain training when --workers 1) with torchvision's MobileNetV3-Small."""
    import torch
    import torch.distributed as dist
    import torchvision

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    torch.manual_seed(1)
    model = torchvision.models.mobilenet_v3_small(num_classes=CLASSES)
    if args.workers > 1:
        dist.init_process_group("gloo", rank=args.rank, world_size=args.workers)
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.rand(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, CLASSES, (args.batch_size,))
    model.train()

    def step():
        optimizer.zero_grad()
        loss_fn(model(images), labels).backward()
        optimizer.step()

    for _ in range(args.steps):
        step()
    start = time.time()
    for _ in range(args.steps):
        step()
    seconds = time.time() - start
    if args.workers > 1:
        dist.barrier()
        dist.destroy_process_group()
    _write_result(args.result, args.steps, args.batch_size, seconds)


# --- the driver --------------------------------------------------------------------------------------------
def parse_variant(text):
    """'NAME=FLAGS' -> (name, trainer flags, placement dict); '@bind=off', '@inter=N', '@intra=N' and
    '@shm=off' are placement."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip():
        raise SystemExit("--variant wants NAME=FLAGS, e.g. fp16=--allreduce-dtype float16, not %r" % text)
    flags, placement = [], {}
    for item in shlex.split(rest):
        if item.startswith("@"):
            key, _, value = item[1:].partition("=")
            if key not in ("bind", "inter", "intra", "shm") or not value:
                raise SystemExit("placement %r: use @bind=on|off, @inter=N, @intra=N or @shm=on|off" % item)
            placement[key] = value
        else:
            flags.append(item)
    return name.strip(), flags, placement


def ours_argv(args, out, steps_flags, log_every=None):
    # The trainer times windows of --log-every steps and reports the rate without the first one (warm-up).
    return [sys.executable, "-m", "train", "--model", "mobilenetv3_small",
            "--data-path", "synthetic:%d" % CLASSES, "--batch-size", str(args.batch_size),
            "--image-size", str(args.image_size), "--max-steps", str(2 * args.steps),
            "--log-every", str(log_every or args.steps), "--no-eval", "--no-export",
            "--save-every-epochs", "0", "--output-dir", out] + steps_flags


def run_job(kind, size, args, flags=(), placement=None):
    """Start ``size`` workers of ``kind`` (ours, mwms, torch; alone: ``size`` one-worker jobs of ours at
    once), wait, return (the images/s of all workers together, the lockstep bound for `alone` or None)."""
    placement = placement or {}
    out = tempfile.mkdtemp(prefix="bench_peers_")
    ports = free_ports(size + 1)
    peers = ["127.0.0.1:%d" % port for port in ports[:size]]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    bind = placement.get("bind", "on") == "on"
    threads = int(placement.get("intra", args.threads))
    inter = int(placement.get("inter", args.threads))
    procs = []
    for rank in range(size):
        result = os.path.join(out, "result_%d.json" % rank)
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        if kind in ("ours", "alone"):
            # "alone": a job of its own per worker (rank 0 of 1, no peers), its job files under out/job_<i>
            alone = kind == "alone"
            job_out = os.path.join(out, "job_%d" % rank) if alone else out
            env.update(WorkerEnv(rank=0 if alone else rank, size=1 if alone else size, backend="cpu",
                                 job_id="bench_%d" % rank if alone else "bench",
                                 peers=None if alone else peers, collective_timeout=600.0,
                                 shm_dir=None if alone or placement.get("shm", "on") != "on"
                                 else os.path.join(out, "shm"),
                                 intra_threads=threads, inter_threads=inter,
                                 output_dir=job_out, rank_dir=os.path.join(out, str(rank))).to_env())
            argv = ours_argv(args, job_out, list(flags), log_every=1 if alone else None)
        else:
            python = args.torch_python if kind == "torch" else sys.executable
            argv = [python, os.path.abspath(__file__), "--side", kind, "--rank", str(rank),
                    "--workers", str(size), "--result", result, "--steps", str(args.steps),
                    "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
                    "--threads", str(threads)]
            if kind == "mwms" and size > 1:
                env["TF_CONFIG"] = json.dumps({"cluster": {"worker": peers},
                                               "task": {"type": "worker", "index": rank}})
            if kind == "torch":
                env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[-1]))
        core = {cpus[rank % len(cpus)]} if (cpus and bind) else None
        procs.append(subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=(lambda c=core: os.sched_setaffinity(0, c)) if core else None))
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=args.job_timeout)
            if proc.returncode != 0:
                raise SystemExit("%s worker failed (%d):\n%s" % (kind, proc.returncode, err.decode()[-3000:]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if kind == "alone":
        return alone_rates(out, size, args)
    rates = []
    for rank in range(size):
        if kind == "ours":
            records = read_records(os.path.join(out, str(rank), "metrics.jsonl"))
            ends = [record for record in records if record["event"] == "end"]
            rates.append(float(ends[-1]["images_per_sec"]))
        else:
            with open(os.path.join(out, "result_%d.json" % rank)) as handle:
                rates.append(json.load(handle)["images_per_sec"])
    return sum(rates), None


def alone_rates(out, size, args):
    """(the jobs' images/s together, the lockstep bound) from the per-step times of the timed steps."""
    times = []
    for rank in range(size):
        rows = read_records(os.path.join(out, str(rank), "metrics.jsonl"))
        times.append([row["step_time"] for row in rows
                      if row["event"] == "train" and row["step"] > args.steps])
    steps = min(len(each) for each in times)
    if steps < args.steps:
        raise SystemExit("alone: %d timed steps logged, expected %d" % (steps, args.steps))
    together = sum(args.batch_size * steps / sum(each[:steps]) for each in times)
    lockstep = size * args.batch_size * steps / sum(max(each[i] for each in times) for i in range(steps))
    return together, lockstep


def torch_available(python):
    try:
        subprocess.run([python, "-c", "import torch, torchvision"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def configurations(args):
    """(label, kind, size, trainer flags, placement) for every run of a round."""
    n = args.workers
    configs = []
    for kind in args.peers:
        configs.append(("%s x1" % kind, kind, 1, [], {}))
        configs.append(("%s x%d" % (kind, n), kind, n, [], {}))
    if args.ceiling:
        configs.append(("ours x%d alone" % n, "alone", n, [], {}))
    for text in args.variant:
        name, flags, placement = parse_variant(text)
        configs.append(("ours x%d %s" % (n, name), "ours", n, flags, placement))
    return configs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after as many warm-up steps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra/inter-op threads per worker")
    parser.add_argument("--peers", default="ours,mwms,torch", help="comma-separated: ours, mwms, torch")
    parser.add_argument("--ceiling", action="store_true",
                        help="also run N one-worker jobs at once (no communication): the machine's ceiling")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                        help="another N-worker run of ours: trainer flags, @bind=off, @inter=N, @shm=off")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="interpreter with torch + torchvision (default: this one)")
    parser.add_argument("--job-timeout", type=float, default=1800)
    parser.add_argument("--side", choices=("mwms", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side == "mwms":
        return mwms_worker(args)
    if args.side == "torch":
        return torch_worker(args)
    args.peers = [item.strip() for item in args.peers.split(",") if item.strip()]
    unknown = set(args.peers) - {"ours", "mwms", "torch"}
    if unknown or "ours" not in args.peers:
        raise SystemExit("--peers lists ours and any of mwms, torch; not %s" % ", ".join(sorted(unknown)))
    if "torch" in args.peers and not torch_available(args.torch_python):
        print("torch: skipped: %s cannot import torch and torchvision (pip install -r "
              "requirements-bench.txt, or --torch-python PATH)" % args.torch_python)
        args.peers.remove("torch")
    configs = configurations(args)
    print("machine: %d CPUs, load average %.1f %.1f %.1f at the start"
          % ((os.cpu_count(),) + os.getloadavg()))
    print("model mobilenetv3_small, %d classes, %dx%d images, batch %d per worker, %d workers, "
          "%d timed steps after %d warm-up steps, %d thread(s) per worker, worker i pinned to core i"
          % (CLASSES, args.image_size, args.image_size, args.batch_size, args.workers, args.steps, args.steps,
             args.threads), flush=True)
    runs = {config[0]: [] for config in configs}
    for round_index in range(args.rounds):
        shift = round_index % len(configs)
        for label, kind, size, flags, placement in configs[shift:] + configs[:shift]:
            rate, lockstep = run_job(kind, size, args, flags, placement)
            runs[label].append(rate)
            print("  round %d %-24s %8.1f images/s" % (round_index + 1, label, rate), flush=True)
            if lockstep is not None:
                runs.setdefault(LOCKSTEP % size, []).append(lockstep)
                print("  round %d %-24s %8.1f images/s" % (round_index + 1, LOCKSTEP % size, lockstep),
                      flush=True)
    report(args, configs, runs)
    return 0


def report(args, configs, runs):
    median = {label: statistics.median(values) for label, values in runs.items()}
    n = args.workers
    print("medians of %d rounds (images/s, all workers together):" % args.rounds)
    for label in runs:
        rounds = " ".join("%.1f" % v for v in runs[label])
        print("  %-24s %8.1f   (rounds %s)" % (label, median[label], rounds))
    print("scaling efficiency (x%d / (%d x x1)):" % (n, n))
    for kind in args.peers:
        print("  %-24s %8.2f" % (kind, median["%s x%d" % (kind, n)] / (n * median["%s x1" % kind])))
    for label, _, _, _, _ in configs:
        if label.startswith("ours x%d " % n):
            print("  %-24s %8.2f" % (label, median[label] / (n * median["ours x1"])))
    alone = median.get("ours x%d alone" % n)
    if alone:
        ours_n = [label for label, kind, _, _, _ in configs
                  if kind == "ours" and label.startswith("ours x%d" % n)]
        print("against the machine's ceiling (ours x%d alone: %d one-worker jobs at once, no communication):"
              % (n, n))
        for label in ours_n:
            print("  %-24s %8.2f" % (label, median[label] / alone))
        lockstep = median[LOCKSTEP % n]
        print("  %-24s %8.2f" % (LOCKSTEP % n, lockstep / alone))
        print("against the lockstep bound (the same cores, waiting for each other, no communication):")
        for label in ours_n:
            print("  %-24s %8.2f" % (label, median[label] / lockstep))
    for peer in args.peers:
        if peer == "ours":
            continue
        print("ours / %s: x1 %.2fx, x%d %.2fx" % (peer, median["ours x1"] / median["%s x1" % peer], n,
                                                   median["ours x%d" % n] / median["%s x%d" % (peer, n)]))
    print("load average at the end: %.1f %.1f %.1f" % os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
