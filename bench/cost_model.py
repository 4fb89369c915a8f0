"""The data-parallel cost model of docs/performance.md, as a calculator (pure Python, no TensorFlow).

Per step of synchronous data-parallel training on N workers:

    T_N = T_c + (k * alpha + 2 (N - 1) / N * B / beta) * (1 - h) + S / L

T_c: compute time of one step on one worker (batch / images/s of one worker); B: bytes allreduced per
step (trainable parameters x bytes per gradient element, from models/complexity.py); k: collectives per
step (gradient buckets); alpha: fixed cost of one collective; beta: bytes per second of the ring's
slowest link; h: the share of the communication that overlaps the backward pass (hcom_parallel on
Ascend, gradient buckets here); S: what synchronising N host loops costs per sess.run (the slowest rank's
host delay), paid once per L steps (iterations_per_loop). Scaling efficiency is T_c / T_N.
``--cpu`` compares the model with measured CPU scaling; ``--ascend`` gives the expected
8-card efficiency on an Ascend 910 server for the ModelZoo models.

On CPU two more measured terms enter: N workers computing at once are slower than one alone (shared
caches, memory bandwidth, the hypervisor): T_c becomes T_c / C with C the ceiling efficiency of
bench_peers.py --ceiling (N one-worker jobs at once, no communication); and ``--overhead-ms`` is any other
per-step cost of the N-worker job (the gRPC server's, with the collective ops: bench_scaling.py
--diagnose, "1 worker via server" against "1 worker").

    python bench/cost_model.py --cpu --alpha-ms 0 --mb-per-s 1780 --collectives 2 --single 64:530 \
        --ceiling 64:0.96 --measured 64:0.88
    python bench/cost_model.py --ascend
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# ModelZoo-TensorFlow, Ascend 910 (shared/reference/models-facts.md section 3.2): images/s, batch per card.
ASCEND_PUBLISHED = {
    "mobilenetv3_large": {"fps_1p": 2041.0, "fps_8p": 13021.0, "batch": 256},
    "mobilenetv3_small": {"fps_1p": 1762.0, "fps_8p": 7252.0, "batch": 256},
    "shufflenetv1": {"fps_1p": None, "fps_8p": None, "batch": 256},
}
# Assumptions for an Atlas 800 (model 9000) training server, 8 x Ascend 910 (docs/performance.md says
# where each comes from): HCCS 30 GB/s per link within each group of 4 cards, the two groups joined over
# PCIe; the ring's slowest link is taken between 12 and 25 GB/s.
ASCEND_BETA_RANGE = (12e9, 25e9)
ASCEND_ALPHA_RANGE = (20e-6, 100e-6)  # per collective (HCCL launch + synchronisation)
ASCEND_STRAGGLER = 2e-3  # S: the slowest of 8 host loops' delay per sess.run, assumed (nothing published)
ASCEND_HIDDEN = 0.5  # share of the allreduce that hcom_parallel overlaps with the backward pass, assumed


def trainable_bytes(model, num_classes=1000, bytes_per_element=4):
    """Bytes of the gradients allreduced per step: trainable parameters x element size."""
    from models import registry
    return registry.complexity_at(model, num_classes=num_classes).trainable_params * bytes_per_element


def comm_time(nbytes, workers, alpha, beta, collectives=1):
    """Seconds of one step's allreduces: k alpha + 2 (N-1)/N B / beta (pure)."""
    if workers <= 1:
        return 0.0
    return collectives * alpha + 2.0 * (workers - 1) / workers * nbytes / beta


def step_time(compute, nbytes, workers, alpha, beta, collectives=1, hidden=0.0, straggler=0.0, loop=1):
    """Seconds per step of the model above (pure); ``hidden`` is a share (0..1) of the communication."""
    if workers <= 1:
        return compute
    comm = comm_time(nbytes, workers, alpha, beta, collectives)
    return compute + comm * (1.0 - hidden) + straggler / float(loop)


def efficiency(compute, nbytes, workers, alpha, beta, collectives=1, hidden=0.0, straggler=0.0, loop=1):
    """Images/s of N workers / (N x images/s of one) under the model (pure)."""
    return compute / step_time(compute, nbytes, workers, alpha, beta, collectives, hidden, straggler, loop)


def _pairs(items, kind=float):
    result = {}
    for item in items:
        key, _, value = item.partition(":")
        result[int(key)] = kind(value)
    return result


def cpu_efficiency(compute, comm, ceiling=1.0, overhead=0.0):
    """On CPU: T_c / (T_c / C + communication + other per-step costs), all in seconds (pure)."""
    return compute / (compute / ceiling + comm + overhead)


def cpu_table(args):
    nbytes = trainable_bytes("mobilenetv3_small", num_classes=10, bytes_per_element=args.element_bytes)
    single = _pairs(args.single)
    measured = _pairs(args.measured)
    ceilings = _pairs(args.ceiling)
    overheads = _pairs(args.overhead_ms)
    print("CPU, mobilenetv3_small (10 classes): B = %.2f MB per step, alpha %.2f ms, beta %.0f MB/s, "
          "%d collective(s) per step, batch %d per worker, 2 workers"
          % (nbytes / 1e6, args.alpha_ms, args.mb_per_s, args.collectives, args.batch))
    print("  %6s %12s %8s %8s %8s %8s %10s %8s"
          % ("image", "1 worker", "T_c ms", "ceiling", "T_x ms", "other ms", "predicted", "measured"))
    for size in sorted(single):
        compute = args.batch / single[size]
        alpha, beta = args.alpha_ms / 1e3, args.mb_per_s * 1e6
        ceiling, overhead = ceilings.get(size, 1.0), overheads.get(size, 0.0) / 1e3
        # beta is fitted for the whole allreduce of 2 workers (bench_allreduce.py): the ring factor
        # 2 (N-1) / N of comm_time is 1 there
        wire = comm_time(nbytes, 2, alpha, beta, args.collectives) * (1.0 - args.hidden)
        predicted = cpu_efficiency(compute, wire, ceiling, overhead)
        got = measured.get(size)
        print("  %6d %10.1f/s %8.1f %8.2f %8.1f %8.1f %10.3f %8s%s"
              % (size, single[size], compute * 1e3, ceiling, wire * 1e3, overhead * 1e3, predicted,
                 "%.3f" % got if got else "-",
                 "  (error %+.1f%%)" % (100.0 * (predicted - got) / got) if got else ""))


