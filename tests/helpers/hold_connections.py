#!/usr/bin/env python3
"""Opens COUNT idle TCP connections to HOST:PORT and holds them until killed (a test's load of
idle clients; one process holds at most what its open-file limit allows, so a test may start
several). Prints "held COUNT" once they are all open, or "failed at I: why" and exits 1."""
import resource
import socket
import sys
import time


def main() -> int:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    held = []
    for i in range(count):
        try:
            held.append(socket.create_connection((host, port), timeout=10))
        except OSError as e:
            print(f"failed at {i}: {e}", flush=True)
            return 1
    print(f"held {len(held)}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
