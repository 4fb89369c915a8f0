"""rank_table.devices: device specs, legality per chip, chip detection (fake npu-smi program), visible ids."""
import os
import stat

import pytest
from helpers import RANK_TABLE_FIXTURES as FIXTURES

from rank_table import RankTableError
from rank_table import devices as dev


@pytest.mark.parametrize("spec, expected", [
    ("0-7", list(range(8))),
    ("0,1,2,3", [0, 1, 2, 3]),
    ("0-3,6", [0, 1, 2, 3, 6]),
    ("4", [4]),
    (" 4-5 , 0 ", [4, 5, 0]),      # the user's order is kept: it is the rank order
    ("6,2", [6, 2]),
])
def test_parse_device_spec_accepts(spec, expected):
    assert dev.parse_device_spec(spec) == expected


@pytest.mark.parametrize("spec, words", [
    ("0,0", "listed twice"),
    ("0-3,2", "listed twice"),
    ("-1", "negative"),
    ("1,-2", "negative"),
    ("5-3", "reversed"),
    ("abc", "not a device id"),
    ("1-", "not a device id"),
    ("1--3", "not a device id"),
    ("1.5", "not a device id"),
    ("0,,1", "not a device id"),
    ("", "empty"),
    ("   ", "empty"),
    ("8", "does not exist"),
    ("0-8", "does not exist"),
])
def test_parse_device_spec_refuses_with_one_line(spec, words):
    with pytest.raises(RankTableError) as err:
        dev.parse_device_spec(spec)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_device_count_is_configurable():
    assert dev.parse_device_spec("8-15", device_count=16) == list(range(8, 16))
    with pytest.raises(RankTableError, match="has 4 devices"):
        dev.parse_device_spec("0-4", device_count=4)


@pytest.mark.parametrize("devices", [[0], [5], [0, 1], [2, 3], [4, 7], [0, 1, 2, 3], [4, 5, 6, 7],
                                     list(range(8)), [7, 6, 5, 4]])
def test_910a_accepts_1_2_4_8_inside_a_half(devices):
    dev.check_legal(devices, "910A")


@pytest.mark.parametrize("devices, words", [
    ([0, 1, 2], "use 1, 2, 4 or 8"),
    ([0, 1, 2, 3, 4], "use 1, 2, 4 or 8"),
    ([0, 1, 2, 3, 4, 5], "use 1, 2, 4 or 8"),
    ([0, 1, 2, 3, 4, 5, 6], "use 1, 2, 4 or 8"),
    ([3, 4], "span both halves"),
    ([2, 3, 4, 5], "span both halves"),
    ([0, 1, 6, 7], "span both halves"),
    ([], "no devices"),
    ([1, 1], "repeat"),
])
def test_910a_refuses(devices, words):
    with pytest.raises(RankTableError, match=words):
        dev.check_legal(devices, "910A")


def test_910a_eight_means_all_eight():
    with pytest.raises(RankTableError, match="all of 0-7"):
        dev.check_legal([0, 1, 2, 3, 8, 9, 10, 11], "910A")


def test_910a_rules_hold_on_every_server():
    with pytest.raises(RankTableError, match="each of the 2 servers"):
        dev.check_legal([0, 1, 2], "910A", server_count=2)


def test_910b_allows_any_subset_and_unknown_chip_is_refused():
    for devices in ([0, 1, 2], [3, 4], [0, 2, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7]):
        dev.check_legal(devices, "910B")
    with pytest.raises(RankTableError, match="unknown chip"):
        dev.check_legal([0], "310P")


def test_same_count_on_every_server():
    dev.check_same_count([[0, 1], [4, 5]])
    with pytest.raises(RankTableError, match="a has 2, b has 4"):
        dev.check_same_count([[0, 1], [0, 1, 2, 3]], ["a", "b"])


@pytest.mark.parametrize("name, chip", [
    ("910A", "910A"), ("910B", "910A"), ("910ProA", "910A"), ("910ProB", "910A"), ("910PremiumA", "910A"),
    ("Ascend910A", "910A"), ("910B1", "910B"), ("910B3", "910B"), ("910B4", "910B"), ("Ascend910", "910B"),
    ("310P3", None),
])
def test_chip_from_npu_smi_name(name, chip):
    assert dev.chip_from_name(name) == chip


def _fake_npu_smi(folder, output_file):
    """A real `npu-smi` program that prints a saved `npu-smi info` table."""
    folder.mkdir(exist_ok=True)
    script = folder / "npu-smi"
    script.write_text("#!/bin/sh\n[ \"$1\" = info ] || exit 1\ncat '%s'\n" % output_file)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


@pytest.mark.parametrize("output, chip", [
    ("npu_smi_info_910a.txt", "910A"),
    ("npu_smi_info_910b3.txt", "910B"),
    ("npu_smi_info_910prob.txt", "910A"),
])
def test_detect_chip_from_npu_smi(tmp_path, monkeypatch, output, chip):
    bin_dir = _fake_npu_smi(tmp_path / "bin", os.path.join(FIXTURES, output))
    monkeypatch.setenv("PATH", "%s%s%s" % (bin_dir, os.pathsep, os.environ.get("PATH", "")))
    assert dev.detect_chip(dev_dir=str(tmp_path / "no-dev")) == chip


def test_detect_chip_without_npu_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    dev_dir = tmp_path / "dev"
    dev_dir.mkdir()
    (dev_dir / "davinci_manager").write_text("")
    assert dev.detect_chip(dev_dir=str(dev_dir)) is None
    assert dev.count_ascend_devices(str(dev_dir)) == 0
    for index in (0, 1, 4, 5):
        (dev_dir / ("davinci%d" % index)).write_text("")
    assert dev.count_ascend_devices(str(dev_dir)) == 4
    assert dev.detect_chip(dev_dir=str(dev_dir)) == "910A"


def test_visible_devices_flag_wins_over_environment():
    env = {"ASCEND_RT_VISIBLE_DEVICES": "4,5,6,7"}
    assert dev.visible_devices(env=env) == [4, 5, 6, 7]
    assert dev.visible_devices(env=env, flag="2,3") == [2, 3]
    assert dev.visible_devices(env={}) is None
    with pytest.raises(RankTableError, match="ASCEND_RT_VISIBLE_DEVICES"):
        dev.visible_devices(env={"ASCEND_RT_VISIBLE_DEVICES": "4,4"})


def test_logical_to_physical():
    assert dev.logical_to_physical([0, 1, 2, 3], [4, 5, 6, 7]) == [4, 5, 6, 7]
    assert dev.logical_to_physical([1, 0], [6, 3]) == [3, 6]
    assert dev.logical_to_physical([2, 3], None) == [2, 3]
    with pytest.raises(RankTableError, match="logical device 4 is not visible"):
        dev.logical_to_physical([4], [4, 5, 6, 7])


def test_format_devices():
    assert dev.format_devices([0, 1, 2, 3, 6]) == "0-3,6"
    assert dev.format_devices([4]) == "4"
    assert dev.format_devices([6, 2, 3]) == "6,2-3"
