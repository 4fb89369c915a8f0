"""This server's id in a rank table: a real address, never loopback.

Why: `socket.gethostbyname(socket.gethostname())` gives 127.0.1.1 on hosts whose /etc/hosts maps the name to
loopback (Debian/Ubuntu default, many containers); a table with server_id 127.0.1.1 makes HCCL on the other
servers connect to themselves. So the hostname's address is used only when it is not loopback; otherwise the
one non-loopback IPv4 address of the host, or the one that carries the default route; else a clear refusal.
"""
import ipaddress
import socket

from rank_table.errors import RankTableError


def is_loopback(address):
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _ipv4(address):
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def default_route_address():
    """The local address of the default route (a UDP socket's connect sends nothing), or None."""
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(("192.0.2.1", 9))        # TEST-NET-1: never reached, only routed
            return probe.getsockname()[0]
        finally:
            probe.close()
    except OSError:
        return None


def choose_server_ip(hostname_address, addresses, route_address=None, flag="--server-ip"):
    """The address to write as server_id (pure); RankTableError naming ``flag`` when none can be chosen."""
    if hostname_address and not is_loopback(hostname_address):
        return hostname_address
    real = sorted(set(a for a in addresses if _ipv4(a) and not is_loopback(a)))
    if len(real) == 1:
        return real[0]
    if route_address in real:
        return route_address
    said = "resolves to loopback %s" % hostname_address if hostname_address else "does not resolve"
    if not real:
        raise RankTableError("this host's name %s and it has no other IPv4 address; pass %s with the address "
                             "the other servers reach it at" % (said, flag))
    raise RankTableError("this host's name %s and it has several addresses (%s); pass %s with the one the "
                         "other servers reach it at" % (said, ", ".join(real), flag))


def server_ip(flag="--server-ip"):
    """This host's server id, looked up (hostname, interfaces via psutil, default route)."""
    from rank_table.validate import local_addresses
    try:
        named = socket.gethostbyname(socket.gethostname())
    except OSError:
        named = None
    return choose_server_ip(named, local_addresses(), default_route_address(), flag)
