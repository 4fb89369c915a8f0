"""Real rank tables nobody here wrote (Ascend/ModelZoo-TensorFlow, MindIE-LLM, MindSpore docs): every valid
one accepted with HCCL's rank order, every refused one refused for the fault its manifest entry names.

The corpus and its manifest (source repo, path, commit, verdict, reason): tests/fixtures/rank_table/corpus/.
"""
import collections
import hashlib
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT as REPO

from rank_table import RankTableError
from rank_table.validate import read_table

CORPUS = os.path.join(REPO, "tests", "fixtures", "rank_table", "corpus")
with open(os.path.join(CORPUS, "MANIFEST.json")) as _handle:
    MANIFEST = json.load(_handle)["tables"]


def _hccl_order(data):
    """{(server_id, device_id): rank} read straight from the JSON, the way HCCL numbers ranks: the rank_id
    fields when present, else instance order then device order (template 2 without rank_id)."""
    order = {}
    if "server_list" in data:
        for server in data["server_list"]:
            for device in server["device"]:
                order[(server["server_id"], int(device["device_id"]))] = int(device["rank_id"])
        return order
    rank = 0
    for instance in data["group_list"][0]["instance_list"]:
        for device in instance["devices"]:
            key = (instance["server_id"], int(device["device_id"]))
            order[key] = int(instance["rank_id"]) if "rank_id" in instance else rank
            rank += 1
    return order


def test_the_corpus_is_what_the_manifest_names():
    names = sorted(entry["file"] for entry in MANIFEST)
    assert sorted(f for f in os.listdir(CORPUS) if f.endswith(".json") and f != "MANIFEST.json") == names
    assert len(set(entry["sha256"] for entry in MANIFEST)) == len(MANIFEST)     # distinct tables only
    for entry in MANIFEST:
        with open(os.path.join(CORPUS, entry["file"]), "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == entry["sha256"], entry["file"]
        assert entry["sources"] and all(s["repo"] and s["path"] and len(s["commit"]) == 40
                                        for s in entry["sources"])


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_each_real_table_gets_its_verdict(entry):
    path = os.path.join(CORPUS, entry["file"])
    if entry["verdict"] == "accept":
        table = read_table(path)
        with open(path) as handle:
            expected = _hccl_order(json.load(handle))
        got = {(s.server_id, d.device_id): d.rank_id for s in table.servers for d in s.devices}
        assert got == expected
        assert sorted(got.values()) == list(range(table.rank_size))
        assert [[s.server_id, s.device_ids, s.rank_ids] for s in table.servers] == entry["ranks"]
    else:
        with pytest.raises(RankTableError) as err:
            read_table(path)
        assert entry["expect"] in str(err.value) and "\n" not in str(err.value)


def test_counts_match_the_docs():
    counts = collections.Counter(e["reason"] if e["verdict"] == "refuse" else "accepted" for e in MANIFEST)
    with open(os.path.join(REPO, "docs", "rank_table.md")) as handle:
        doc = handle.read()
    assert "%d distinct tables: %d accepted" % (len(MANIFEST), counts.pop("accepted")) in doc
    for reason, count in counts.items():
        assert "%d: %s" % (count, reason) in doc


def test_template_2_pod_tables_and_the_16_device_a3_example_are_accepted():
    pod_tables = [e for e in MANIFEST if e["verdict"] == "accept" and "template 2" in e["reason"]
                  and b"pod_name" in open(os.path.join(CORPUS, e["file"]), "rb").read()]
    assert len(pod_tables) >= 10
    a3 = [e for e in MANIFEST if e["sources"][0]["repo"] == "Ascend/MindIE-LLM"]
    assert len(a3) == 1 and a3[0]["verdict"] == "accept" and "32 ranks" in a3[0]["reason"]


@pytest.mark.parametrize("reason", sorted(set(e["reason"] for e in MANIFEST if e["verdict"] == "refuse")))
def test_refused_real_tables_are_one_line_and_exit_2_from_the_cli(reason):
    entry = [e for e in MANIFEST if e["reason"] == reason][0]
    path = os.path.join(CORPUS, entry["file"])
    proc = subprocess.run([sys.executable, "-m", "rank_table", "validate", path],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and entry["expect"] in proc.stderr and "Traceback" not in proc.stderr
