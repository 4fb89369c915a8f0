"""Allreduce between the ranks of one host through shared memory (CPU), signalled over Unix sockets.

Why: on CPU, TensorFlow's collective ops move every gradient through the rank's gRPC server in 4 KB
chunks, and that is CPU work on the core the backward pass needs: 21.6 ms of wall time (16 ms of CPU) for
MobileNetV3-Small's 6 MB between two pinned processes. Ranks on one host can instead each copy their
bucket into a shared file and sum everyone's copies: 2.5 ms for the same 6 MB through TensorFlow
(bench/RESULTS.md).

Protocol, per allreduce (the same sequence on every rank, see CollectiveBackend):
  1. copy the local array into this rank's slot of the shared region;
  2. tell every peer "written" and wait for every peer's "written" (each message also carries the count
     of this rank's allreduces and the array's size: ranks whose code went different ways fail, naming
     the rank, instead of summing unrelated arrays);
  3. sum the slots in rank order (so every rank computes the same bytes) and divide for a mean;
  4. tell every peer "read" and wait for every peer's "read": after it, any slot may be overwritten.
The messages are 17 bytes on a Unix stream socket per pair of ranks. A peer that died closes its
sockets (the others fail at once, naming it); a frozen peer sends nothing (the others fail after the
collective timeout). Every error is a TransportError whose message starts with MARK and names the rank
(train/failures.py turns it into the lost-peer line).

TensorFlow-free (numpy, mmap, socket): tested with plain processes.
"""
import mmap
import os
import socket
import struct
import time

import numpy as np

MARK = "shared-memory allreduce"
REGION = "region"
_ALIGN = 64
_WRITTEN, _READ = b"W", b"R"
_MESSAGE = struct.Struct("<cQQ")   # tag, this rank's allreduce count, the array's bytes


class TransportError(RuntimeError):
    """The allreduce cannot go on: a peer is gone or silent, or the shared region cannot be made."""


