"""Fake npu_bridge (tests only): see tests/fake_npu/README.md.

FAKE_NPU_BRANCH (master, the default, or development) picks which adapter branch the fake behaves like
where the two differ; every rule cites the file and line of Ascend/tensorflow it comes from
(master @085a7b2e 2023-12-15, development @82507eb2 2021-02-20).
"""
import os

FAKE_CALLS = []
__version__ = "fake-1.15"
BRANCHES = ("master", "development")


def branch():
    """The adapter branch the fake imitates (FAKE_NPU_BRANCH)."""
    name = os.environ.get("FAKE_NPU_BRANCH", "master")
    if name not in BRANCHES:
        raise ValueError("FAKE_NPU_BRANCH must be one of %s, not %r" % (BRANCHES, name))
    return name


def record(name, **details):
    """Remember one call of the fake adapter for the test to inspect."""
    FAKE_CALLS.append((name, details))
