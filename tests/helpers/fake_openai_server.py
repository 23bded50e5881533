#!/usr/bin/env python3
"""A fake OpenAI-compatible completions server for eep-bench's tests (loopback only).

Streams fixed tokens with a delay between them and records what it saw, so a test can check
that eep-bench's counts agree with the server's. Every completion request is numbered in arrival
order from 1; fault injection picks requests by that number:
  --fail-every N    every Nth request gets HTTP 500 with an OpenAI error body
  --break-every N   every Nth streamed request is cut after two tokens (no [DONE])
  --stall-every N   every Nth request never answers (for --timeout)
Stats (JSON) are rewritten to --stats-file after every finished request.

Run: fake_openai_server.py --port-file F --stats-file S [--token-delay-ms 2] [--no-token-ids]
"""
import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stats:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.num_requests = 0       # completion requests received
        self.num_ok = 0             # answered completely (200, [DONE] or full body)
        self.num_failed = 0         # answered with an injected fault
        self.num_streamed = 0
        self.prompt_tokens = 0      # of the requests answered completely
        self.completion_tokens = 0  # of the requests answered completely
        self.running = 0
        self.max_running = 0
        self.requests = []          # [prompt_len, max_tokens, stream, ok] per finished request
        self.bad_requests = []      # bodies we refused as malformed

    def begin(self):
        with self.lock:
            self.num_requests += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            return self.num_requests

    def end(self, prompt_len, max_tokens, stream, ok):
        with self.lock:
            self.running -= 1
            if ok:
                self.num_ok += 1
                self.prompt_tokens += prompt_len
                self.completion_tokens += max_tokens
            else:
                self.num_failed += 1
            if stream:
                self.num_streamed += 1
            self.requests.append([prompt_len, max_tokens, stream, ok])
            self.write()

    def write(self):
        snapshot = {k: v for k, v in self.__dict__.items() if k not in ("lock", "path")}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snapshot, f)
        os.replace(tmp, self.path)


def make_handler(args, stats):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *unused):
            pass

        def send_json(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error_body(self, status, message):
            self.send_json(status, {"error": {"message": message, "type": "BadRequestError",
                                              "param": None, "code": status}})

        def do_GET(self):
            if self.path == "/v1/models":
                self.send_json(200, {"object": "list", "data": [
                    {"id": args.model, "object": "model", "owned_by": "fake",
                     "max_model_len": 4096, "vocab_size": args.vocab_size}]})
            else:
                self.error_body(404, "no such path")

        def chunk(self, payload):
            event = ("data: " + payload + "\n\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path != "/v1/completions":
                self.error_body(404, "no such path")
                return
            if args.api_key and self.headers.get("Authorization") != "Bearer " + args.api_key:
                self.error_body(401, "bad api key")
                return
            try:
                body = json.loads(raw)
                prompt = body["prompt"]
                max_tokens = int(body["max_tokens"])
                stream = bool(body.get("stream", False))
                assert isinstance(prompt, list) and all(isinstance(t, int) for t in prompt)
                assert all(0 <= t < args.vocab_size for t in prompt)
                assert body["model"] == args.model and body["ignore_eos"] is True
                if stream:
                    assert body["stream_options"] == {"include_usage": True}
            except Exception as e:  # noqa: BLE001 - any malformed body is a 400 and is recorded
                with stats.lock:
                    stats.bad_requests.append(raw.decode(errors="replace")[:200])
                self.error_body(400, "malformed request: %r" % (e,))
                return

            number = stats.begin()
            prompt_len = len(prompt)
            if args.stall_every and number % args.stall_every == 0:
                time.sleep(3600)
            if args.fail_every and number % args.fail_every == 0:
                self.error_body(500, "injected failure %d" % number)
                stats.end(prompt_len, max_tokens, stream, False)
                return
            tokens = [(sum(prompt) + i) % args.vocab_size for i in range(max_tokens)]
            usage = {"prompt_tokens": prompt_len, "completion_tokens": max_tokens,
                     "total_tokens": prompt_len + max_tokens}
            if not stream:
                time.sleep(args.token_delay_ms / 1000.0 * max_tokens)
                choice = {"index": 0, "text": "".join(" t%d" % t for t in tokens),
                          "finish_reason": "length"}
                if not args.no_token_ids:
                    choice["token_ids"] = tokens
                self.send_json(200, {"id": "cmpl-%d" % number, "object": "text_completion",
                                     "model": args.model, "choices": [choice], "usage": usage})
                stats.end(prompt_len, max_tokens, stream, True)
                return

            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            broken = args.break_every and number % args.break_every == 0
            for i, token in enumerate(tokens):
                time.sleep(args.token_delay_ms / 1000.0)
                if broken and i == 2:
                    self.wfile.flush()
                    self.close_connection = True
                    stats.end(prompt_len, max_tokens, stream, False)
                    return
                last = i == len(tokens) - 1
                choice = {"index": 0, "text": " t%d" % token,
                          "finish_reason": "length" if last else None}
                if not args.no_token_ids:
                    choice["token_ids"] = [token]
                self.chunk(json.dumps({"id": "cmpl-%d" % number, "object": "text_completion",
                                       "model": args.model, "choices": [choice]}))
            self.chunk(json.dumps({"id": "cmpl-%d" % number, "object": "text_completion",
                                   "model": args.model, "choices": [], "usage": usage}))
            self.chunk("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            stats.end(prompt_len, max_tokens, stream, True)

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--stats-file", required=True)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--token-delay-ms", type=float, default=2.0)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--break-every", type=int, default=0)
    parser.add_argument("--stall-every", type=int, default=0)
    parser.add_argument("--no-token-ids", action="store_true")
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()

    stats = Stats(args.stats_file)
    stats.write()
    ThreadingHTTPServer.request_queue_size = 1024  # listen backlog: 512 clients connect at once
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, stats))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
