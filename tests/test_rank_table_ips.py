"""rank_table.device_ips: hccn.conf parsing and a real fake `hccn_tool` program on PATH."""
import os
import stat

import pytest
from helpers import RANK_TABLE_FIXTURES as FIXTURES

from rank_table import RankTableError
from rank_table.device_ips import parse_hccn_conf, read_device_ips, read_hccn_conf

SERVER_A = os.path.join(FIXTURES, "hccn_server_a.conf")


def fake_hccn_tool(folder, known):
    """Write an `hccn_tool` that answers `-i N -ip -g` like the real one for the devices in ``known``."""
    folder.mkdir(exist_ok=True)
    cases = "".join("  %d) printf 'ipaddr:%s\\nnetmask:255.255.255.0\\n' ;;\n" % (device, ip)
                    for device, ip in sorted(known.items()))
    script = folder / "hccn_tool"
    script.write_text("#!/bin/sh\n[ \"$1\" = -i ] && [ \"$3\" = -ip ] && [ \"$4\" = -g ] || exit 1\n"
                      "case \"$2\" in\n%s  *) echo 'ret -1: device not found' ; exit 255 ;;\nesac\n" % cases)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def test_parse_hccn_conf_reads_address_lines_only():
    ips = read_hccn_conf(SERVER_A)
    assert ips[0] == "192.168.100.101" and ips[4] == "192.168.100.100" and len(ips) == 8
    assert parse_hccn_conf("# comment\naddress_3 = 10.0.0.3\nnetmask_3=255.0.0.0\n") == {3: "10.0.0.3"}


@pytest.mark.parametrize("text, words", [
    ("address_x=1.2.3.4\n", "address_<device>=<ip>"),
    ("address_0=1.2.3\n", "not an IP address"),
    ("address_0=1.2.3.4\naddress_0=1.2.3.5\n", "given twice"),
])
def test_parse_hccn_conf_refuses_bad_lines(text, words):
    with pytest.raises(RankTableError, match=words) as err:
        parse_hccn_conf(text, "my.conf")
    assert "my.conf" in str(err.value)


def test_read_from_file_without_hccn_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert read_device_ips([4, 5], hccn_conf=SERVER_A) == {4: "192.168.100.100", 5: "192.168.101.100"}


def test_missing_device_ip_names_device_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.168.100.101\naddress_1=192.168.101.101\n")
    with pytest.raises(RankTableError) as err:
        read_device_ips([0, 1, 2], hccn_conf=str(conf))
    message = str(err.value)
    assert "device 2 has no IP" in message and str(conf) in message and "address_2" in message


def test_unreadable_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RankTableError, match="cannot read .*missing.conf"):
        read_device_ips([0], hccn_conf=str(tmp_path / "missing.conf"))


def test_hccn_tool_is_asked_first(tmp_path, monkeypatch):
    bin_dir = fake_hccn_tool(tmp_path / "bin", {0: "10.9.0.1", 1: "10.9.0.2"})
    monkeypatch.setenv("PATH", "%s%s%s" % (bin_dir, os.pathsep, os.environ.get("PATH", "")))
    assert read_device_ips([0, 1], hccn_conf=SERVER_A) == {0: "10.9.0.1", 1: "10.9.0.2"}
    # the file is the fallback for devices the tool does not know
    assert read_device_ips([0, 2], hccn_conf=SERVER_A) == {0: "10.9.0.1", 2: "192.168.102.101"}
    # and the file alone when the tool is switched off
    assert read_device_ips([0], hccn_conf=SERVER_A, use_hccn_tool=False) == {0: "192.168.100.101"}


def test_missing_ip_with_hccn_tool_mentions_both(tmp_path, monkeypatch):
    bin_dir = fake_hccn_tool(tmp_path / "bin", {0: "10.9.0.1"})
    monkeypatch.setenv("PATH", "%s%s%s" % (bin_dir, os.pathsep, os.environ.get("PATH", "")))
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.168.100.101\n")
    with pytest.raises(RankTableError) as err:
        read_device_ips([0, 1], hccn_conf=str(conf))
    assert "hccn_tool -i 1 -ip -g" in str(err.value) and "address_1" in str(err.value)
    with pytest.raises(RankTableError) as err:
        read_device_ips([0, 1], hccn_conf=str(tmp_path / "absent.conf"))
    assert "device 1 has no IP: `hccn_tool -i 1 -ip -g` gave no ipaddr and cannot read" in str(err.value)


def test_duplicate_device_ips_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.168.100.101\naddress_1=192.168.100.101\n")
    with pytest.raises(RankTableError, match="same IP 192.168.100.101"):
        read_device_ips([0, 1], hccn_conf=str(conf))
