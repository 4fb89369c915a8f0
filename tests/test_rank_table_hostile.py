"""Hostile rank-table files: one line, exit 2, never a traceback, memory bounded, both through
`python -m rank_table validate FILE` and through the launcher's --rank-table."""
import json
import os
import resource
import subprocess
import sys

import pytest
from helpers import ROOT

GOLDEN = os.path.join(ROOT, "tests", "fixtures", "rank_table", "golden_8p.json")


def _golden():
    with open(GOLDEN) as handle:
        return json.load(handle)


def _with(field, value):
    """golden_8p.json's text with rank_id of device 3 replaced by raw JSON text ``value``."""
    data = _golden()
    data["server_list"][0]["device"][3][field] = "@@"
    return json.dumps(data).replace('"@@"', value).encode("utf-8")


def _deep(depth):
    return b'{"status": "completed", "version": "1.0", "server_list": ' + b"[" * depth + b"]" * depth + b"}"


HOSTILE = {
    "utf16": (json.dumps(_golden()).encode("utf-16"), "UTF-16"),
    "utf16be-no-bom": (json.dumps(_golden()).encode("utf-16-be"), "UTF-16"),
    "latin1": (json.dumps(_golden()).replace("completed", "compl\u00e9ted").encode("latin-1"), "not UTF-8"),
    "deep": (_deep(200000), "nests too deeply"),
    "arabic-digit": (_with("rank_id", '"\u0663"'), "at most 9 ASCII digits"),
    "superscript": (_with("device_id", '"\u00b2"'), "at most 9 ASCII digits"),
    "huge-digit-string": (_with("rank_id", '"%s"' % ("9" * 5000)), "at most 9 ASCII digits"),
    "huge-number": (_with("rank_id", "9" * 5000), "5000-character number"),
    "nan": (_with("rank_id", "NaN"), "NaN is not JSON"),
    "infinity": (_with("device_id", "-Infinity"), "-Infinity is not JSON"),
    "not-an-object": (b"[1, 2, 3]", "a rank table is a JSON object, not list"),
    "empty": (b"", "is not valid JSON"),
    "nul-bytes": (b"\x00" * 64, "UTF-16"),
}


def _write_big(path, size):
    """A file of ``size`` bytes, one JSON line (a huge string), written without holding it in memory."""
    with open(path, "wb") as handle:
        handle.write(b'{"status": "completed", "version": "1.0", "x": "')
        chunk = b"a" * (1 << 20)
        left = size - handle.tell() - 2
        while left > 0:
            handle.write(chunk[:left])
            left -= len(chunk)
        handle.write(b'"}')


def _run(argv, cwd, limit_memory=True):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("RANK_TABLE_FILE", None)

    def cap():  # 400 MB of address space above what the interpreter needs: reading 64 MiB twice would fail
        if limit_memory:
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    return subprocess.run([sys.executable] + argv, cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=cap)


def _one_line(proc, words, prefix):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    assert words in lines[0], lines[0]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_one_line_via_the_cli(tmp_path, name):
    raw, words = HOSTILE[name]
    (tmp_path / "t.json").write_bytes(raw)
    _one_line(_run(["-m", "rank_table", "validate", "t.json"], tmp_path), words, "rank_table: error: ")


@pytest.mark.parametrize("name", ["utf16", "latin1", "deep", "arabic-digit", "huge-number", "nan"])
def test_hostile_files_are_one_line_via_the_launcher(tmp_path, name):
    raw, words = HOSTILE[name]
    (tmp_path / "t.json").write_bytes(raw)
    proc = _run(["-m", "launcher", "--backend", "npu", "--rank-table", "t.json", "--table-wait", "0",
                 "--dry-run", "--", "true"], tmp_path)
    _one_line(proc, words, "launcher: error: ")
    assert not (tmp_path / "output").exists()


def test_a_64_mib_file_is_refused_unread(tmp_path):
    _write_big(str(tmp_path / "big.json"), 64 << 20)
    proc = _run(["-m", "rank_table", "validate", "big.json"], tmp_path)
    _one_line(proc, "over the 50 MB limit", "rank_table: error: ")
    proc = _run(["-m", "launcher", "--backend", "npu", "--rank-table", "big.json", "--table-wait", "0",
                 "--dry-run", "--", "true"], tmp_path)
    _one_line(proc, "over the 50 MB limit", "launcher: error: ")


def test_a_file_just_under_the_cap_is_parsed_in_bounded_memory(tmp_path):
    _write_big(str(tmp_path / "big.json"), 49 << 20)
    proc = _run(["-m", "rank_table", "validate", "big.json"], tmp_path)
    _one_line(proc, "has no server_count", "rank_table: error: ")
