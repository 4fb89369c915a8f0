"""rank_table.schema / rank_table.validate: every refusal, template 2, waiting, finding this host's server."""
import copy
import json
import os
import threading
import time

import pytest
from helpers import RANK_TABLE_FIXTURES as FIXTURES

from rank_table import RankTableError
from rank_table.schema import parse_table
from rank_table.validate import (
    SCHEDULER_TABLE_PATHS,
    check_matches_devices,
    find_local_server,
    find_scheduler_table,
    load_table,
)


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)


def two_servers():
    return fixture("golden_2servers_4p.json")


def edit(change):
    """The two-server golden table with ``change(table)`` applied."""
    table = copy.deepcopy(two_servers())
    change(table)
    return table


def test_golden_tables_are_valid():
    for name in ("golden_1p.json", "golden_2p.json", "golden_4p_4567.json", "golden_8p.json",
                 "golden_2servers_4p.json", "operator_2servers.json"):
        table = parse_table(fixture(name), source=name, chip="910A")
        assert table.template == 1
        ranks = [rank for server in table.servers for rank in server.rank_ids]
        assert sorted(ranks) == list(range(table.rank_size))


def _set(path, value):
    def change(table):
        target = table
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _delete(path):
    def change(table):
        target = table
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


@pytest.mark.parametrize("change, words", [
    (_set(["server_list", 0, "device", 1, "rank_id"], 1), "is 1 (int); HCCL expects every value as a string"),
    (_set(["server_count"], 2), "server_count is 2 (int)"),
    (_set(["server_list", 0, "device", 0, "device_id"], 0), "device_id is 0 (int)"),
    (_set(["server_count"], "3"), "server_count is \"3\" but server_list has 2 servers"),
    (_set(["server_list", 1, "device", 0, "device_ip"], "192.168.100.101"),
     "device IP 192.168.100.101 is used twice"),
    (_set(["server_list", 1, "device", 0, "device_ip"], "not-an-ip"), "not an IP address"),
    (_set(["server_list", 1, "device", 0, "rank_id"], "0"), "rank_id 0 is used twice"),
    (_set(["server_list", 1, "device", 3, "rank_id"], "9"), "without gaps, but 7 is missing"),
    (_set(["server_list", 1, "device", 3, "device_id"], "8"), "device_id 8 but a 910A server has 8 devices"),
    (_set(["server_list", 1, "device", 3, "device_id"], "-1"), "non-negative integer"),
    (_set(["server_list", 1, "device", 3, "device_id"], "\u0663"), "at most 9 ASCII digits"),
    (_set(["server_list", 1, "device", 3, "device_id"], "\u00b2"), "at most 9 ASCII digits"),
    (_set(["server_list", 1, "device", 3, "rank_id"], "7" * 5000), "at most 9 ASCII digits"),
    (_set(["server_list", 1, "device", 3, "device_id"], "2"), "lists a device twice"),
    (_set(["server_list", 1, "device", 3, "device_id"], "4"), "span both halves"),
    (_set(["server_list", 1, "server_id"], "10.155.111.118"), "appears twice"),
    (_set(["server_list", 1, "server_id"], ""), "server_id is empty"),
    (_delete(["server_list", 1, "device", 0, "device_ip"]), "has no device_ip; HCCL needs device IPs when"),
    (_set(["server_list", 1, "device", 0, "device_ip"], ""), "has no device_ip; HCCL needs device IPs when"),
    (_delete(["server_list", 1, "device"]), "has no device list"),
    (_set(["server_list"], []), "server_list is missing or empty"),
    (_set(["status"], "done"), "status is \"done\""),
    (_delete(["status"]), "status is missing"),
    (_set(["version"], "2.0"), "version \"2.0\" (the rank_list format of later chips"),
    (_set(["version"], "0.9"), "a format this tool does not know"),
    (_delete(["version"]), "not an HCCL rank table"),
])
def test_bad_tables_are_refused_with_one_line(change, words):
    with pytest.raises(RankTableError) as err:
        parse_table(edit(change), source="t.json", chip="910A")
    message = str(err.value)
    assert words in message and message.startswith("t.json: ") and "\n" not in message


def test_different_device_counts_per_server_are_refused():
    def change(table):
        table["server_list"][1]["device"] = table["server_list"][1]["device"][:2]
        table["server_list"][1]["device"][1]["rank_id"] = "5"
        table["server_list"][1]["device"][0]["rank_id"] = "4"
    with pytest.raises(RankTableError, match="different device counts"):
        parse_table(edit(change), chip="910B")


