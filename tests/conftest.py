"""Fixtures shared by the test modules. Plain helpers (paths, ports, records, worker processes) live in
tests/helpers/, which pytest does not collect; this file puts tests/ on sys.path for them."""
import logging
import os

import pytest

# Under pytest-xdist each worker process is one of several sharing the cores: TensorFlow in it, and in the
# workers its tests launch (train.session_config caps the launcher's pools by these variables), gets the
# launcher's rule, cores / processes threads per pool (at least 1). With pools as wide as the machine the
# processes' idle threads spun against each other: 553 CPU-s for the suite instead of 494 (2-core machine).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", _threads)


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-kernels", choices=("eigen", "host"), default="eigen",
        help="eigen (default): TensorFlow's reference CPU kernels (TF_ENABLE_ONEDNN_OPTS=0) in this process "
             "and every process it starts, the same on every host; tests marked host_kernels are skipped. "
             "host: the host's default kernels (oneDNN where TensorFlow turns it on), every test runs")


def pytest_configure(config):
    """Choose the CPU kernels before any test module imports TensorFlow (collection comes after this).

    Why eigen by default: on hosts where TensorFlow turns oneDNN on, its graph rewrites and per-shape
    primitives cost about a sixth of the suite's CPU (it builds hundreds of small graphs: 207 s of pytest
    instead of 243 s on the 2-core machine, README), and a host without oneDNN (the first one) runs Eigen's
    anyway, so every host then checks the same numbers. What differs under oneDNN (grouped-convolution
    kernels, ReLU turning NaN into 0) is in the tests marked host_kernels, which `make test` runs again
    with --cpu-kernels=host."""
    if config.getoption("--cpu-kernels") == "eigen":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"


@pytest.fixture
def reap():
    """A list to append started subprocesses to: any still running when the test ends is killed and waited
    for, so that a failing assertion never leaves a worker behind (SIGKILL also ends a stopped process)."""
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


_TRAIN_LOG = logging.getLogger("train")
_TRAIN_LOG_AT_START = (list(_TRAIN_LOG.handlers), _TRAIN_LOG.propagate, _TRAIN_LOG.level)


def _reset_train_log():
    _TRAIN_LOG.handlers[:], _TRAIN_LOG.propagate, _TRAIN_LOG.level = _TRAIN_LOG_AT_START


@pytest.fixture(autouse=True)
def isolated_process_state():
    """Each test starts from the same process state whichever tests ran before it in this process (the
    order differs between one process and pytest-xdist workers): the environment is restored, and the
    worker's "train" logger, which train.__main__.main() points at the stdout of the moment and stops
    from propagating, is put back as it was when the session started, before and after every test (a
    module fixture may have run main() before this fixture's setup; a later caplog test saw nothing)."""
    environ = dict(os.environ)
    _reset_train_log()
    yield
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    _reset_train_log()


# The files that take longest (wall time of their tests under `make test` on the 2-core machine,
# 2026-12-01), longest first. Under pytest-xdist (`--dist loadfile`, the Makefile's) a worker takes the next
# file when it is free, so starting the long ones first leaves short files to fill the end instead of one
# worker finishing a long file alone. Since 3.5 xdist reorders the files by their number of tests (and so
# started a two-test file that runs a minute last); the Makefile passes --no-loadscope-reorder (xdist 3.8)
# to keep this order. Only the order changes; a file missing here (or renamed) just runs after these, in
# pytest's order.
LONGEST_FIRST = [
    "tests/test_models_build.py", "tests/test_modelzoo_scripts.py", "tests/test_small_data.py",
    "tests/test_gates.py", "tests/test_backends_collective.py", "tests/test_predict.py",
    "tests/test_trainer.py", "tests/test_data_records.py", "tests/test_launcher_resume.py",
    "tests/test_trainer_data_options.py", "tests/test_demo.py", "tests/test_data_pipeline.py",
    "tests/test_tfcompat.py", "tests/test_launcher_run.py", "tests/test_multihost.py",
    "tests/test_bn_recalibrate.py", "tests/test_launcher_rendezvous.py", "tests/test_k8s.py",
    "tests/test_launcher_blame.py", "tests/test_trainer_loops.py", "tests/test_launcher_cli.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable sort
    if config.getoption("--cpu-kernels") == "eigen":
        later = pytest.mark.skip(reason="about the host's CPU kernels: runs with --cpu-kernels=host "
                                        "(make test's second pass)")
        for item in items:
            if "host_kernels" in item.keywords:
                item.add_marker(later)
