#!/usr/bin/python3
"""run_crud: MongoDB's unified-format CRUD specification tests against devdb, through pymongo.

Usage: run_crud.py [--spec-dir DIR] [--uri URI | --devdb PATH] [--report FILE] [-k SUBSTR] [-v]

Where the tests come from: DIR, else $MINICRM_MONGO_SPEC_DIR, else ../shared/mongo-spec next
to the repository (the files are read from there and never copied into the repo: see that
folder's README for their origin and license). Their `crud/*.json` files are run.
When the folder is absent the suite prints why and exits 77 (ctest's SKIP_RETURN_CODE: shown
as skipped, never as passed).

Which server: --uri, else $MINICRM_TEST_MONGO_URI (a real MongoDB works too), else a private
minicrm-devdb started from --devdb on a free port and stopped at the end.

Output: one line per test (PASS / FAIL with the reason / SKIP with the reason), then exactly
`N passed, N failed, N skipped` as the last line. Exit status 1 if any test failed.
--report FILE writes a Markdown list of the failures with the commands the driver sent.

Must run under /usr/bin/python3 (Debian's python3-pymongo 3.11).
"""
import argparse
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "clients"))

SKIP_EXIT = 77  # ctest SKIP_RETURN_CODE: the spec folder is absent


def default_spec_dir():
    env = os.environ.get("MINICRM_MONGO_SPEC_DIR")
    if env:
        return env
    repo = os.path.normpath(os.path.join(HERE, "..", ".."))
    return os.path.normpath(os.path.join(repo, "..", "shared", "mongo-spec"))


def write_report(path, failures, header):
    from unified_match import show
    with open(path, "w") as f:
        f.write("# devdb CRUD conformance failures\n\n%s\n\n" % header)
        if not failures:
            f.write("No failures.\n")
        for fname, desc, res in failures:
            f.write("## %s: %s\n\n" % (fname, desc))
            f.write("```\n%s\n```\n\n" % res.reason.strip())
            if res.commands:
                f.write("Commands the driver sent:\n\n```\n")
                for db, cmd in res.commands:
                    f.write("%s: %s\n" % (db, show(cmd)))
                f.write("```\n\n")


def main():
    ap = argparse.ArgumentParser(description="unified-format CRUD spec tests against devdb")
    ap.add_argument("--spec-dir", default=None)
    ap.add_argument("--uri", default=None)
    ap.add_argument("--devdb", default=None, help="minicrm-devdb binary to start")
    ap.add_argument("--report", default=None, help="write failures as Markdown here")
    ap.add_argument("-k", dest="only", default=None, help="run tests whose file or name "
                    "contains this text")
    ap.add_argument("-v", dest="verbose", action="store_true", help="print PASS lines too")
    opts = ap.parse_args()

    spec_dir = opts.spec_dir or default_spec_dir()
    crud_dir = os.path.join(spec_dir, "crud")
    files = sorted(glob.glob(os.path.join(crud_dir, "*.json")))
    if not files:
        print("mongo-spec not found at %s: skipping CRUD conformance suite" % spec_dir)
        return SKIP_EXIT

    try:
        import pymongo  # noqa: F401
        from bson import json_util
    except ImportError:
        print("pymongo is not importable from %s: run under /usr/bin/python3 with Debian's "
              "python3-pymongo (scripts/install-deps.sh)" % sys.executable)
        return 1
    from unified_runner import Runner, schema_supported, TestResult

    uri = opts.uri or os.environ.get("MINICRM_TEST_MONGO_URI")
    server = None
    if not uri:
        if not opts.devdb:
            print("no server: give --uri, MINICRM_TEST_MONGO_URI or --devdb")
            return 1
        from with_devdb import Devdb
        server = Devdb(opts.devdb)
        try:
            uri = server.start()
        except RuntimeError as e:
            print("run_crud: %s" % e)
            server.stop()
            return 1

    t0 = time.monotonic()
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    failures = []
    runner = None
    try:
        runner = Runner(uri)
        server_down = False
        for path in files:
            fname = os.path.basename(path)
            with open(path) as fh:
                fdoc = json_util.loads(fh.read())
            for test in fdoc["tests"]:
                desc = test["description"]
                if opts.only and opts.only not in fname and opts.only not in desc:
                    continue
                if not schema_supported(fdoc.get("schemaVersion", "0")):
                    res = TestResult("FAIL", "unsupported schemaVersion %s" %
                                     fdoc.get("schemaVersion"))
                elif server_down:
                    res = TestResult("FAIL", "server unreachable after an earlier test")
                else:
                    res = runner.run_test(fdoc, test)
                    if res.status == "FAIL" and not runner.server_alive():
                        server_down = True
                        res.reason += "\n    (the server stopped answering after this test)"
                counts[res.status] += 1
                if res.status == "FAIL":
                    failures.append((fname, desc, res))
                if res.status != "PASS" or opts.verbose:
                    print("%s %s: %s%s" % (res.status, fname, desc,
                                           (": " + res.reason) if res.reason else ""))
                sys.stdout.flush()
    except Exception as e:
        print("run_crud: cannot run the suite: %s: %s" % (type(e).__name__, e))
        counts["FAIL"] += 1
    finally:
        if runner is not None:
            runner.close()
        if server is not None:
            alive = server.alive()
            if not alive:
                print("run_crud: minicrm-devdb died during the run; log tail:\n%s" % server.log())
                counts["FAIL"] += 0 if failures else 1
            report = server.stop()
            if report:
                print("run_crud: minicrm-devdb reported a sanitizer error:\n%s" % report)
                counts["FAIL"] += 1

    elapsed = time.monotonic() - t0
    if opts.report:
        header = "Generated by tests/conformance/run_crud.py against %s (%s): %d passed, " \
                 "%d failed, %d skipped in %.1f s." % (
                     "devdb" if server else uri, os.path.basename(spec_dir), counts["PASS"],
                     counts["FAIL"], counts["SKIP"], elapsed)
        write_report(opts.report, failures, header)
    print("(%.1f s, spec files from %s)" % (elapsed, crud_dir))
    print("%d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"]))
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
