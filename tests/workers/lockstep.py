"""Two ranks in lockstep over TCP, as a collective keeps ranks together: each step rank 0 and rank 1
exchange one byte on rank 0's LAUNCH_PEERS port, then write a metrics record. When one rank is frozen the
other blocks in the exchange; with LAUNCH_COLLECTIVE_TIMEOUT > 0 it gives up after that many seconds,
writes error.json as the trainer does for a collective timeout, and exits 1.
"""
import json
import os
import socket
import sys
import time


def main():
    rank = int(os.environ["RANK_ID"])
    timeout = float(os.environ.get("LAUNCH_COLLECTIVE_TIMEOUT") or 0) or None
    host, port = os.environ["LAUNCH_PEERS"].split(",")[0].rsplit(":", 1)
    metrics = open(os.environ["LAUNCH_METRICS_FILE"], "a")
    with open(os.path.join(os.environ["LAUNCH_RANK_DIR"], "pid"), "w") as handle:
        handle.write(str(os.getpid()))
    if rank == 0:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, int(port)))
        server.listen(1)
        conn, _ = server.accept()
    else:
        deadline = time.time() + 60
        while True:
            try:
                conn = socket.create_connection((host, int(port)), timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
    conn.settimeout(timeout)
    step = 0
    while True:
        try:
            conn.sendall(b"x")
            if not conn.recv(1):
                raise OSError("peer closed the connection")
        except (socket.timeout, OSError) as error:
            message = "collective timed out after %ss waiting for rank %d (%s)" % (timeout, 1 - rank, error)
            with open(os.environ["LAUNCH_ERROR_FILE"], "w") as handle:
                json.dump({"rank": rank, "type": "StepFailure", "message": message, "time": time.time()},
                          handle)
            sys.stderr.write("error: rank %d: %s\n" % (rank, message))
            return 1
        step += 1
        metrics.write(json.dumps({"event": "train", "step": step, "rank": rank, "time": time.time()}) + "\n")
        metrics.flush()
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
