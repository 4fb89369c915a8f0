"""Facts about this host that the plan needs (CPUs, NUMA nodes, devices, addresses, busy ports), read once."""
import glob
import os
import re
import socket
import sys
import time

import psutil


def allowed_cpus():
    """The CPUs this process may run on (its affinity mask), not merely the CPUs the machine has."""
    try:
        return sorted(psutil.Process().cpu_affinity())
    except (AttributeError, psutil.Error, OSError):
        return list(range(psutil.cpu_count() or 1))


def parse_cpulist(text):
    """'0-3,8-11' (the kernel's cpulist format) -> [0, 1, 2, 3, 8, 9, 10, 11]."""
    cpus = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def numa_nodes(root="/sys/devices/system/node"):
    """CPUs per NUMA node from sysfs; [] when the topology is unknown."""
    nodes = []
    for path in sorted(glob.glob(os.path.join(root, "node[0-9]*", "cpulist")),
                       key=lambda p: int(re.findall(r"node(\d+)", p)[-1])):
        try:
            with open(path) as handle:
                cpus = parse_cpulist(handle.read())
        except (OSError, ValueError):
            return []
        if cpus:
            nodes.append(cpus)
    return nodes


def local_addresses():
    """Every IP address of this host's interfaces."""
    found = []
    try:
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    found.append(address.address.split("%")[0])
    except (psutil.Error, OSError):
        pass
    return found


def ports_in_use():
    """Local TCP ports that are bound on this host right now (so a new job's block can avoid them)."""
    try:
        return sorted(set(conn.laddr.port for conn in psutil.net_connections("tcp") if conn.laddr))
    except (psutil.Error, OSError):
        return []


DEFAULT_SHM_ROOT = "/dev/shm"


def shm_root(path=DEFAULT_SHM_ROOT):
    """Where the shared-memory gradient allreduce can put its files (/dev/shm, or --shm-root), or None."""
    return path if os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK) else None


def gpu_visible(environ):
    """Physical ids of the CUDA devices a worker may use: CUDA_VISIBLE_DEVICES, else the driver's list."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        ids = [item.strip() for item in value.split(",") if item.strip()]
        if not ids or ids[0].startswith("-"):
            return []
        return [int(item) if item.isdigit() else item for item in ids]
    return list(range(len(glob.glob("/proc/driver/nvidia/gpus/*"))))


def ascend_facts(environ, wanted):
    """(device count, visible physical ids in logical order) of Ascend devices; (0, []) unless npu may be
    chosen. A pod given physical 4-7 sees /dev/davinci4..7 (or ASCEND_VISIBLE_DEVICES=4-7): its ranks get
    the logical ids 0-3 the adapter expects (ASCEND_RT_VISIBLE_DEVICES, when set, still wins)."""
    if not wanted:
        return 0, []
    from rank_table import devices as rt_devices
    try:
        given = rt_devices.container_devices(environ)
        chosen = rt_devices.visible_devices(environ, None, device_count=rt_devices.MAX_DEVICE_COUNT)
    except rt_devices.RankTableError as error:
        from launcher.errors import LaunchError
        raise LaunchError(str(error)) from None
    if not given:
        return 0, []
    return len(given), list(chosen or given)


def gather(backend="auto", shm_path=DEFAULT_SHM_ROOT):
    """Every fact the plan reads, as one dict (see launcher.plan.make_plan)."""
    environ = dict(os.environ)
    count, visible = ascend_facts(environ, backend in ("auto", "npu"))
    return {
        "environ": environ, "hostname": socket.gethostname(), "addresses": local_addresses(),
        "allowed_cpus": allowed_cpus(), "numa_nodes": numa_nodes(),
        "ascend_count": count, "ascend_visible": visible,
        "gpu_visible": gpu_visible(environ) if backend in ("auto", "gpu") else [],
        "ports_in_use": ports_in_use() if backend != "npu" else [],
        "python": sys.executable, "pid": os.getpid(), "time": time.time(), "cwd": os.getcwd(),
        "shm_root": shm_root(shm_path) if backend in ("auto", "cpu") else None,
    }
