"""Fixtures shared by the test modules. Plain helpers (paths, ports, records, worker processes) live in
tests/helpers/, which pytest does not collect; this file puts tests/ on sys.path for them."""
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
