#!/usr/bin/env python3
"""A local OpenAI-compatible chat completions server for the AI tests: no internet needed.

Usage: fake_openai.py SCRIPT.json PORT_FILE RECORD_FILE

It listens on 127.0.0.1 (a free port, written to PORT_FILE once it accepts connections),
answers POST /v1/chat/completions from a script and records every request as one JSON line
in RECORD_FILE: {"t": seconds, "path", "auth": Authorization header, "marker", "body", "tokens"}.

SCRIPT.json maps a marker to a list of answers. A request belongs to the first marker that
occurs in its body (the test puts it in the campaign name); its answers are given in order and
the last one repeats. An answer is an object with any of:
  status (default 200), headers {name: value}, delay_ms (wait before answering),
  content (a string: a well-formed completion with this message content and usage),
  raw (the body text as is), raw_hex (the body bytes in hex, e.g. invalid UTF-8),
  tokens (usage.total_tokens of a content answer, default 42).
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

script_path, port_file, record_file = sys.argv[1:4]
with open(script_path) as f:
    SCRIPT = json.load(f)
seen = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        text = raw.decode("utf-8", "replace")
        marker = next((m for m in SCRIPT if m in text), None)
        with lock:
            n = seen.get(marker, 0)
            seen[marker] = n + 1
        answers = SCRIPT.get(marker) or [{"status": 404, "raw": "{\"error\":\"no script\"}"}]
        a = answers[min(n, len(answers) - 1)]
        tokens = 0
        if "content" in a:
            tokens = a.get("tokens", 42)
            body = json.dumps({
                "id": "chatcmpl-fake", "object": "chat.completion", "model": "fake-model-1",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": a["content"]}}],
                "usage": {"prompt_tokens": tokens - 2, "completion_tokens": 2,
                          "total_tokens": tokens}}).encode()
        elif "raw_hex" in a:
            body = bytes.fromhex(a["raw_hex"])
        else:
            body = a.get("raw", "{\"error\":{\"message\":\"scripted\"}}").encode()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        rec = {"t": time.time(), "path": self.path, "auth": self.headers.get("Authorization"),
               "marker": marker, "body": parsed, "tokens": tokens}
        with lock:
            with open(record_file, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if a.get("delay_ms"):
            time.sleep(a["delay_ms"] / 1000.0)
        try:
            self.send_response(a.get("status", 200))
            for k, v in a.get("headers", {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
