"""Rendezvous of a CPU/GPU job on several hosts: every node learns every node's address, in node order.

Why: TensorFlow's collective ops need every rank's host:port (LAUNCH_PEERS) on every host. With --hosts the
hosts know them up front; with only --nnodes, --node-rank and --master-addr they must talk once, as torchrun
does: node 0 listens on (--master-addr, --master-port); every node (node 0 too, through the same code path)
connects, sends one JSON line and receives one JSON line once all nodes have joined:

    node -> master   {"node_rank": 1, "addr": "10.0.0.2", "workers": 4, "flags": {"model": ..., ...}}
    master -> node   {"ok": true, "addrs": ["10.0.0.1", "10.0.0.2"]}
                     {"ok": false, "kind": "usage" | "timeout", "error": "<one line>"}

The master port carries only this exchange; the workers' ports start at master port + 1 (launcher/ports.py).
Pure helpers (encoding, the agreement check) come first; the socket code after them.
"""
import errno
import json
import selectors
import socket
import threading
import time

from launcher.errors import LaunchError

DEFAULT_PORT = 29500
DEFAULT_TIMEOUT = 600.0
MAX_LINE = 65536
RETRY_INTERVAL = 0.5
# Flags that must be the same on every node (their values are sent, so a mismatch is named in the error).
SHARED_FLAGS = ("backend", "nnodes", "master_port", "model", "batch_size", "epochs", "job_id",
                "collective_timeout", "max_restarts", "passthrough")
EXIT_USAGE = 2
EXIT_FAILED = 1


class RendezvousError(LaunchError):
    """The rendezvous failed; ``exit_code`` is 2 for a launch mistake, 1 for a timeout or a lost master."""

    def __init__(self, message, exit_code=EXIT_FAILED):
        LaunchError.__init__(self, message)
        self.exit_code = exit_code


# ---- pure helpers -------------------------------------------------------------------------------------

def needed(options):
    """True when the hosts must agree by talking: several nodes and no --hosts list."""
    return bool(options.get("nnodes") and options["nnodes"] > 1 and not options.get("hosts"))


def check_options(options):
    """The flags a rendezvous needs, each missing one named in one line."""
    if options.get("node_rank") is None:
        raise RendezvousError("--nnodes %d without --hosts: add --node-rank N (0 on the master host) and "
                              "--master-addr HOST" % options["nnodes"], EXIT_USAGE)
    if not 0 <= options["node_rank"] < options["nnodes"]:
        raise RendezvousError("--node-rank %d is outside 0-%d"
                              % (options["node_rank"], options["nnodes"] - 1), EXIT_USAGE)
    if not options.get("master_addr"):
        raise RendezvousError("--nnodes %d without --hosts: add --master-addr HOST (node 0's address, the "
                              "same on every node) or list every host with --hosts" % options["nnodes"],
                              EXIT_USAGE)
    timeout = options.get("rendezvous_timeout")
    if timeout is not None and timeout <= 0:
        raise RendezvousError("--rendezvous-timeout must be more than 0", EXIT_USAGE)


def master_port(options):
    """The rendezvous port: --master-port, else DEFAULT_PORT (the workers' ports follow it)."""
    port = options.get("master_port")
    return DEFAULT_PORT if port is None else int(port)


def flags_of(options, backend):
    """The job's flags that every node must share, as a JSON-able dict."""
    flags = dict((name, options.get(name)) for name in SHARED_FLAGS)
    flags["backend"] = backend
    flags["master_port"] = master_port(options)
    flags["passthrough"] = list(options.get("passthrough") or [])
    return flags


def join_message(node_rank, addr, workers, flags):
    return {"node_rank": node_rank, "addr": addr, "workers": workers, "flags": flags}


def encode(message):
    """One message as one UTF-8 JSON line."""
    return (json.dumps(message, sort_keys=True) + "\n").encode("utf-8")


def decode(line):
    """A JSON object from one line; ValueError for anything else."""
    message = json.loads(line.decode("utf-8"))
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