def ascend_table(args):
    alpha_lo, alpha_hi = ASCEND_ALPHA_RANGE
    beta_lo, beta_hi = ASCEND_BETA_RANGE
    print("Ascend 910, 8 cards (Atlas 800), fp32 gradients, one fused allreduce per step (GE fuses up to "
          "FUSION_TENSOR_SIZE); alpha %g-%g us, beta %g-%g GB/s, S = %g ms per sess.run"
          % (alpha_lo * 1e6, alpha_hi * 1e6, beta_lo / 1e9, beta_hi / 1e9, ASCEND_STRAGGLER * 1e3))
    print("  %-18s %7s %6s %6s %6s %8s %-13s %-13s %9s %11s"
          % ("model", "params", "B MB", "1p FPS", "T_c ms", "T_x ms", "L=1, no ovl.", "L=100, hcom_p",
             "published", "unexplained"))
    for model, facts in ASCEND_PUBLISHED.items():
        nbytes = trainable_bytes(model)
        comm = (comm_time(nbytes, 8, alpha_lo, beta_hi), comm_time(nbytes, 8, alpha_hi, beta_lo))
        if not facts["fps_1p"]:
            # No published 1p figure: the step time above which the model predicts >= 0.95.
            need = (comm[1] + ASCEND_STRAGGLER) * 19
            print("  %-18s %6.2fM %6.1f %6s %6s %3.1f-%-4.1f efficiency >= 0.95 when T_c >= %.0f ms (nothing "
                  "published)" % (model, nbytes / 4e6, nbytes / 1e6, "-", "-", comm[0] * 1e3, comm[1] * 1e3,
                                  need * 1e3))
            continue
        compute = facts["batch"] / facts["fps_1p"]
        plain = [efficiency(compute, nbytes, 8, a, b, straggler=ASCEND_STRAGGLER)
                 for a, b in ((alpha_hi, beta_lo), (alpha_lo, beta_hi))]
        tuned = [efficiency(compute, nbytes, 8, a, b, hidden=ASCEND_HIDDEN, straggler=ASCEND_STRAGGLER,
                            loop=100) for a, b in ((alpha_hi, beta_lo), (alpha_lo, beta_hi))]
        published = facts["fps_8p"] / (8 * facts["fps_1p"])
        step_8p = facts["batch"] * 8 / facts["fps_8p"]
        unexplained = step_8p - step_time(compute, nbytes, 8, alpha_hi, beta_lo, straggler=ASCEND_STRAGGLER)
        print("  %-18s %6.2fM %6.1f %6.0f %6.1f %3.1f-%-4.1f %.3f-%.3f   %.3f-%.3f   %9.3f %8.0f ms"
              % (model, nbytes / 4e6, nbytes / 1e6, facts["fps_1p"], compute * 1e3, comm[0] * 1e3,
                 comm[1] * 1e3, plain[0], plain[1], tuned[0], tuned[1], published, unexplained * 1e3))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="compare the model with measured CPU scaling")
    parser.add_argument("--ascend", action="store_true", help="expected 8-card scaling on Ascend 910")
    parser.add_argument("--alpha-ms", type=float, default=0.5, help="fixed cost per collective (ms)")
    parser.add_argument("--mb-per-s", type=float, default=400.0, help="allreduce bandwidth (MB/s)")
    parser.add_argument("--collectives", type=int, default=1, help="collectives per step")
    parser.add_argument("--hidden", type=float, default=0.0, help="share of the allreduce overlapped (0-1)")
    parser.add_argument("--element-bytes", type=int, default=4, help="4 float32, 2 float16 on the wire")
    parser.add_argument("--batch", type=int, default=32, help="images per worker per step")
    parser.add_argument("--single", action="append", default=[], metavar="SIZE:IMAGES_PER_S",
                        help="measured images/s of one worker at an image size")
    parser.add_argument("--measured", action="append", default=[], metavar="SIZE:EFFICIENCY",
                        help="measured 2-worker scaling efficiency at an image size")
    parser.add_argument("--ceiling", action="append", default=[], metavar="SIZE:EFFICIENCY",
                        help="2 one-worker jobs at once / 2 x one alone (bench_peers.py --ceiling)")
    parser.add_argument("--overhead-ms", action="append", default=[], metavar="SIZE:MS",
                        help="other per-step cost of the 2-worker job (the gRPC server's); default 0")
    args = parser.parse_args(argv)
    if args.cpu:
        cpu_table(args)
    if args.ascend:
        ascend_table(args)
    if not (args.cpu or args.ascend):
        parser.error("give --cpu and/or --ascend")
    return 0


if __name__ == "__main__":
    sys.exit(main())
