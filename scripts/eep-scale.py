#!/usr/bin/env python3
"""Drives one scale through the coordinator's admin socket without eepctl.

Speaks the admin protocol of docs/protocol.md as eepctl does (common/src/admin_client.cpp): a
ZeroMQ DEALER socket with CURVE (the operators' key and the coordinator's public key from the
fleet's keys directory, docs/security.md), one JSON object per single-frame message, `seq` to
match replies, `token` when a token file is given. Sends `scale`, then polls `status` until `scale.target_generation`
is the one accepted and `scale.state` is succeeded or failed, and prints the stage timeline.

Usage: scripts/eep-scale.py --admin tcp://127.0.0.1:5710 --dp N [--token-file F] [--wait-s S]
         [--keys-dir D] [--key-file F] [--coordinator-key-file F] [--insecure-plaintext]
Exit status: 0 succeeded (or already at that size), 1 failed (rolled back), 2 refused or any
other error (no answer, bad arguments, no outcome within --wait-s).
"""
import argparse
import json
import os
import re
import sys
import time

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
PROTOCOL_VERSION = 1
# As eepctl: the coordinator answers from its event loop within milliseconds; 5 s means it is
# gone or stuck.
REPLY_TIMEOUT_S = 5.0
STATUS_POLL_INTERVAL_S = 0.1


class AdminError(Exception):
    pass


def read_key(path, name):
    """The Z85 value of `name = "..."` in a key file of eep-keygen's (common/curve_keys.h)."""
    try:
        with open(path) as file:
            text = file.read()
    except OSError as e:
        raise AdminError(f"cannot read key file: {e}")
    match = re.search(r'^\s*' + re.escape(name) + r'\s*=\s*"([^"]{40})"', text, re.MULTILINE)
    if not match:
        raise AdminError(f"key file {path} has no 40-character {name}")
    return match.group(1)


def client_keys(args):
    """(our public, our secret, the coordinator's public) key, or None with --insecure-plaintext."""
    if args.insecure_plaintext:
        return None
    keys_dir = args.keys_dir or os.environ.get("EEP_KEYS_DIR") or os.path.join(
        os.environ.get("HOME", "."), ".elastic-ep", "keys")
    own = args.key_file or os.path.join(keys_dir, "admin.key")
    server = args.coordinator_key_file or os.path.join(keys_dir, "coordinator.pub")
    return (read_key(own, "public-key"), read_key(own, "secret-key"),
            read_key(server, "public-key"))


class AdminClient:
    def __init__(self, zmq, endpoint, token, keys):
        self.zmq = zmq
        self.endpoint = endpoint
        self.token = token
        self.next_seq = 1
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if keys:
            public, secret, server = keys
            self.socket.curve_publickey = public.encode()
            self.socket.curve_secretkey = secret.encode()
            self.socket.curve_serverkey = server.encode()
        self.socket.connect(endpoint)

    def close(self):
        self.socket.close(0)
        self.context.term()

    def call(self, cmd, **fields):
        """Sends one request; returns the reply object, or raises AdminError."""
        seq = self.next_seq
        self.next_seq += 1
        request = {"v": PROTOCOL_VERSION, "cmd": cmd, "seq": seq, **fields}
        if self.token:
            request["token"] = self.token
        self.socket.send(json.dumps(request).encode())
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self.socket.poll(left_ms, self.zmq.POLLIN):
                raise AdminError(
                    f"no answer from the coordinator at {self.endpoint} within "
                    f"{REPLY_TIMEOUT_S:.0f} s; is eep-coordinator running?")
            frames = self.socket.recv_multipart()
            try:
                reply = json.loads(frames[-1])
            except ValueError:
                raise AdminError("the coordinator sent a reply that is not JSON")
            if not isinstance(reply, dict):
                raise AdminError("the coordinator sent a reply that is not a JSON object")
            # A reply to an earlier request that timed out is not ours (seq 0: a reply to a
            # request the coordinator could not read, which has no seq).
            if reply.get("seq", 0) not in (seq, 0):
                continue
            if not reply.get("ok", False):
                error = reply.get("error", {})
                raise AdminError(f"{error.get('code', 'error')}: {error.get('message', reply)}")
            return reply