def test_chip_rules_apply_per_server():
    def three_devices(table):
        table["server_list"][0]["device"] = table["server_list"][0]["device"][:3]
        table["server_list"][1]["device"] = table["server_list"][1]["device"][:3]
        for rank, device in enumerate(d for s in table["server_list"] for d in s["device"]):
            device["rank_id"] = str(rank)
    with pytest.raises(RankTableError, match="use 1, 2, 4 or 8"):
        parse_table(edit(three_devices), chip="910A")
    assert parse_table(edit(three_devices), chip="910B").rank_size == 6


def test_template_2_is_read():
    table = parse_table(fixture("template2_8p.json"), chip="910A")
    assert table.template == 2 and table.version is None and table.rank_size == 8
    assert table.servers[0].server_id == "10.246.246.60"
    assert table.servers[0].devices[7] == (7, "192.168.103.100", 7)


def _pod_instances(*servers):
    """hccl-controller "v1" instances: one per pod (server), pod_name, no rank_id, several devices each."""
    instances = []
    for index, (server_id, devices) in enumerate(servers):
        instances.append({"devices": [{"device_id": str(d), "device_ip": "192.168.%d.%d" % (d, index + 1)}
                                      for d in devices], "pod_name": "job-worker-%d" % index,
                          "server_id": server_id})
    return {"group_list": [{"instance_list": instances, "group_name": "job", "device_count":
                            str(sum(len(d) for _, d in servers)), "instance_count": str(len(servers))}],
            "status": "completed", "group_count": "1"}


def test_template_2_without_rank_ids_follows_instance_then_device_order():
    table = parse_table(_pod_instances(("10.0.0.2", [4, 5, 6, 7]), ("10.0.0.1", [0, 1, 2, 3])))
    assert table.template == 2 and table.rank_size == 8
    assert [s.server_id for s in table.servers] == ["10.0.0.2", "10.0.0.1"]
    assert table.servers[0].devices[0] == (4, "192.168.4.1", 0)
    assert table.servers[1].rank_ids == [4, 5, 6, 7] and table.servers[1].device_ids == [0, 1, 2, 3]
    one = parse_table(_pod_instances(("90.0.0.1", [0])))
    assert one.rank_size == 1 and one.servers[0].rank_ids == [0]


def test_template_2_rules():
    mixed = _pod_instances(("10.0.0.1", [0]), ("10.0.0.2", [0]))
    mixed["group_list"][0]["instance_list"][0]["rank_id"] = "0"
    with pytest.raises(RankTableError, match=r"instance_list\[1\] has no rank_id while other"):
        parse_table(mixed)
    several = _pod_instances(("10.0.0.1", [0, 1]))
    several["group_list"][0]["instance_list"][0]["rank_id"] = "0"
    with pytest.raises(RankTableError, match="has a rank_id and 2 devices"):
        parse_table(several)
    with pytest.raises(RankTableError, match="span both halves"):
        parse_table(_pod_instances(("10.0.0.1", [2, 3, 4, 5])), chip="910A")


def _sixteen(servers=2, version="1.0", **server_extra):
    server_list = []
    for index in range(servers):
        devices = [{"device_id": str(d), "device_ip": "10.%d.0.%d" % (index, d),
                    "rank_id": str(16 * index + d)} for d in range(16)]
        entry = {"server_id": "node-%d" % index, "device": devices}
        entry.update(server_extra)
        server_list.append(entry)
    return {"version": version, "server_count": str(servers), "server_list": server_list,
            "status": "completed"}


def test_sixteen_device_servers_take_the_chip_from_the_table_or_the_caller():
    table = parse_table(_sixteen())
    assert table.rank_size == 32 and table.chip == "910B" and "16-device server" in table.chip_reason
    assert parse_table(_sixteen(), chip="910B").rank_size == 32
    with pytest.raises(RankTableError, match="device_id 8 but a 910A server has 8 devices"):
        parse_table(_sixteen(), chip="910A")


def test_hardware_type_chooses_the_rules_when_no_device_is_detected():
    table = edit(_set(["server_list", 1, "device", 3, "device_id"], "4"))   # 0,1,2,4: illegal on 910A
    for server in table["server_list"]:
        server["hardware_type"] = "800I-A2-32G"
    told = parse_table(table)
    assert told.chip == "910B" and told.chip_reason == "hardware_type 800I-A2-32G"
    with pytest.raises(RankTableError, match="span both halves"):
        parse_table(table, chip="910A")     # a detected chip or --chip wins over the table
    for server in table["server_list"]:
        server["hardware_type"] = "Ascend910"   # says nothing about the generation
    with pytest.raises(RankTableError, match="span both halves"):
        parse_table(table)


