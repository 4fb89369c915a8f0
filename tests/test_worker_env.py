"""contract.worker_env: one table of launcher -> worker variables, read and written alike on both sides."""
import os

import pytest
from helpers import ROOT

from contract import worker_env
from contract.worker_env import EnvError, WorkerEnv, from_env
from launcher import plan


def test_what_the_launcher_writes_the_worker_reads_back():
    written = WorkerEnv(rank=1, size=2, backend="gpu", peers=["a:1", "b:2"], collective_timeout=7.5,
                        intra_threads=3, restart=2, cuda_visible_devices="", rank_table=None).to_env()
    assert written == {"RANK_ID": "1", "RANK_SIZE": "2", "LAUNCH_BACKEND": "gpu", "LAUNCH_PEERS": "a:1,b:2",
                       "LAUNCH_COLLECTIVE_TIMEOUT": "7.5", "LAUNCH_INTRA_OP_THREADS": "3",
                       "LAUNCH_RESTART": "2", "CUDA_VISIBLE_DEVICES": ""}   # None fields stay unset
    read = from_env(written)
    assert (read.rank, read.size, read.backend, read.peers, read.collective_timeout) == \
        (1, 2, "gpu", ["a:1", "b:2"], 7.5)
    assert (read.intra_threads, read.inter_threads, read.restart) == (3, 0, 2)


def test_unset_or_empty_variables_take_the_one_default():
    read = from_env({"LAUNCH_COLLECTIVE_TIMEOUT": "  ", "LAUNCH_PEERS": ""})
    assert (read.rank, read.size, read.backend, read.peers) == (0, 1, "cpu", [])
    assert read.collective_timeout == worker_env.default("collective_timeout") == 600.0
    # the launcher's --collective-timeout default is the same number
    assert plan.DEFAULT_COLLECTIVE_TIMEOUT == read.collective_timeout


@pytest.mark.parametrize("env, words", [
    ({"RANK_SIZE": "two"}, "RANK_SIZE='two' is not a whole number"),
    ({"LAUNCH_INTER_OP_THREADS": "-1"}, "LAUNCH_INTER_OP_THREADS='-1' is not a thread count"),
    ({"LAUNCH_COLLECTIVE_TIMEOUT": "soon"}, "LAUNCH_COLLECTIVE_TIMEOUT='soon' is not a number of seconds"),
    ({"LAUNCH_BACKEND": "tpu"}, "LAUNCH_BACKEND='tpu' is unknown"),
    ({"RANK_ID": "2", "RANK_SIZE": "2"}, "RANK_ID=2 must be in [0, RANK_SIZE=2)"),
])
def test_a_malformed_value_is_one_line_naming_the_variable(env, words):
    with pytest.raises(EnvError) as info:
        from_env(env)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_field_is_refused():
    with pytest.raises(TypeError, match="no field"):
        WorkerEnv(rank=0, colective_timeout=1)


def test_the_contract_doc_lists_every_variable_with_its_default():
    text = open(os.path.join(ROOT, "docs", "CONTRACTS.md"), encoding="utf-8").read()
    for var in worker_env.VARIABLES:
        row = next((line for line in text.splitlines() if line.startswith("| `%s` |" % var.name)), None)
        assert row is not None, var.name
        assert "| `%s` |" % var.field in row, row
    assert "| `LAUNCH_COLLECTIVE_TIMEOUT` | `collective_timeout` | 600 |" in text