def print_timeline(scale):
    for stage in scale.get("timeline", []):
        print(f"  {stage['stage']:<16}{stage['seconds']:8.3f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="tcp://127.0.0.1:5710",
                        help="coordinator admin endpoint (default %(default)s)")
    parser.add_argument("--dp", type=int, required=True, help="new number of ranks (>= 1)")
    parser.add_argument("--token-file", help="admin token file")
    parser.add_argument("--keys-dir", help="the fleet's keys directory (default $EEP_KEYS_DIR, "
                        "else ~/.elastic-ep/keys): admin.key and coordinator.pub")
    parser.add_argument("--key-file", help="our key pair (default admin.key in --keys-dir)")
    parser.add_argument("--coordinator-key-file",
                        help="the coordinator's public key (default coordinator.pub in --keys-dir)")
    parser.add_argument("--insecure-plaintext", action="store_true",
                        help="no CURVE (a coordinator started with --insecure-plaintext)")
    parser.add_argument("--wait-s", type=float, default=120,
                        help="how long to wait for the outcome (default %(default)s)")
    args = parser.parse_args()  # bad arguments exit with status 2, as argparse does
    if args.dp < 1:
        parser.error(f"--dp must be >= 1, not {args.dp}")
    if not args.wait_s > 0:
        parser.error(f"--wait-s must be > 0, not {args.wait_s}")

    try:
        import zmq
    except ImportError:
        print("eep-scale: pyzmq is missing for this python3 (Debian: python3-zmq, installed by "
              "scripts/install-deps.sh)", file=sys.stderr)
        return EXIT_ERROR

    token = ""
    if args.token_file:
        try:
            with open(args.token_file) as file:
                token = file.read().rstrip()
        except OSError as e:
            print(f"eep-scale: cannot read the admin token file: {e}", file=sys.stderr)
            return EXIT_ERROR
        if not token:
            print(f"eep-scale: the admin token file {args.token_file} is empty", file=sys.stderr)
            return EXIT_ERROR

    try:
        keys = client_keys(args)
    except AdminError as e:
        print(f"eep-scale: {e}", file=sys.stderr)
        return EXIT_ERROR
    client = AdminClient(zmq, args.admin, token, keys)
    try:
        return drive_scale(client, args.dp, args.wait_s)
    except AdminError as e:
        print(f"eep-scale: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        client.close()


def drive_scale(client, dp, wait_s):
    reply = client.call("scale", dp=dp)
    if not reply.get("changed", False):
        print(reply.get("message", "nothing to do"))
        return EXIT_SUCCEEDED
    target = reply["scale"]["target_generation"]
    print(f"scale to dp {dp} accepted (generation {target})", flush=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(STATUS_POLL_INTERVAL_S)
        scale = client.call("status")["scale"]
        if scale["target_generation"] > target:
            raise AdminError(f"another scale (generation {scale['target_generation']}) replaced "
                             "this one before its outcome was seen; see `eepctl status`")
        if scale["target_generation"] != target or scale["state"] == "running":
            continue
        if scale["state"] == "succeeded":
            print(f"scaled {scale['from_dp']} -> {scale['to_dp']} in {scale['elapsed_s']:.2f} s "
                  f"(generation {target})")
            print_timeline(scale)
            return EXIT_SUCCEEDED
        print(f"scale {scale['from_dp']} -> {scale['to_dp']} FAILED after "
              f"{scale['elapsed_s']:.2f} s: {scale.get('reason', '')}")
        print_timeline(scale)
        return EXIT_FAILED
    raise AdminError(f"the scale did not finish within {wait_s:g} s; see `eepctl status`")


if __name__ == "__main__":
    sys.exit(main())
