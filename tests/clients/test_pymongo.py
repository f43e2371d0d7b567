#!/usr/bin/python3
"""test_pymongo: Debian's pymongo 3.11 against devdb (issue 3, point 9).

Run through with_devdb.py, which starts a private devdb and sets MINICRM_TEST_MONGO_URI (a real
MongoDB URI works too). Checks, each with real outcomes read back from the server:
  - connect: the handshake, buildInfo (4.4.x) and ping;
  - CRUD: insert_one/insert_many, find with filter/sort/projection, update_one ($set/$inc),
    update_many, replace_one, upsert, delete_one/delete_many, count_documents;
  - a cursor over 250 documents with batch_size 7: every document comes back once, in order,
    and the driver needed getMore (seen through command monitoring, not assumed);
  - a duplicate key on _id and on a unique secondary index: DuplicateKeyError, code 11000,
    MongoDB's "E11000 duplicate key error collection: DB.COLL index: NAME dup key: ..." text;
    and an unordered insert_many that reports the duplicate and still inserts the rest.
Prints one line per check; exit 1 if any failed. Must run under /usr/bin/python3.
"""
import os
import re
import sys
import uuid

import pymongo
from pymongo import monitoring
from pymongo.errors import BulkWriteError, DuplicateKeyError

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


class Commands(monitoring.CommandListener):
    def __init__(self):
        self.names = []

    def started(self, event):
        self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def main():
    uri = os.environ.get("MINICRM_TEST_MONGO_URI")
    if not uri:
        print("MINICRM_TEST_MONGO_URI is not set (run through tests/clients/with_devdb.py)")
        return 1
    listener = Commands()
    client = pymongo.MongoClient(uri, event_listeners=[listener], serverSelectionTimeoutMS=10000,
                                 socketTimeoutMS=10000)
    dbname = "pymongo_client_%s" % uuid.uuid4().hex[:8]
    db = client[dbname]
    try:
        for section in (section_connect, section_crud, section_cursor, section_duplicates):
            # Sections are independent (own collections), so one failure hides nothing else.
            try:
                section(client, db, listener)
            except Exception as e:  # an unexpected error fails the section, not the run
                check(False, "%s raised %s: %s" % (section.__name__, type(e).__name__, e))
    finally:
        client.drop_database(dbname)
        client.close()
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all pymongo checks passed")
    return 0


def section_connect(client, db, listener):
    check(client.admin.command("ping").get("ok") == 1, "ping answers ok: 1")
    info = client.server_info()
    check(bool(re.match(r"^\d+\.\d+\.\d+", str(info.get("version", "")))),
          "buildInfo reports a version (got %s)" % info.get("version"))
    hello = client.admin.command("isMaster")
    check(hello.get("ismaster") is True and hello.get("maxWireVersion", 0) >= 9,
          "isMaster: ismaster true, maxWireVersion >= 9 (got %s)" % hello.get("maxWireVersion"))



def section_crud(client, db, listener):
    c = db.people
    r = c.insert_one({"_id": 1, "name": "ada", "age": 36, "tags": ["math"]})
    check(r.inserted_id == 1 and r.acknowledged, "insert_one returns the _id")
    r = c.insert_many([{"_id": 2, "name": "alan", "age": 41}, {"_id": 3, "name": "grace", "age": 85},
                       {"_id": 4, "name": "linus", "age": 20}])
    check(r.inserted_ids == [2, 3, 4], "insert_many returns the _ids in order")
    oid = c.insert_one({"name": "no-id", "age": 1}).inserted_id
    check(c.find_one({"_id": oid})["name"] == "no-id", "a driver-generated ObjectId _id round-trips")
    docs = list(c.find({"age": {"$gte": 30}}, {"name": 1, "_id": 0}).sort("age", -1))
    check(docs == [{"name": "grace"}, {"name": "alan"}, {"name": "ada"}],
          "find with filter, projection and descending sort: %s" % docs)
    r = c.update_one({"_id": 1}, {"$set": {"name": "ada lovelace"}, "$inc": {"age": 1}})
    check((r.matched_count, r.modified_count) == (1, 1), "update_one matches and modifies 1")
    d = c.find_one({"_id": 1})
    check(d["name"] == "ada lovelace" and d["age"] == 37 and isinstance(d["age"], int),
          "update_one applied $set and $inc (int stays int): %s" % d)
    r = c.update_many({"age": {"$lt": 50}}, {"$set": {"young": True}})
    check((r.matched_count, r.modified_count) == (4, 4),
          "update_many over age<50 matched/modified 4/4 (got %d/%d)" % (r.matched_count,
                                                                         r.modified_count))
    r = c.replace_one({"_id": 4}, {"name": "torvalds"})
    check(r.modified_count == 1 and c.find_one({"_id": 4}) == {"_id": 4, "name": "torvalds"},
          "replace_one replaces the whole document and keeps _id")
    r = c.update_one({"_id": 99}, {"$set": {"name": "new"}}, upsert=True)
    check(r.upserted_id == 99 and c.find_one({"_id": 99}) == {"_id": 99, "name": "new"},
          "update_one with upsert inserts {_id: 99, name: new}")
    check(c.count_documents({}) == 6, "count_documents counts 6")
    check(c.count_documents({"young": True}) == 3, "count_documents with a filter counts 3")
    r = c.delete_one({"_id": 99})
    check(r.deleted_count == 1 and c.find_one({"_id": 99}) is None, "delete_one removes _id 99")
    r = c.delete_many({"young": True})
    check(r.deleted_count == 3, "delete_many removes the 3 young ones (got %d)" % r.deleted_count)
    check(sorted(d["_id"] for d in c.find()) == [3, 4], "the remaining _ids are 3 and 4")