def _aligned(nbytes):
    return -(-int(nbytes) // _ALIGN) * _ALIGN


def _socket_path(directory, rank):
    return os.path.join(directory, "r%d.sock" % rank)


class SharedMemoryAllreduce:
    """One rank's end. ``reserve(nbytes)`` while the graph is built (the largest array sets the region's
    size); the sockets and the region are set up at the first ``allreduce`` (every rank is running then)."""

    def __init__(self, rank, size, directory, timeout):
        self.rank, self.size = int(rank), int(size)
        self.directory = directory
        self.timeout = float(timeout)
        self.capacity = 0
        self.peers = {}
        self._map = None
        self._count = 0

    def reserve(self, nbytes):
        self.capacity = max(self.capacity, _aligned(nbytes))

    # -- set-up ------------------------------------------------------------------------------------
    def _connect(self):
        """Listen on this rank's socket, connect to every lower rank, accept every higher one."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        mine = _socket_path(self.directory, self.rank)
        if os.path.exists(mine):
            os.unlink(mine)                           # an earlier attempt's
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(mine)
        listener.listen(self.size)
        deadline = time.time() + self.timeout
        try:
            for other in range(self.rank):
                self.peers[other] = self._dial(other, deadline)
            while len(self.peers) < self.size - 1:
                listener.settimeout(max(0.1, deadline - time.time()))
                try:
                    conn, _ = listener.accept()
                except socket.timeout:
                    missing = sorted(set(range(self.rank + 1, self.size)) - set(self.peers))
                    raise TransportError("%s: rank %d never connected within the %gs collective timeout"
                                         % (MARK, missing[0], self.timeout)) from None
                conn.settimeout(self.timeout)
                other = struct.unpack("<i", self._recv_exact(conn, 4, None))[0]
                self.peers[other] = conn
        finally:
            listener.close()
        for conn in self.peers.values():
            conn.settimeout(self.timeout)

    def _dial(self, other, deadline):
        path = _socket_path(self.directory, other)
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(path)
                conn.sendall(struct.pack("<i", self.rank))
                return conn
            except OSError:                           # not listening yet (or an earlier attempt's file)
                conn.close()
                if time.time() > deadline:
                    raise TransportError("%s: rank %d was not reachable at %s within the %gs collective "
                                         "timeout" % (MARK, other, path, self.timeout)) from None
                time.sleep(0.02)

    def _region(self, nbytes):
        """The slots (one per rank) of at least ``nbytes`` each, in the shared file, mapped."""
        per_rank = max(self.capacity, _aligned(nbytes))
        if self._map is None or per_rank * self.size > len(self._map):
            if self._map is not None:
                self._map.close()
            total = per_rank * self.size
            path = os.path.join(self.directory, REGION)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    # reserves the pages now: a full /dev/shm is this error, not a SIGBUS mid-step
                    os.posix_fallocate(fd, 0, total)
                except OSError as error:
                    raise TransportError("%s: cannot reserve %.1f MB in %s (%s); give it more room "
                                         "(docker run --shm-size=1g) or run the launcher with "
                                         "--shm-allreduce off" % (MARK, total / 1e6, self.directory,
                                                                  error.strerror)) from None
                self._map = mmap.mmap(fd, total)
            finally:
                os.close(fd)
            self.capacity = per_rank
        return per_rank

    # -- the collective ------------------------------------------------------------------------------
    def allreduce(self, array, divide=False):
        """The sum (or mean) over ranks of ``array``, the same bytes on every rank."""
        if not self.peers and self.size > 1:
            self._connect()
        flat = np.ascontiguousarray(array).reshape(-1)
        per_rank = self._region(flat.nbytes)
        slots = [np.frombuffer(self._map, flat.dtype, flat.size, rank * per_rank)
                 for rank in range(self.size)]
        slots[self.rank][:] = flat
        self._count += 1
        self._exchange(_WRITTEN, flat.nbytes)
        out = slots[0] + slots[1] if self.size > 1 else slots[0].copy()
        for rank in range(2, self.size):
            np.add(out, slots[rank], out=out)
        del slots                                     # no view may outlive the map (remap, close)
        self._exchange(_READ, flat.nbytes)
        if divide:
            np.true_divide(out, out.dtype.type(self.size), out=out)
        return out.reshape(np.shape(array))

    def _exchange(self, tag, nbytes):
        mine = _MESSAGE.pack(tag, self._count, nbytes)
        for other, conn in self.peers.items():
            try:
                conn.sendall(mine)
            except OSError as error:
                raise TransportError("%s: lost contact with rank %d (%s)"
                                     % (MARK, other, error.strerror or error)) from None
        for other, conn in self.peers.items():
            got = self._recv_exact(conn, _MESSAGE.size, other)
            if got != mine:
                theirs = _MESSAGE.unpack(got)
                raise TransportError("%s: rank %d is at another allreduce (its number %d of %d bytes, this "
                                     "rank's number %d of %d bytes): the ranks' code went different ways"
                                     % (MARK, other, theirs[1], theirs[2], self._count, nbytes))

    def _recv_exact(self, conn, count, other):
        who = "?" if other is None else other
        data = b""
        while len(data) < count:
            try:
                chunk = conn.recv(count - len(data))
            except socket.timeout:
                raise TransportError("%s: rank %s sent nothing within the %gs collective timeout (timed out)"
                                     % (MARK, who, self.timeout)) from None
            except OSError as error:
                raise TransportError("%s: lost contact with rank %s (%s)"
                                     % (MARK, who, error.strerror or error)) from None
            if not chunk:
                raise TransportError("%s: lost contact with rank %s (its process ended: connection closed)"
                                     % (MARK, who))
            data += chunk
        return data

    def close(self):
        for conn in self.peers.values():
            conn.close()
        self.peers = {}
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:     # a view still held by a failed call's traceback: the process ends soon
                pass
            self._map = None
        try:
            os.unlink(_socket_path(self.directory, self.rank))
        except OSError:
            pass
