"""Fixtures shared by the test modules. Plain helpers (paths, ports, records, worker processes) live in
tests/helpers/, which pytest does not collect; this file puts tests/ on sys.path for them."""
import logging
import os

import pytest


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


@pytest.fixture(autouse=True)
def isolated_process_state():
    """Each test starts from the same process state whichever tests ran before it in this process (the
    order differs between one process and pytest-xdist workers): the environment is restored, and the
    worker's "train" logger, which train.__main__.main() points at the stdout of the moment and stops
    from propagating, is put back as it was (otherwise a later caplog test sees nothing)."""
    environ = dict(os.environ)
    train_log = logging.getLogger("train")
    saved = (list(train_log.handlers), train_log.propagate, train_log.level)
    yield
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    train_log.handlers[:], train_log.propagate, train_log.level = saved