def check_join_message(message):
    """ValueError unless ``message`` has the fields of a join message with the right types."""
    rank, addr, workers = message.get("node_rank"), message.get("addr"), message.get("workers")
    if not isinstance(rank, int) or isinstance(rank, bool):
        raise ValueError("node_rank is not an integer")
    if not isinstance(addr, str) or not addr:
        raise ValueError("addr is not a host name")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError("workers is not a positive integer")
    if not isinstance(message.get("flags"), dict):
        raise ValueError("flags is not an object")


def _flag_text(name, value):
    flag = "trainer options" if name == "passthrough" else "--" + name.replace("_", "-")
    if value is None or value == []:
        return "no %s" % flag
    return "%s %s" % (flag, " ".join(value) if isinstance(value, list) else value)


def agreement_error(joined, message, nnodes):
    """Why ``message`` cannot join the nodes already ``joined`` ({node rank: message}); None if it can.

    The reference is node 0's message when it has joined, else the lowest node rank's.
    """
    rank = message["node_rank"]
    if not 0 <= rank < nnodes:
        return "node rank %d joined a job of %d node(s) (0-%d): fix its --node-rank or --nnodes" \
            % (rank, nnodes, nnodes - 1)
    if rank in joined:
        return "node rank %d joined twice (from %s and %s): give every host its own --node-rank" \
            % (rank, joined[rank]["addr"], message["addr"])
    if not joined:
        return None
    ref_rank = min(joined)
    ref = joined[ref_rank]
    if message["workers"] != ref["workers"]:
        return "node %d runs %d worker(s) but node %d runs %d: every node needs the same number " \
               "(--devices)" % (rank, message["workers"], ref_rank, ref["workers"])
    names = sorted(set(ref["flags"]) | set(message["flags"]))
    differ = [name for name in names if ref["flags"].get(name) != message["flags"].get(name)]
    if differ:
        name = differ[0]
        return "node %d was started with %s but node %d with %s: start every node with the same flags" \
            % (rank, _flag_text(name, message["flags"].get(name)), ref_rank,
               _flag_text(name, ref["flags"].get(name)))
    return None


def missing_ranks(joined, nnodes):
    return [rank for rank in range(nnodes) if rank not in joined]


def success_answer(joined, nnodes):
    """Every node's address in node order (all ``nnodes`` have joined)."""
    return {"ok": True, "addrs": [joined[rank]["addr"] for rank in range(nnodes)]}


def failure_answer(error, kind="usage"):
    return {"ok": False, "kind": kind, "error": error}


def timeout_answer(joined, nnodes, timeout, where):
    missing = missing_ranks(joined, nnodes)
    return failure_answer("rendezvous at %s timed out after %g s: node rank(s) %s never joined; start them "
                          "with --master-addr/--master-port pointing here (or raise --rendezvous-timeout)"
                          % (where, timeout, ",".join(str(rank) for rank in missing)), "timeout")


def result_of(answer):
    """The address list of a master's answer, or RendezvousError with its one line."""
    if answer.get("ok") and isinstance(answer.get("addrs"), list):
        return [str(addr) for addr in answer["addrs"]]
    code = EXIT_USAGE if answer.get("kind") == "usage" else EXIT_FAILED
    raise RendezvousError(str(answer.get("error") or "the master sent no address list"), code)


# ---- sockets ------------------------------------------------------------------------------------------

