#!/usr/bin/env python3
"""webhook_receiver: a Standard Webhooks receiver for tests/pipeline/test_webhooks.

Usage: webhook_receiver.py PORT DIR

Every POST to /hook/NAME is verified with this file's own implementation of the
specification's algorithm (hmac + base64 from the Python standard library, written apart
from minicrm's C code on purpose): the signed content is "webhook-id.webhook-timestamp.body",
the key the base64-decoded part of the secret after "whsec_", the header a space-separated
list of "v1,<base64 HMAC-SHA256>"; the timestamp must be within 5 minutes of now.

The secret of endpoint NAME is read from DIR/NAME.secret and its behaviour from DIR/NAME.mode
(read at each request): "200" (the default), any other status ("503", "410"), or "slow:S"
(sleep S seconds, then 200). Each request appends two JSON lines to DIR/received.jsonl: one
when it arrives ("phase": "start") and one when it is answered ("phase": "done", with the
status answered, when the request arrived, whether the signature verified, and the parsed
body).
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
DIR = sys.argv[2]
LOCK = threading.Lock()


def read(name, default):
    try:
        with open(os.path.join(DIR, name)) as f:
            return f.read().strip() or default
    except OSError:
        return default


def verify(secret, msg_id, timestamp, body, header):
    """The Standard Webhooks verification, from the specification."""
    if not secret.startswith("whsec_"):
        return False
    key = base64.b64decode(secret[len("whsec_"):])
    try:
        if abs(time.time() - int(timestamp)) > 300:
            return False
    except ValueError:
        return False
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for sig in header.split(" "):
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


def log(rec):
    line = json.dumps(rec) + "\n"
    with LOCK:
        with open(os.path.join(DIR, "received.jsonl"), "a") as f:
            f.write(line)
            f.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        name = self.path.strip("/").split("/")[-1]
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        hid = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        sig = self.headers.get("webhook-signature", "")
        rec = {"name": name, "id": hid, "ts": ts, "phase": "start", "at": time.time()}
        log(rec)
        mode = read(name + ".mode", "200")
        status = 200
        if mode.startswith("slow:"):
            time.sleep(float(mode[5:]))
        else:
            status = int(mode)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        rec.update(phase="done", status=status, start_at=rec["at"],
                   verified=verify(read(name + ".secret", ""), hid, ts, body, sig),
                   content_type=self.headers.get("content-type", ""),
                   type=(parsed or {}).get("type"), body=parsed, at=time.time())
        log(rec)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
