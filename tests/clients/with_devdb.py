#!/usr/bin/python3
"""with_devdb: run one command against a private minicrm-devdb (or an external MongoDB).

Usage: with_devdb.py --devdb PATH [--db NAME] -- COMMAND [ARGS...]

If MINICRM_TEST_MONGO_URI is set, no server is started: the command runs with that URI
(so the same client and conformance tests can judge a real MongoDB). Otherwise a
minicrm-devdb is started on a free 127.0.0.1 port in a private temporary directory, the
command runs with MINICRM_TEST_MONGO_URI=mongodb://127.0.0.1:PORT/ in its environment, and
the server is stopped (SIGTERM, then SIGKILL after 5 s) when the command ends. The server's
log is printed if the command fails, so a devdb crash is visible in the ctest output.

The exit status is the command's, except that it is 1 (with a message) when devdb cannot be
started, dies before the command finishes, or (sanitizer builds) reports an error in its log,
leaks at exit included: a faulty server must fail the test even if the client shrugged.

Used by tests/clients (pymongo, Node.js) and tests/conformance (CRUD spec runner) so every
non-C test starts devdb the same way. Standard library only.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


# Lines a sanitizer build of devdb writes when it finds a bug (including leaks at exit).
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def free_port():
    """A TCP port that was free a moment ago (bind to 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout_s):
    """Poll until 127.0.0.1:port accepts a connection. False on timeout or if proc exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def stop(proc):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Devdb:
    """A private devdb process. start() returns the URI; stop() ends it."""

    def __init__(self, binary):
        self.binary = os.path.abspath(binary)
        self.tmp = None
        self.proc = None
        self.log_path = None
        self.port = None

    def start(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="minicrm-devdb-")
        self.log_path = os.path.join(self.tmp.name, "devdb.log")
        for _ in range(5):
            port = free_port()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(port), "--bind", "127.0.0.1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.tmp.name)
            log.close()
            if wait_port(port, self.proc, 10):
                self.port = port
                return "mongodb://127.0.0.1:%d/" % port
            stop(self.proc)
        raise RuntimeError("minicrm-devdb did not start:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()[-20000:]
        except OSError:
            return "(no log)"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Stop the server and remove its directory. Returns the sanitizer report found in
        its log (ASan/LSan/UBSan, e.g. leaks reported at exit), or None when clean."""
        report = None
        if self.proc is not None:
            stop(self.proc)
        if self.tmp is not None:
            text = self.log()
            for marker in SANITIZER_MARKERS:
                at = text.find(marker)
                if at >= 0:
                    report = text[max(0, at - 200):]
                    break
            self.tmp.cleanup()
            self.tmp = None
        return report


def main(argv):
    devdb = None
    args = argv[1:]
    while args and args[0] != "--":
        if args[0] == "--devdb" and len(args) > 1:
            devdb = args[1]
            args = args[2:]
        else:
            sys.stderr.write("usage: with_devdb.py --devdb PATH -- COMMAND [ARGS...]\n")
            return 2
    if not args or len(args) < 2:
        sys.stderr.write("usage: with_devdb.py --devdb PATH -- COMMAND [ARGS...]\n")
        return 2
    cmd = args[1:]
    env = dict(os.environ)
    if env.get("MINICRM_TEST_MONGO_URI"):
        return subprocess.call(cmd, env=env)
    if not devdb or not os.access(devdb, os.X_OK):
        sys.stderr.write("with_devdb: minicrm-devdb not found at %r\n" % devdb)
        return 1
    server = Devdb(devdb)
    try:
        env["MINICRM_TEST_MONGO_URI"] = server.start()
    except RuntimeError as e:
        sys.stderr.write("with_devdb: %s\n" % e)
        server.stop()
        return 1
    try:
        rc = subprocess.call(cmd, env=env)
        if not server.alive():
            sys.stderr.write("with_devdb: minicrm-devdb died during the test (exit %s)\n"
                             % server.proc.returncode)
            rc = rc or 1
        if rc not in (0, 77):
            sys.stderr.write("---- devdb log (tail) ----\n%s\n" % server.log())
    finally:
        report = server.stop()
    if report:
        sys.stderr.write("with_devdb: minicrm-devdb reported a sanitizer error:\n%s\n" % report)
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
