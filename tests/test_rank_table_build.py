"""rank_table.build: tables equal field by field (and key order) to hccl_tools.py / merge_hccl.py output.

The golden files in tests/fixtures/rank_table/ were written by MindSpore's own hccl_tools.py and
merge_hccl.py from the fixture hccn.conf files (see the README there).
"""
import json
import os

import pytest
from helpers import RANK_TABLE_FIXTURES as FIXTURES

from rank_table import RankTableError
from rank_table.build import build_table, merge_tables, table_text, write_table
from rank_table.device_ips import read_device_ips
from rank_table.validate import load_table

SERVER_A = os.path.join(FIXTURES, "hccn_server_a.conf")
SERVER_B = os.path.join(FIXTURES, "hccn_server_b.conf")


def ordered(path_or_text):
    """JSON with key order kept (a list of pairs per object), to compare layout as well as values."""
    text = path_or_text
    if os.path.exists(path_or_text):
        with open(path_or_text) as handle:
            text = handle.read()
    return json.loads(text, object_pairs_hook=list)


def server(server_id, devices, conf):
    ips = read_device_ips(devices, hccn_conf=conf, use_hccn_tool=False)
    return (server_id, [(device, ips[device]) for device in devices])


@pytest.mark.parametrize("devices, golden", [
    ([0], "golden_1p.json"),
    ([0, 1], "golden_2p.json"),
    ([4, 5, 6, 7], "golden_4p_4567.json"),
    (list(range(8)), "golden_8p.json"),
])
def test_one_server_equals_hccl_tools(devices, golden):
    table = build_table([server("10.155.111.118", devices, SERVER_A)])
    assert ordered(table_text(table)) == ordered(os.path.join(FIXTURES, golden))


def test_two_servers_equal_merge_hccl():
    table = build_table([server("10.155.111.118", [0, 1, 2, 3], SERVER_A),
                         server("10.155.111.119", [0, 1, 2, 3], SERVER_B)])
    assert ordered(table_text(table)) == ordered(os.path.join(FIXTURES, "golden_2servers_4p.json"))
    ranks = [d["rank_id"] for s in table["server_list"] for d in s["device"]]
    assert ranks == [str(r) for r in range(8)]


def test_every_value_is_a_string():
    table = build_table([server("n0", [0, 1], SERVER_A), server("n1", [0, 1], SERVER_B)])

    def leaves(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from leaves(item)
        elif isinstance(value, list):
            for item in value:
                yield from leaves(item)
        else:
            yield value
    assert all(isinstance(leaf, str) for leaf in leaves(table))


@pytest.mark.parametrize("servers, words", [
    ([], "no servers"),
    ([("a", [])], "no devices"),
    ([("a", [(0, "1.1.1.1")]), ("a", [(0, "1.1.1.2")])], "listed twice"),
    ([("a", [(0, "1.1.1.1"), (0, "1.1.1.2")])], "device 0 twice"),
    ([("a", [(0, "1.1.1.1")]), ("b", [(0, "1.1.1.1")])], "used twice"),
])
def test_build_refuses(servers, words):
    with pytest.raises(RankTableError, match=words):
        build_table(servers)


def test_write_is_atomic_and_never_replaces_a_different_file(tmp_path):
    table = build_table([server("10.155.111.118", list(range(8)), SERVER_A)])
    path = tmp_path / "hccl_8p.json"
    assert write_table(table, str(path)) == str(path)
    assert ordered(str(path)) == ordered(os.path.join(FIXTURES, "golden_8p.json"))
    assert [p.name for p in tmp_path.iterdir()] == ["hccl_8p.json"]   # no temp file left behind
    write_table(table, str(path))                                     # same table again: fine
    other = build_table([server("10.155.111.118", [0], SERVER_A)])
    with pytest.raises(RankTableError, match="--force"):
        write_table(other, str(path))
    assert ordered(str(path)) == ordered(os.path.join(FIXTURES, "golden_8p.json"))   # untouched
    write_table(other, str(path), overwrite=True)
    assert ordered(str(path)) == ordered(os.path.join(FIXTURES, "golden_1p.json"))
    with pytest.raises(RankTableError, match="does not exist"):
        write_table(other, str(tmp_path / "no" / "dir.json"))


def test_build_validate_round_trip(tmp_path):
    built = build_table([server("10.0.0.1", [4, 5], SERVER_A), server("10.0.0.2", [4, 5], SERVER_B)])
    path = write_table(built, str(tmp_path / "t.json"))
    table = load_table(path, chip="910A")
    assert table.template == 1 and table.version == "1.0" and table.rank_size == 4
    assert [s.server_id for s in table.servers] == ["10.0.0.1", "10.0.0.2"]
    assert table.servers[1].devices[0] == (4, "192.168.100.102", 2)
    assert table.servers[1].rank_ids == [2, 3]
    assert merge_tables([table]) == built


def test_merge_continues_rank_ids(tmp_path):
    first = load_table(write_table(build_table([server("a", [0, 1], SERVER_A)]), str(tmp_path / "a.json")))
    second = load_table(write_table(build_table([server("b", [0, 1], SERVER_B)]), str(tmp_path / "b.json")))
    merged = merge_tables([first, second])
    assert merged["server_count"] == "2"
    assert [d["rank_id"] for d in merged["server_list"][1]["device"]] == ["2", "3"]