def test_one_server_tables_need_no_device_ip_and_empty_host_ips_are_absent():
    data = fixture("golden_8p.json")
    for device in data["server_list"][0]["device"]:
        del device["device_ip"]
    data["server_list"][0]["host_ip"] = ""
    data["server_list"][0]["container_ip"] = ""
    table = parse_table(data)
    assert table.servers[0].devices[3] == (3, None, 3)
    assert table.servers[0].host_ip is None and table.servers[0].container_ip is None


def _a3_super_pod():
    data = _sixteen(servers=2, version="1.2", host_ip="10.1.0.1")
    data["server_list"][1]["host_ip"] = "10.1.0.2"
    for server in data["server_list"]:
        for device in server["device"]:
            device["super_device_id"] = str(37748736 + int(device["rank_id"]))
            del device["device_ip"]
    data["super_pod_list"] = [{"super_pod_id": "0", "server_list": [{"server_id": "node-0"},
                                                                    {"server_id": "node-1"}]}]
    return data


def test_version_1_2_super_pod_tables_are_read():
    table = parse_table(_a3_super_pod())
    assert table.version == "1.2" and table.chip == "910B" and table.rank_size == 32
    assert table.servers[1].rank_ids == list(range(16, 32))
    bad = _a3_super_pod()
    bad["super_pod_list"][0]["server_list"].append({"server_id": "node-9"})
    with pytest.raises(RankTableError, match="names server node-9, which server_list does not have"):
        parse_table(bad)
    two_pods = _a3_super_pod()
    two_pods["super_pod_list"] = [{"super_pod_id": "0", "server_list": [{"server_id": "node-0"}]},
                                  {"super_pod_id": "1", "server_list": [{"server_id": "node-1"}]}]
    with pytest.raises(RankTableError, match="HCCL needs device IPs when a job spans servers"):
        parse_table(two_pods)


def _write(path, data):
    temp = str(path) + ".tmp"
    with open(temp, "w") as handle:
        json.dump(data, handle)
    os.replace(temp, str(path))


@pytest.mark.parametrize("first", [
    {"status": "initializing", "version": "1.0", "server_count": "0", "server_list": []},
    {"status": "initializing"},  # how Huawei's samples start the scheduler's ConfigMap
])
def test_initializing_table_is_waited_for(tmp_path, first):
    path = tmp_path / "hccl.json"
    _write(path, first)
    messages = []
    writer = threading.Timer(0.4, _write, args=(path, two_servers()))
    writer.start()
    try:
        table = load_table(str(path), wait_timeout=20, poll_interval=0.1, on_wait=messages.append)
    finally:
        writer.cancel()
    assert table.rank_size == 8
    assert messages and "initializing" in messages[0] and str(path) in messages[0]


def test_waiting_times_out_with_the_reason(tmp_path):
    path = tmp_path / "hccl.json"
    _write(path, {"status": "initializing", "version": "1.0", "server_count": "0", "server_list": []})
    start = time.monotonic()
    with pytest.raises(RankTableError, match="initializing.*gave up after waiting"):
        load_table(str(path), wait_timeout=0.3, poll_interval=0.1)
    assert time.monotonic() - start < 10
    with pytest.raises(RankTableError, match="initializing.*--wait"):
        load_table(str(path))


def test_a_newer_version_still_initializing_is_refused_at_once():
    with pytest.raises(RankTableError, match="version \"2.0\""):
        parse_table({"status": "initializing", "version": "2.0"})


def test_missing_file_is_waited_for_then_reported(tmp_path):
    path = tmp_path / "later.json"
    writer = threading.Timer(0.3, _write, args=(path, two_servers()))
    writer.start()
    try:
        assert load_table(str(path), wait_timeout=20, poll_interval=0.1).rank_size == 8
    finally:
        writer.cancel()
    with pytest.raises(RankTableError, match="does not exist"):
        load_table(str(tmp_path / "never.json"))


def test_broken_json_is_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"version": "1.0",')
    with pytest.raises(RankTableError, match="is not valid JSON"):
        load_table(str(path))


def operator_table():
    return parse_table(fixture("operator_2servers.json"), source="hccl.json")


def test_find_local_server_by_id_rank_and_addresses():
    table = operator_table()
    assert find_local_server(table, server_id="worker-1-uid").server_id == "worker-1-uid"
    assert find_local_server(table, node_rank=1).rank_ids == [2, 3]
    assert find_local_server(table, addresses={"127.0.0.1", "10.0.1.12"}).server_id == "worker-1-uid"
    assert find_local_server(table, addresses={"172.16.0.21"}).server_id == "worker-0-uid"
    two = parse_table(two_servers())
    assert find_local_server(two, addresses={"10.155.111.119"}).rank_ids == [4, 5, 6, 7]


