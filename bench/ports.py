"""Loopback ports free right now: the one picker of the bench scripts and the tests (tests/helpers)."""
import socket


def free_ports(count, host="127.0.0.1"):
    """`count` distinct ports free on `host` right now (all held at once while they are picked)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