def _where(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Master:
    """Node 0's side: accept one line per node until all have joined or the deadline passes, then answer.

    Several connections are read at once (selectors), so a silent or slow client holds up nobody; a
    connection that sends garbage is dropped; a node whose connection closes before the end leaves the
    rendezvous (it may join again, e.g. after a restart).
    """

    def __init__(self, host, port, nnodes, timeout):
        self.host, self.port, self.nnodes, self.timeout = host, port, nnodes, timeout
        self.where = _where(host, port)
        self.listener = _listen(host, port)
        self.thread = None
        self.error = None
        self.answer = None    # what every node was told, once decided

    def start(self):
        self.thread = threading.Thread(target=self._serve_safely, name="rendezvous-master", daemon=True)
        self.thread.start()
        return self

    def stop(self, wait=5.0):
        if self.thread is not None:
            self.thread.join(wait)

    def _serve_safely(self):
        try:
            self.serve()
        except Exception as error:      # the client side reports a lost master; keep the reason
            self.error = error
        finally:
            self.listener.close()

    def serve(self):
        deadline = time.monotonic() + self.timeout
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        buffers = {}      # connection -> bytes received so far
        joined = {}       # node rank -> message
        sockets = {}      # node rank -> connection
        answer = None
        try:
            while answer is None:
                if len(joined) == self.nnodes:
                    answer = success_answer(joined, self.nnodes)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    answer = timeout_answer(joined, self.nnodes, self.timeout, self.where)
                    break
                for key, _ in selector.select(min(remaining, 0.5)):
                    if key.fileobj is self.listener:
                        self._accept(selector, buffers)
                        continue
                    conn = key.fileobj
                    message, closed = self._read(conn, buffers)
                    if closed:
                        self._drop(selector, buffers, conn)
                        for rank in [r for r, c in sockets.items() if c is conn]:
                            del sockets[rank]
                            del joined[rank]
                        continue
                    if message is None or conn in sockets.values():
                        continue            # a line in parts, or more from a node that has joined
                    earlier = sockets.get(message["node_rank"])
                    if earlier is not None and not _alive(earlier):
                        self._drop(selector, buffers, earlier)     # that node restarted: its new try counts
                        del sockets[message["node_rank"]]
                        del joined[message["node_rank"]]
                    error = agreement_error(joined, message, self.nnodes)
                    if error:
                        answer = failure_answer(error, "usage")
                        _send(conn, answer)
                        self._drop(selector, buffers, conn)
                        break
                    joined[message["node_rank"]] = message
                    sockets[message["node_rank"]] = conn
            # Success goes to the nodes that joined; a refusal or a timeout to every open connection, so
            # that a node whose join was not read yet (two arrived at once) hears why too.
            self.answer = answer
            if not answer["ok"]:
                while self._accept(selector, buffers):     # joins still waiting to be accepted hear it too
                    pass
            for conn in list(sockets.values()) if answer["ok"] else list(buffers):
                _send(conn, answer)
        finally:
            for conn in list(buffers):
                self._drop(selector, buffers, conn)
            selector.close()

    def _accept(self, selector, buffers):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return False
        conn.setblocking(False)
        buffers[conn] = b""
        selector.register(conn, selectors.EVENT_READ)
        return True

    def _read(self, conn, buffers):
        """(a valid join message or None, whether the connection is gone)."""
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return None, False
        except OSError:
            return None, True
        if not data:
            return None, True
        buffers[conn] += data
        if b"\n" not in buffers[conn]:
            return None, len(buffers[conn]) > MAX_LINE
        line, _, buffers[conn] = buffers[conn].partition(b"\n")
        try:
            message = decode(line)
            check_join_message(message)
        except ValueError:              # not one of ours (a port scan, another program): drop it
            return None, True
        return message, False

    @staticmethod
    def _drop(selector, buffers, conn):
        try:
            selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        buffers.pop(conn, None)
        _close_gently(conn)


def _close_gently(conn):
    """Close without a reset: a socket closed with unread input sends RST, which can reach the node before
    the answer just sent to it (it then sees 'connection reset', not the reason)."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.setblocking(False)
        while conn.recv(4096):
            pass
    except OSError:
        pass
    conn.close()


def _alive(conn):
    """False when the peer has closed this (non-blocking) connection; a node that restarted left it so."""
    try:
        return bool(conn.recv(1, socket.MSG_PEEK))
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False


def _listen(host, port):
    """A listening socket on (host, port); every interface when ``host`` is not one of this host's."""
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise RendezvousError("--master-addr %s cannot be resolved (%s); give node 0's address"
                              % (host, error), EXIT_USAGE) from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno != errno.EADDRNOTAVAIL:
                raise
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise RendezvousError("--master-port %d on %s is in use (another job, or a second --node-rank "
                                  "0?): pick another --master-port, the same on every node" % (port, host),
                                  EXIT_USAGE) from None
        raise RendezvousError("cannot listen on %s for the rendezvous (%s)" % (_where(host, port), error),
                              EXIT_USAGE) from None
    sock.setblocking(False)
    return sock


def _send(conn, message):
    try:
        conn.setblocking(True)
        conn.settimeout(5.0)
        conn.sendall(encode(message))
    except OSError:
        pass


def _connect(host, port, deadline):
    """A connection to the master, retried until ``deadline`` (the master may start later)."""
    last = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RendezvousError("could not reach the master at %s within the rendezvous timeout (%s): "
                                  "start node 0 with the same --master-addr/--master-port, check the address "
                                  "and that the port is open" % (_where(host, port), last or "no attempt"))
        try:
            return socket.create_connection((host, port), timeout=min(5.0, remaining))
        except socket.gaierror as error:
            raise RendezvousError("--master-addr %s cannot be resolved (%s); give node 0's address"
                                  % (host, error), EXIT_USAGE) from None
        except OSError as error:
            last = error.strerror or str(error)
        time.sleep(min(RETRY_INTERVAL, max(0.0, deadline - time.monotonic())))


def _read_line(sock, deadline):
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except OSError:         # a timeout, or the master went away (reset): no answer
            return None
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_LINE:
            return None
    return data.split(b"\n", 1)[0]


def join(host, port, node_rank, workers, flags, timeout, node_addr=None):
    """This node's side: connect (retrying), send who it is, return every node's address in node order.

    Once connected, it waits for the master's answer up to another ``timeout``: the master decides when
    the rendezvous has timed out and names the nodes that never came.
    """
    sock = _connect(host, port, time.monotonic() + timeout)
    try:
        addr = node_addr or sock.getsockname()[0]
        sock.settimeout(5.0)
        try:
            sock.sendall(encode(join_message(node_rank, addr, workers, flags)))
        except OSError as error:
            raise RendezvousError("the master at %s closed the rendezvous (%s)"
                                  % (_where(host, port), error)) from None
        line = _read_line(sock, time.monotonic() + timeout + 5.0)
    finally:
        sock.close()
    if line is None:
        raise RendezvousError("the master at %s gave no answer: it ended or timed out (see node 0's output)"
                              % _where(host, port))
    try:
        answer = decode(line)
    except ValueError:
        raise RendezvousError("the master at %s sent something that is not a rendezvous answer; is "
                              "--master-port another program's port?" % _where(host, port)) from None
    return result_of(answer)


def run(options, backend, workers, err=None):
    """Rendezvous for this node (and serve it on node 0): every node's address in node order."""
    check_options(options)
    host = options["master_addr"]
    port = master_port(options)
    if not 1024 <= port <= 65535:
        raise RendezvousError("--master-port %d is out of range; pick one between 1024 and 65535" % port,
                              EXIT_USAGE)
    nnodes = options["nnodes"]
    timeout = options.get("rendezvous_timeout") or DEFAULT_TIMEOUT
    master = Master(host, port, nnodes, timeout).start() if options["node_rank"] == 0 else None
    if err is not None:
        err.write("launcher: rendezvous of %d node(s) at %s (node %d; timeout %g s)\n"
                  % (nnodes, _where(host, port), options["node_rank"], timeout))
        err.flush()
    try:
        addrs = join(host, port, options["node_rank"], workers, flags_of(options, backend), timeout,
                     options.get("node_addr"))
    except RendezvousError:
        if master is not None:   # node 0 hears its own master's reason even if its connection lost it
            master.stop()
            if master.answer is not None and not master.answer["ok"]:
                result_of(master.answer)
        raise
    finally:
        if master is not None:
            master.stop()
    if len(addrs) != nnodes:
        raise RendezvousError("the master answered %d address(es) for %d node(s); start every node with "
                              "the same --nnodes" % (len(addrs), nnodes), EXIT_USAGE)
    return addrs