def test_find_local_server_refusals_list_the_servers():
    table = operator_table()
    with pytest.raises(RankTableError, match="worker-0-uid, worker-1-uid"):
        find_local_server(table, server_id="nope")
    with pytest.raises(RankTableError, match="node ranks 0-1"):
        find_local_server(table, node_rank=2)
    with pytest.raises(RankTableError, match="none of this host's addresses .*worker-0-uid, worker-1-uid"):
        find_local_server(table, addresses={"10.9.9.9"})
    with pytest.raises(RankTableError, match="several servers"):
        find_local_server(table, addresses={"10.0.1.11", "10.0.1.12"})


def test_one_server_table_matches_any_host():
    table = parse_table(fixture("golden_8p.json"))
    assert find_local_server(table, addresses={"10.9.9.9"}).server_id == "10.155.111.118"
    assert find_local_server(table).server_id == "10.155.111.118"     # this host's real addresses


def test_check_matches_devices():
    server = parse_table(fixture("golden_4p_4567.json")).servers[0]
    check_matches_devices(server, [7, 6, 5, 4])
    with pytest.raises(RankTableError) as err:
        check_matches_devices(server, [0, 1, 2, 3])
    assert "has devices 4-7 but --devices is 0-3" in str(err.value)
    assert "asks for 0-3, which the table lacks" in str(err.value)


def test_scheduler_table_path(tmp_path):
    assert SCHEDULER_TABLE_PATHS[0] == "/user/serverid/devindex/config/hccl.json"
    assert find_scheduler_table(env={"RANK_TABLE_FILE": "/x/hccl.json"}) == "/x/hccl.json"
    mounted = tmp_path / "hccl.json"
    assert find_scheduler_table(env={}, paths=(str(mounted),)) is None
    mounted.write_text("{}")
    assert find_scheduler_table(env={}, paths=(str(mounted),)) == str(mounted)


def test_a_pod_finds_its_server_by_uid_pod_ip_or_node_ip_and_refuses_another_runs_table():
    from rank_table import TableNotReady
    from rank_table.validate import PodIdentity, table_for_pod
    table = operator_table()        # server_id worker-N-uid, host_ip 10.0.1.1N, container_ip 172.16.0.2N
    assert find_local_server(table, addresses=set(), identity=PodIdentity(pod_ip="172.16.0.22")).index == 1
    assert find_local_server(table, addresses=set(), identity=PodIdentity(node_ip="10.0.1.11")).index == 0
    assert find_local_server(table, addresses=set(), identity=PodIdentity(uid="worker-1-uid")).index == 1
    with pytest.raises(TableNotReady, match="not this pod's 172.16.9.9: it is a previous run's table"):
        table_for_pod(PodIdentity(pod_ip="172.16.9.9", node_ip="10.0.1.11"))(table)
    uid = "0c5a6f0e-1111-4a57-9d1b-2b1a51e0f001"
    uid_table = parse_table(edit(_set(["server_list", 0, "server_id"], uid)))
    with pytest.raises(TableNotReady, match="but not this pod .uid 0c5a6f0e-9999"):
        table_for_pod(PodIdentity(uid="0c5a6f0e-9999-4a57-9d1b-2b1a51e0f001"))(uid_table)
    controller = parse_table(two_servers())     # hccl-controller: server_id = node IP, nothing per pod
    node = PodIdentity(node_ip="10.155.111.119")
    assert find_local_server(controller, addresses=set(), identity=node).index == 1
    with pytest.raises(TableNotReady, match="not this pod's node 10.9.9.9"):
        table_for_pod(PodIdentity(node_ip="10.9.9.9"))(controller)
    table_for_pod(PodIdentity())(controller)    # outside Kubernetes nothing is judged here


def test_a_super_pod_id_on_the_servers_chooses_the_a3_rules():
    table = edit(_set(["server_list", 1, "device", 3, "device_id"], "4"))   # 0,1,2,4: illegal on 910A
    for server in table["server_list"]:
        server["super_pod_id"] = "0"
    told = parse_table(table)
    assert told.chip == "910B" and "super-pod" in told.chip_reason


def test_a_scheduler_one_server_table_must_name_the_pods_node():
    from rank_table import TableNotReady
    from rank_table.validate import PodIdentity, table_for_pod
    one = parse_table(fixture("golden_8p.json"))        # server_id 10.155.111.118
    pod = PodIdentity(node_ip="10.0.0.7")
    table_for_pod(pod)(one)         # a user's table (ModelZoo's 8p.json names someone else's host): used
    with pytest.raises(TableNotReady, match="not this pod's node 10.0.0.7"):
        table_for_pod(pod, scheduler=True)(one)          # the scheduler's: a previous run's on another node
    table_for_pod(PodIdentity(node_ip="10.155.111.118"), scheduler=True)(one)
