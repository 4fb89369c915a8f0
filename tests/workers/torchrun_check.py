"""A worker that needs what torchrun gives (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK,
LOCAL_WORLD_SIZE, GROUP_RANK): it checks them against the launcher's own variables and meets the other ranks
over TCP at MASTER_ADDR:MASTER_PORT as torch.distributed's env:// store does (rank 0 serves, the others
connect and say their rank; rank 0 answers every rank with the list of all). Writes torchrun.json."""
import json
import os
import socket
import sys
import time


def main():
    env = os.environ
    world, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
    assert (world, rank) == (int(env["RANK_SIZE"]), int(env["RANK_ID"])), "RANK/WORLD_SIZE disagree"
    assert int(env["LOCAL_RANK"]) == int(env["LAUNCH_LOCAL_RANK"])
    assert int(env["LOCAL_WORLD_SIZE"]) == int(env["LAUNCH_LOCAL_SIZE"])
    assert int(env["GROUP_RANK"]) == int(env["LAUNCH_NODE_RANK"])
    addr, port = env["MASTER_ADDR"], int(env["MASTER_PORT"])
    if rank == 0:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((addr, port))
        server.listen(world)
        server.settimeout(60)
        conns = []
        seen = [0]
        while len(seen) < world:
            conn, _ = server.accept()
            seen.append(int(conn.makefile().readline()))
            conns.append(conn)
        answer = (json.dumps(sorted(seen)) + "\n").encode()
        for conn in conns:
            conn.sendall(answer)
            conn.close()
        members = sorted(seen)
    else:
        deadline = time.time() + 60
        while True:
            try:
                conn = socket.create_connection((addr, port), timeout=60)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        conn.sendall(("%d\n" % rank).encode())
        members = json.loads(conn.makefile().readline())
    result = {name: env[name] for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                                            "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE",
                                            "TORCHELASTIC_RESTART_COUNT")}
    result["members"] = members
    with open(os.path.join(env["LAUNCH_RANK_DIR"], "torchrun.json"), "w") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