def section_cursor(client, db, listener):
    big = db.big
    big.insert_many([{"_id": i, "v": i * 2, "pad": "x" * 20} for i in range(250)])
    listener.names.clear()
    got = [d["_id"] for d in big.find({}, batch_size=7).sort("_id", 1)]
    check(got == list(range(250)), "a batch_size 7 cursor returns all 250 documents in order")
    n_getmore = listener.names.count("getMore")
    check(n_getmore >= 250 // 7, "the cursor was drained with getMore (%d getMore commands)"
          % n_getmore)
    listener.names.clear()
    got = [d["v"] for d in big.find({"_id": {"$gte": 200}}, batch_size=10)]
    check(sorted(got) == [i * 2 for i in range(200, 250)] and listener.names.count("getMore") >= 4,
          "a filtered batch_size 10 cursor returns 50 documents over getMore")
    cur = big.find({}, batch_size=5)
    first = next(cur)
    cur.close()  # killCursors on an open server cursor
    check(first["_id"] in range(250) and client.admin.command("ping")["ok"] == 1,
          "closing a half-read cursor (killCursors) leaves the server healthy")



def section_duplicates(client, db, listener):
    c = db.dups
    c.insert_many([{"_id": 3, "name": "grace"}, {"_id": 4}])
    try:
        c.insert_one({"_id": 3, "name": "dup"})
        check(False, "inserting a duplicate _id raises DuplicateKeyError")
    except DuplicateKeyError as e:
        check(e.code == 11000, "duplicate _id: code 11000 (got %s)" % e.code)
        msg = e.details.get("errmsg", "")
        pat = r"^E11000 duplicate key error collection: %s\.dups index: _id_ dup key: \{ _id: 3 \}$" % re.escape(db.name)
        check(re.match(pat, msg) is not None, "duplicate _id message has MongoDB's shape: %r" % msg)
    u = db.emails  # its own collection: a unique index treats a missing field as null
    u.create_index([("email", 1)], unique=True, name="email_1")
    u.insert_one({"_id": 10, "email": "a@x.org"})
    try:
        u.insert_one({"_id": 11, "email": "a@x.org"})
        check(False, "a duplicate on a unique index raises DuplicateKeyError")
    except DuplicateKeyError as e:
        msg = e.details.get("errmsg", "")
        check(e.code == 11000 and "index: email_1 dup key: { email: \"a@x.org\" }" in msg,
              "unique secondary index: code 11000 and message names index and key: %r" % msg)
    check([d["_id"] for d in u.find({"email": "a@x.org"})] == [10], "the duplicate was not stored")
    try:
        c.insert_many([{"_id": 20}, {"_id": 3}, {"_id": 21}], ordered=False)
        check(False, "unordered insert_many with a duplicate raises BulkWriteError")
    except BulkWriteError as e:
        we = e.details.get("writeErrors", [])
        check(len(we) == 1 and we[0]["index"] == 1 and we[0]["code"] == 11000,
              "unordered insert_many reports one writeError at index 1 code 11000: %s" % we)
        check(e.details.get("nInserted") == 2, "and inserts the other two (nInserted %s)"
              % e.details.get("nInserted"))
    check(sorted(d["_id"] for d in c.find({"_id": {"$in": [20, 21]}})) == [20, 21],
          "documents 20 and 21 are stored")


if __name__ == "__main__":
    sys.exit(main())
