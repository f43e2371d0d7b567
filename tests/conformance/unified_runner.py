"""unified_runner: executes unified-format test files (schema 1.x) through pymongo 3.11.

Design
------
One Runner per server URI. It owns the *internal client* (setup of initialData, reading of
outcomes, server version and topology for runOnRequirements). Each test gets a fresh entity
map: client entities are new pymongo.MongoClient objects with a CommandListener when the test
observes events; database and collection entities wrap them; cursor entities come from
createFindCursor. Every test ends by closing its clients, so no state crosses tests.

A test ends in exactly one of three states:
  PASS  every operation, expectEvents and outcome assertion held;
  FAIL  an assertion failed or an unexpected error happened (the message says where, and for
        expectEvents/expectResult shows expected vs actual; the commands the test client sent
        are kept in TestResult.commands for the failure report);
  SKIP  with a reason: runOnRequirements not met, skipReason, a feature out of scope for a
        standalone non-transactional stand-in (sessions, fail points, views, update
        pipelines: see ../shared/mongo-spec/README.md), or an option pymongo 3.11's public
        API cannot send (e.g. `comment` on insert/update/delete: added in pymongo 4.1).

Where a test's *event* expectation depends on a newer driver's command shape (for example
modern drivers send batchSize limit+1), only that one expected field is rewritten to what
pymongo 3.11 sends (DRIVER_EVENT_WAIVERS); everything else (other event fields, results,
outcome) is checked and a mismatch is a FAIL; if all of it holds the test is a SKIP whose
reason names the driver difference. Nothing is counted as passed without being checked.
"""
import copy
import traceback

import pymongo
from bson.son import SON
from pymongo import monitoring
from pymongo.errors import (BulkWriteError, ConnectionFailure, OperationFailure,
                            PyMongoError, WriteError)
from pymongo.operations import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne

from unified_match import Unsupported, exact_equal, match, match_list, show

SUPPORTED_SCHEMA_MAJOR = 1
SUPPORTED_SCHEMA_MINOR = 19

# Commands whose monitoring events the unified format says a runner must not report
# (handshake/monitoring and security-sensitive commands).
IGNORED_COMMANDS = {"hello", "ismaster", "isMaster", "saslStart", "saslContinue", "getnonce",
                    "authenticate", "createUser", "updateUser", "copydbgetnonce",
                    "copydbsaslstart", "copydb", "configureFailPoint"}

# Operations whose pymongo 3.11 method cannot carry a given argument. Keyed by operation name
# (bulkWrite is checked separately). The reason is printed with the skip.
PYMONGO_MISSING_ARGS = {
    ("insertOne", "comment"): "Collection.insert_one has no `comment` option in pymongo 3.11 "
                              "(added in 4.1), so the driver cannot send it",
    ("insertMany", "comment"): "Collection.insert_many has no `comment` option in pymongo 3.11 "
                               "(added in 4.1), so the driver cannot send it",
    ("updateOne", "comment"): "Collection.update_one has no `comment` option in pymongo 3.11 "
                              "(added in 4.1), so the driver cannot send it",
    ("updateMany", "comment"): "Collection.update_many has no `comment` option in pymongo 3.11 "
                               "(added in 4.1), so the driver cannot send it",
    ("replaceOne", "comment"): "Collection.replace_one has no `comment` option in pymongo 3.11 "
                               "(added in 4.1), so the driver cannot send it",
    ("deleteOne", "comment"): "Collection.delete_one has no `comment` option in pymongo 3.11 "
                              "(added in 4.1), so the driver cannot send it",
    ("deleteMany", "comment"): "Collection.delete_many has no `comment` option in pymongo 3.11 "
                               "(added in 4.1), so the driver cannot send it",
    ("bulkWrite", "comment"): "Collection.bulk_write has no `comment` option in pymongo 3.11 "
                              "(added in 4.1), so the driver cannot send it",
    ("bulkWrite", "let"): "`let` needs pymongo 4.1+",
}

# Tests whose expectEvents assert a command shape pymongo 3.11 does not produce. Keyed by
# (file description, test description): (reason, patch). The patch rewrites only the one
# expected field the driver differs on, to what pymongo 3.11 sends; every other event field,
# the results and the outcome are still checked, and a mismatch there fails the test. A test
# that passes this way is reported as SKIP (the literal expectation was not met by the driver).


def _getmore_without_comment(events):
    for e in events:
        cmd = e.get("commandStartedEvent", {}).get("command", {})
        if "getMore" in cmd:
            cmd.pop("comment", None)


def _find_batchsize_is_limit(events):
    events[0]["commandStartedEvent"]["command"]["batchSize"] = 4


_GETMORE_COMMENT = ("pymongo 3.11 does not copy `comment` onto getMore (pymongo 4.x does for "
                    "4.4+ servers); expected getMore checked without `comment`")
DRIVER_EVENT_WAIVERS = {
    ("find", "Find with batchSize equal to limit"):
        ("modern drivers send batchSize limit+1 (5) so the server closes the cursor; pymongo "
         "3.11 sends batchSize 4; the find command was checked with batchSize 4",
         _find_batchsize_is_limit),
    ("find-comment", "find with comment sets comment on getMore"):
        (_GETMORE_COMMENT, _getmore_without_comment),
    ("aggregate", "aggregate with comment sets comment on getMore"):
        (_GETMORE_COMMENT, _getmore_without_comment),
}


class Skip(Exception):
    """The test cannot run here; the message is the reason."""


class Failure(Exception):
    """An assertion of the test failed; the message says which and how."""


def parse_version(s):
    parts = [int(p) for p in str(s).split(".") if p.isdigit()]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts[:3])


# pymongo calls the listener methods `started`, `succeeded` and `failed` by name.
class EventRecorder(monitoring.CommandListener):
    def __init__(self):
        self.events = []  # (kind, event)
        self.enabled = True

    def started(self, event):
        if self.enabled and event.command_name not in IGNORED_COMMANDS:
            self.events.append(("commandStartedEvent", event))

    def succeeded(self, event):
        if self.enabled and event.command_name not in IGNORED_COMMANDS:
            self.events.append(("commandSucceededEvent", event))

    def failed(self, event):
        if self.enabled and event.command_name not in IGNORED_COMMANDS:
            self.events.append(("commandFailedEvent", event))

    def commands(self):
        return [(e.database_name, e.command) for k, e in self.events if k == "commandStartedEvent"]


class ClientEntity:
    def __init__(self, client, recorder, observe):
        self.client = client
        self.recorder = recorder
        self.observe = observe


class CursorEntity:
    def __init__(self, cursor):
        self.cursor = cursor


class TestResult:
    def __init__(self, status, reason="", commands=None):
        self.status = status  # "PASS", "FAIL", "SKIP"
        self.reason = reason
        self.commands = commands or []


def sort_spec(doc):
    """A unified-format sort document as pymongo's list of (key, direction)."""
    if doc is None:
        return None
    return list(doc.items())


class Runner:
    def __init__(self, uri, client_timeout_ms=10000):
        self.uri = uri
        self.timeout_ms = client_timeout_ms
        self.internal = pymongo.MongoClient(uri, serverSelectionTimeoutMS=client_timeout_ms,
                                            socketTimeoutMS=client_timeout_ms, w="majority")
        info = self.internal.admin.command("buildInfo")
        self.server_version = parse_version(info.get("version", "0"))
        hello = self.internal.admin.command("isMaster")
        if hello.get("msg") == "isdbgrid":
            self.topology = "sharded"
        elif hello.get("setName"):
            self.topology = "replicaset"
        else:
            self.topology = "single"

    def close(self):
        self.internal.close()

    def server_alive(self):
        try:
            self.internal.admin.command("ping")
            return True
        except PyMongoError:
            return False

    # ---------------------------------------------------------------- requirements

    def requirement_met(self, req):
        """None when the runOnRequirement holds, else why not."""
        for k, v in req.items():
            if k == "minServerVersion":
                if self.server_version < parse_version(v):
                    return "needs server >= %s" % v
            elif k == "maxServerVersion":
                if self.server_version > parse_version(v):
                    return "needs server <= %s" % v
            elif k == "topologies":
                topo = [t.lower() for t in v]
                if self.topology not in topo:
                    return "needs topology %s" % "/".join(v)
            elif k == "serverless":
                if v == "require":
                    return "needs serverless"
            elif k == "auth":
                if v:
                    return "needs authentication"
            elif k == "csfle":
                if v:
                    return "needs client-side encryption"
            elif k == "serverParameters":
                return "needs server parameters %s" % show(v)
            else:
                return "unknown runOnRequirement %s" % k
        return None

    def requirements_met(self, reqs):
        if not reqs:
            return None
        reasons = []
        for r in reqs:
            why = self.requirement_met(r)
            if why is None:
                return None
            reasons.append(why)
        v = ".".join(str(p) for p in self.server_version)
        return "runOnRequirements not met (server %s %s): %s" % (v, self.topology,
                                                                  " or ".join(reasons))

    # ---------------------------------------------------------------- setup / outcome

    def load_initial_data(self, initial):
        for cd in initial or []:
            db = self.internal.get_database(cd["databaseName"])
            db.drop_collection(cd["collectionName"])
            docs = cd.get("documents", [])
            if "createOptions" in cd:
                cmd = SON([("create", cd["collectionName"])])
                cmd.update(cd["createOptions"])
                db.command(cmd)
            if docs:
                db.get_collection(cd["collectionName"]).insert_many(docs)
            elif "createOptions" not in cd:
                db.command("create", cd["collectionName"])

    def check_outcome(self, outcome):
        for cd in outcome or []:
            coll = self.internal.get_database(cd["databaseName"]).get_collection(cd["collectionName"])
            actual = list(coll.find({}, sort=[("_id", 1)]))
            expected = cd["documents"]
            ok = len(actual) == len(expected) and all(
                exact_equal(e, a) for e, a in zip(expected, actual))
            if not ok:
                raise Failure("outcome of %s.%s: expected %s, got %s" % (
                    cd["databaseName"], cd["collectionName"], show(expected), show(actual)))

    # ---------------------------------------------------------------- entities

    def create_entities(self, specs, entities):
        for spec in specs or []:
            (kind, opts), = spec.items()
            eid = opts["id"]
            if eid in entities:
                raise Failure("duplicate entity id %s" % eid)
            if kind == "client":
                entities[eid] = self.make_client(opts)
            elif kind == "database":
                c = self.entity(entities, opts["client"], ClientEntity)
                kw = {}
                if "databaseOptions" in opts:
                    kw = self.coll_options(opts["databaseOptions"])
                entities[eid] = c.client.get_database(opts["databaseName"], **kw)
            elif kind == "collection":
                db = self.entity(entities, opts["database"], pymongo.database.Database)
                kw = {}
                if "collectionOptions" in opts:
                    kw = self.coll_options(opts["collectionOptions"])
                entities[eid] = db.get_collection(opts["collectionName"], **kw)
            elif kind == "session":
                raise Skip("needs a session entity (sessions are out of scope for devdb)")
            elif kind == "bucket":
                raise Skip("needs a GridFS bucket entity (not in this runner)")
            elif kind == "thread":
                raise Skip("needs a thread entity (not in this runner)")
            elif kind == "clientEncryption":
                raise Skip("needs client-side encryption (out of scope)")
            else:
                raise Failure("unknown entity type %s" % kind)

    def coll_options(self, o):
        from pymongo.read_concern import ReadConcern
        from pymongo.read_preferences import read_pref_mode_from_name, make_read_preference
        from pymongo.write_concern import WriteConcern
        kw = {}
        for k, v in o.items():
            if k == "readConcern":
                kw["read_concern"] = ReadConcern(**v)
            elif k == "writeConcern":
                kw["write_concern"] = WriteConcern(**v)
            elif k == "readPreference":
                kw["read_preference"] = make_read_preference(
                    read_pref_mode_from_name(v["mode"]), None)
            else:
                raise Skip("collection/database option %s not supported by this runner" % k)
        return kw

    def make_client(self, opts):
        observe = opts.get("observeEvents", [])
        for ev in observe:
            if ev not in ("commandStartedEvent", "commandSucceededEvent", "commandFailedEvent"):
                raise Skip("observes %s (only command monitoring is implemented)" % ev)
        if opts.get("storeEventsAsEntities"):
            raise Skip("storeEventsAsEntities is not implemented")
        if opts.get("serverApi"):
            raise Skip("serverApi (versioned API) needs a newer driver than pymongo 3.11")
        recorder = EventRecorder()
        ignore = set(opts.get("ignoreCommandMonitoringEvents", []))
        if ignore:
            orig = recorder.started

            def started(event, _orig=orig):
                if event.command_name not in ignore:
                    _orig(event)
            recorder.started = started
        kw = dict(opts.get("uriOptions", {}))
        kw.setdefault("serverSelectionTimeoutMS", self.timeout_ms)
        kw.setdefault("socketTimeoutMS", self.timeout_ms)
        client = pymongo.MongoClient(self.uri, event_listeners=[recorder], **kw)
        return ClientEntity(client, recorder, observe)

    @staticmethod
    def entity(entities, name, cls):
        if name not in entities:
            raise Failure("entity %s is not defined" % name)
        e = entities[name]
        if cls is not None and not isinstance(e, cls):
            raise Failure("entity %s is a %s, expected %s" % (name, type(e).__name__, cls.__name__))
        return e

    # ---------------------------------------------------------------- operations

    def run_operation(self, op, entities):
        name, obj = op["name"], op["object"]
        args = dict(op.get("arguments", {}))
        if "session" in args:
            raise Skip("operation %s uses a session (out of scope)" % name)
        if obj == "testRunner":
            return self.special_operation(name, args, entities)
        target = self.entity(entities, obj, None)
        if isinstance(target, pymongo.collection.Collection):
            return self.collection_op(target, name, args)
        if isinstance(target, pymongo.database.Database):
            return self.database_op(target, name, args)
        if isinstance(target, CursorEntity):
            return self.cursor_op(target, name, args)
        if isinstance(target, ClientEntity):
            return self.client_op(target, name, args)
        raise Failure("entity %s does not support operations" % obj)

    def special_operation(self, name, args, entities):
        if name in ("failPoint", "targetedFailPoint"):
            raise Skip("uses a fail point (configureFailPoint is a test-only server command; "
                       "fail-point tests are out of scope for devdb per mongo-spec README)")
        if name in ("assertSessionTransactionState", "assertSessionPinned",
                    "assertSessionUnpinned", "assertSessionDirty", "assertSessionNotDirty",
                    "assertSameLsidOnLastTwoCommands", "assertDifferentLsidOnLastTwoCommands"):
            raise Skip("session assertion %s (sessions out of scope)" % name)
        if name == "assertCollectionExists" or name == "assertCollectionNotExists":
            names = self.internal.get_database(args["databaseName"]).list_collection_names()
            exists = args["collectionName"] in names
            if exists != (name == "assertCollectionExists"):
                raise Failure("%s %s.%s: collections are %s" % (
                    name, args["databaseName"], args["collectionName"], names))
            return None
        if name in ("assertIndexExists", "assertIndexNotExists"):
            coll = self.internal.get_database(args["databaseName"])[args["collectionName"]]
            idx = [i["name"] for i in coll.list_indexes()]
            if (args["indexName"] in idx) != (name == "assertIndexExists"):
                raise Failure("%s %s: indexes are %s" % (name, args["indexName"], idx))
            return None
        raise Skip("special operation %s is not implemented by this runner" % name)

    def client_op(self, c, name, args):
        if name == "listDatabases":
            kw = {"filter": args["filter"]} if "filter" in args else {}
            return list(c.client.list_databases(**kw))
        if name == "listDatabaseNames":
            return c.client.list_database_names()
        raise Skip("client operation %s is not implemented by this runner" % name)

    def database_op(self, db, name, args):
        if name == "runCommand":
            cmd = args.pop("command")
            args.pop("commandName", None)
            if args:
                raise Skip("runCommand options %s not implemented" % list(args))
            return db.command(cmd)
        if name == "dropCollection":
            db.drop_collection(args.pop("collection"))
            return None
        if name == "createCollection":
            cname = args.pop("collection")
            if "viewOn" in args:
                raise Skip("creates a view (views are not a devdb feature; mongo-spec README: "
                           "the view test may be skipped by a stand-in)")
            cmd = SON([("create", cname)])
            cmd.update(args)
            db.command(cmd)
            return None
        if name == "listCollections":
            return list(db.list_collections(filter=args.get("filter")))
        if name == "listCollectionNames":
            return db.list_collection_names(filter=args.get("filter"))
        if name == "aggregate":
            raise Skip("database-level aggregate is out of scope (db-aggregate not copied)")
        raise Skip("database operation %s is not implemented by this runner" % name)

    def cursor_op(self, cur, name, args):
        if name in ("iterateUntilDocumentOrError", "iterateOnce"):
            try:
                return next(cur.cursor)
            except StopIteration:
                if name == "iterateOnce":
                    return None
                raise Failure("cursor exhausted before a document was returned")
        if name == "close":
            cur.cursor.close()
            return None
        raise Skip("cursor operation %s is not implemented by this runner" % name)

    def check_args(self, name, args, allowed):
        for a in args:
            if (name, a) in PYMONGO_MISSING_ARGS:
                raise Skip("%s: %s" % (name, PYMONGO_MISSING_ARGS[(name, a)]))
            if a in ("let",):
                raise Skip("%s with `let` needs pymongo 4.1+" % name)
            if a == "collation":
                raise Skip("collation is out of scope for devdb (the *-collation files are "
                           "not copied)")
            if a not in allowed:
                raise Failure("unsupported argument %s for %s" % (a, name))

    def find_kwargs(self, args):
        m = {"filter": "filter", "projection": "projection", "skip": "skip", "limit": "limit",
             "batchSize": "batch_size", "comment": "comment", "hint": "hint",
             "maxTimeMS": "max_time_ms", "allowDiskUse": "allow_disk_use", "min": "min",
             "max": "max", "returnKey": "return_key", "showRecordId": "show_record_id",
             "noCursorTimeout": "no_cursor_timeout"}
        kw = {}
        for k, v in args.items():
            if k == "sort":
                kw["sort"] = sort_spec(v)
            else:
                kw[m[k]] = v
        if isinstance(kw.get("hint"), dict):
            kw["hint"] = list(kw["hint"].items())
        return kw

    FIND_ARGS = {"filter", "projection", "skip", "limit", "batchSize", "comment", "hint",
                 "maxTimeMS", "allowDiskUse", "min", "max", "returnKey", "showRecordId",
                 "noCursorTimeout", "sort"}

    @staticmethod
    def update_result(r):
        out = {"matchedCount": r.matched_count, "modifiedCount": r.modified_count,
               "upsertedCount": 1 if r.upserted_id is not None else 0}
        if r.upserted_id is not None:
            out["upsertedId"] = r.upserted_id
        return out

    @staticmethod
    def bulk_result_from_details(d):
        ups = {str(u["index"]): u["_id"] for u in d.get("upserted", [])}
        return {"insertedCount": d.get("nInserted", 0), "matchedCount": d.get("nMatched", 0),
                "modifiedCount": d.get("nModified", 0), "deletedCount": d.get("nRemoved", 0),
                "upsertedCount": d.get("nUpserted", 0), "upsertedIds": ups}

    @staticmethod
    def hint_arg(h):
        return list(h.items()) if isinstance(h, dict) else h

    def write_model(self, req):
        (kind, a), = req.items()
        a = dict(a)
        if "collation" in a:
            raise Skip("collation is out of scope for devdb")
        if "arrayFilters" in a:
            raise Skip("arrayFilters is out of scope for devdb (*-arrayFilters not copied)")
        if "sort" in a:
            raise Skip("update `sort` needs MongoDB 8.0")
        hint = {"hint": self.hint_arg(a["hint"])} if "hint" in a else {}
        if kind == "insertOne":
            return InsertOne(a["document"])
        if kind == "updateOne":
            return UpdateOne(a["filter"], a["update"], upsert=a.get("upsert", False), **hint)
        if kind == "updateMany":
            return UpdateMany(a["filter"], a["update"], upsert=a.get("upsert", False), **hint)
        if kind == "replaceOne":
            return ReplaceOne(a["filter"], a["replacement"], upsert=a.get("upsert", False), **hint)
        if kind == "deleteOne":
            return DeleteOne(a["filter"], **hint)
        if kind == "deleteMany":
            return DeleteMany(a["filter"], **hint)
        raise Failure("unknown bulk write model %s" % kind)

    def collection_op(self, coll, name, args):
        if name == "find":
            self.check_args(name, args, self.FIND_ARGS)
            return list(coll.find(**self.find_kwargs(args)))
        if name == "findOne":
            self.check_args(name, args, self.FIND_ARGS)
            return coll.find_one(**self.find_kwargs(args))
        if name == "createFindCursor":
            self.check_args(name, args, self.FIND_ARGS)
            return CursorEntity(coll.find(**self.find_kwargs(args)))
        if name == "insertOne":
            self.check_args(name, args, {"document", "bypassDocumentValidation"})
            r = coll.insert_one(args["document"], bypass_document_validation=args.get(
                "bypassDocumentValidation", False))
            return {"insertedId": r.inserted_id}
        if name == "insertMany":
            self.check_args(name, args, {"documents", "ordered", "bypassDocumentValidation"})
            r = coll.insert_many(args["documents"], ordered=args.get("ordered", True),
                                 bypass_document_validation=args.get("bypassDocumentValidation",
                                                                     False))
            return {"insertedIds": {str(i): v for i, v in enumerate(r.inserted_ids)}}
        if name in ("updateOne", "updateMany", "replaceOne"):
            field = "replacement" if name == "replaceOne" else "update"
            self.check_args(name, args, {"filter", field, "upsert", "hint",
                                         "bypassDocumentValidation", "arrayFilters"})
            if "arrayFilters" in args:
                raise Skip("arrayFilters is out of scope for devdb (*-arrayFilters not copied)")
            if name != "replaceOne" and isinstance(args["update"], list):
                raise Skip("update pipeline (aggregation-pipeline update) is out of scope for "
                           "devdb (*-pipeline files not copied)")
            kw = {"upsert": args.get("upsert", False)}
            if "hint" in args:
                kw["hint"] = self.hint_arg(args["hint"])
            if "bypassDocumentValidation" in args:
                kw["bypass_document_validation"] = args["bypassDocumentValidation"]
            fn = {"updateOne": coll.update_one, "updateMany": coll.update_many,
                  "replaceOne": coll.replace_one}[name]
            return self.update_result(fn(args["filter"], args[field], **kw))
        if name in ("deleteOne", "deleteMany"):
            self.check_args(name, args, {"filter", "hint"})
            kw = {"hint": self.hint_arg(args["hint"])} if "hint" in args else {}
            fn = coll.delete_one if name == "deleteOne" else coll.delete_many
            return {"deletedCount": fn(args["filter"], **kw).deleted_count}
        if name == "bulkWrite":
            self.check_args(name, args, {"requests", "ordered", "bypassDocumentValidation"})
            models = [self.write_model(r) for r in args["requests"]]
            r = coll.bulk_write(models, ordered=args.get("ordered", True),
                                bypass_document_validation=args.get("bypassDocumentValidation",
                                                                    False))
            return {"insertedCount": r.inserted_count, "matchedCount": r.matched_count,
                    "modifiedCount": r.modified_count, "deletedCount": r.deleted_count,
                    "upsertedCount": r.upserted_count,
                    "upsertedIds": {str(k): v for k, v in r.upserted_ids.items()}}
        if name == "countDocuments":
            self.check_args(name, args, {"filter", "skip", "limit", "comment", "hint",
                                         "maxTimeMS"})
            f = args.pop("filter")
            if "hint" in args:
                args["hint"] = self.hint_arg(args["hint"])
            return coll.count_documents(f, **args)
        if name == "estimatedDocumentCount":
            self.check_args(name, args, {"comment", "maxTimeMS"})
            return coll.estimated_document_count(**args)
        if name == "count":
            self.check_args(name, args, {"filter", "skip", "limit", "comment", "hint",
                                         "maxTimeMS"})
            f = args.pop("filter", {})
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return coll.count(f, **args)
        if name == "distinct":
            self.check_args(name, args, {"fieldName", "filter", "comment", "hint", "maxTimeMS"})
            key = args.pop("fieldName")
            f = args.pop("filter", None)
            return coll.distinct(key, f, **args)
        if name == "aggregate":
            self.check_args(name, args, {"pipeline", "batchSize", "comment", "hint",
                                         "maxTimeMS", "allowDiskUse", "bypassDocumentValidation"})
            pipeline = args.pop("pipeline")
            for stage in pipeline:
                if "$out" in stage or "$merge" in stage:
                    raise Skip("$out/$merge are out of scope (aggregate-out*/merge* not copied)")
            return list(coll.aggregate(pipeline, **args))
        if name in ("findOneAndUpdate", "findOneAndReplace", "findOneAndDelete"):
            field = {"findOneAndUpdate": "update", "findOneAndReplace": "replacement",
                     "findOneAndDelete": None}[name]
            allowed = {"filter", "projection", "sort", "hint", "comment", "maxTimeMS"}
            if field:
                allowed |= {field, "upsert", "returnDocument", "bypassDocumentValidation"}
            self.check_args(name, args, allowed)
            if name == "findOneAndUpdate" and isinstance(args["update"], list):
                raise Skip("update pipeline (aggregation-pipeline update) is out of scope for "
                           "devdb (mongo-spec README: findOneAndUpdate-comment uses one)")
            kw = {}
            if "projection" in args:
                kw["projection"] = args["projection"]
            if "sort" in args:
                kw["sort"] = sort_spec(args["sort"])
            if "hint" in args:
                kw["hint"] = self.hint_arg(args["hint"])
            if "comment" in args:
                kw["comment"] = args["comment"]
            if "maxTimeMS" in args:
                kw["maxTimeMS"] = args["maxTimeMS"]
            if field:
                kw["upsert"] = args.get("upsert", False)
                if args.get("returnDocument") == "After":
                    kw["return_document"] = pymongo.ReturnDocument.AFTER
                if "bypassDocumentValidation" in args:
                    kw["bypass_document_validation"] = args["bypassDocumentValidation"]
            if name == "findOneAndUpdate":
                return coll.find_one_and_update(args["filter"], args["update"], **kw)
            if name == "findOneAndReplace":
                return coll.find_one_and_replace(args["filter"], args["replacement"], **kw)
            return coll.find_one_and_delete(args["filter"], **kw)
        if name == "drop":
            coll.drop()
            return None
        if name == "createIndex":
            keys = list(args.pop("keys").items())
            return coll.create_index(keys, **args)
        if name == "listIndexes":
            return list(coll.list_indexes())
        if name in ("watch", "createChangeStream"):
            raise Skip("change streams are out of scope for devdb")
        raise Skip("collection operation %s is not implemented by this runner" % name)

    # ---------------------------------------------------------------- errors

    @staticmethod
    def is_client_error(e):
        return not isinstance(e, (OperationFailure, ConnectionFailure))

    def check_error(self, exp, e, entities):
        if exp.get("isError") is not None and not exp["isError"]:
            raise Failure("isError: false is not a valid expectation")
        if "isClientError" in exp:
            if exp["isClientError"] != self.is_client_error(e):
                raise Failure("expected %sa client error, got %s: %s" % (
                    "" if exp["isClientError"] else "not ", type(e).__name__, e))
        if "isTimeoutError" in exp and exp["isTimeoutError"]:
            raise Skip("isTimeoutError (CSOT) needs a newer driver")
        details = getattr(e, "details", None) or {}
        if isinstance(e, BulkWriteError):
            we = details.get("writeErrors") or []
            first = we[0] if we else {}
        else:
            first = details
        if "errorContains" in exp:
            text = str(e)
            if isinstance(e, BulkWriteError):
                text += " " + " ".join(w.get("errmsg", "") for w in details.get("writeErrors", []))
            if exp["errorContains"].lower() not in text.lower():
                raise Failure("error %r does not contain %r" % (text, exp["errorContains"]))
        if "errorCode" in exp:
            code = getattr(e, "code", None)
            if isinstance(e, BulkWriteError):
                code = first.get("code", code)
            if code != exp["errorCode"]:
                raise Failure("expected error code %s, got %s (%s)" % (exp["errorCode"], code, e))
        if "errorCodeName" in exp:
            name = first.get("codeName") if isinstance(first, dict) else None
            if name != exp["errorCodeName"]:
                raise Failure("expected codeName %s, got %s (%s)" % (exp["errorCodeName"], name,
                                                                      show(details)))
        labels = []
        if hasattr(e, "has_error_label"):
            labels = details.get("errorLabels", []) if isinstance(details, dict) else []
        for lab in exp.get("errorLabelsContain", []):
            if lab not in labels:
                raise Failure("error labels %s lack %s" % (labels, lab))
        for lab in exp.get("errorLabelsOmit", []):
            if lab in labels:
                raise Failure("error labels %s contain %s" % (labels, lab))
        if "errorResponse" in exp:
            r = match(exp["errorResponse"], details, entities)
            if r:
                raise Failure("errorResponse: %s" % r)
        if "writeErrors" in exp or "writeConcernErrors" in exp:
            raise Skip("writeErrors/writeConcernErrors expectations are for client bulkWrite")
        if "expectResult" in exp:
            if not isinstance(e, BulkWriteError):
                raise Failure("expectResult on an error needs a BulkWriteError, got %s: %s" % (
                    type(e).__name__, e))
            r = match(exp["expectResult"], self.bulk_result_from_details(details), entities)
            if r:
                raise Failure("expectError.expectResult: %s (server details %s)" % (r, show(details)))

    # ---------------------------------------------------------------- events

    def check_events(self, expected_list, entities):
        for exp in expected_list:
            c = self.entity(entities, exp["client"], ClientEntity)
            etype = exp.get("eventType", "command")
            if etype != "command":
                raise Skip("%s events are not implemented" % etype)
            actual = [(k, ev) for k, ev in c.recorder.events if k in c.observe]
            want = exp["events"]
            if exp.get("ignoreExtraEvents"):
                actual = actual[:len(want)]
            if len(actual) != len(want):
                raise Failure("expected %d event(s) on %s, got %d: %s" % (
                    len(want), exp["client"], len(actual),
                    "; ".join("%s %s" % (k, show(ev.command) if hasattr(ev, "command") else
                                         ev.command_name) for k, ev in actual)))
            for i, (w, (k, ev)) in enumerate(zip(want, actual)):
                (wk, wv), = w.items()
                if wk != k:
                    raise Failure("event %d: expected %s, got %s (%s)" % (i, wk, k, ev.command_name))
                self.match_event(i, wk, wv, ev, entities)

    def match_event(self, i, kind, wv, ev, entities):
        for field, value in wv.items():
            if field == "command":
                r = match(value, ev.command, entities)
                if r:
                    raise Failure("event %d commandStartedEvent.command: %s\n    sent: %s" % (
                        i, r, show(ev.command)))
            elif field == "reply":
                r = match(value, ev.reply, entities)
                if r:
                    raise Failure("event %d reply: %s\n    reply: %s" % (i, r, show(ev.reply)))
            elif field == "commandName":
                if ev.command_name != value:
                    raise Failure("event %d: expected commandName %s, got %s" % (
                        i, value, ev.command_name))
            elif field == "databaseName":
                if getattr(ev, "database_name", None) != value:
                    raise Failure("event %d: expected databaseName %s, got %s" % (
                        i, value, getattr(ev, "database_name", None)))
            elif field in ("hasServiceId", "hasServerConnectionId"):
                continue  # load-balancer / connection-id properties: not on pymongo 3.11 events
            else:
                raise Skip("event property %s is not implemented" % field)

    # ---------------------------------------------------------------- tests

    def run_test(self, fdoc, test):
        """Run one test of a parsed file; returns a TestResult."""
        entities = {}
        try:
            if "skipReason" in test:
                raise Skip(test["skipReason"])
            why = self.requirements_met(fdoc.get("runOnRequirements"))
            if why:
                raise Skip(why)
            why = self.requirements_met(test.get("runOnRequirements"))
            if why:
                raise Skip(why)
            self.precheck(test)
            self.load_initial_data(fdoc.get("initialData"))
            self.create_entities(fdoc.get("createEntities"), entities)
            for op in test["operations"]:
                self.execute(op, entities)
            for c in entities.values():
                if isinstance(c, ClientEntity):
                    c.recorder.enabled = False
            waiver = DRIVER_EVENT_WAIVERS.get((fdoc["description"], test["description"]))
            expect_events = test.get("expectEvents")
            if waiver and expect_events:
                expect_events = copy.deepcopy(expect_events)
                for exp in expect_events:
                    waiver[1](exp["events"])
            if expect_events is not None:
                self.check_events(expect_events, entities)
            self.check_outcome(test.get("outcome"))
            if waiver and expect_events:
                raise Skip("results, outcome and events verified except one driver-shaped "
                           "field: " + waiver[0])
            return TestResult("PASS", commands=self.commands(entities))
        except Skip as s:
            return TestResult("SKIP", str(s))
        except Unsupported as u:
            return TestResult("SKIP", "matcher feature not implemented: %s" % u)
        except Failure as f:
            return TestResult("FAIL", str(f), self.commands(entities))
        except Exception as e:  # unexpected errors fail the test, with a trace to find it
            tb = traceback.format_exc(limit=4)
            return TestResult("FAIL", "unexpected %s: %s\n%s" % (type(e).__name__, e, tb),
                              self.commands(entities))
        finally:
            for e in entities.values():
                if isinstance(e, CursorEntity):
                    try:
                        e.cursor.close()
                    except PyMongoError:
                        pass
            for e in entities.values():
                if isinstance(e, ClientEntity):
                    e.client.close()

    @staticmethod
    def commands(entities):
        out = []
        for e in entities.values():
            if isinstance(e, ClientEntity):
                out.extend(e.recorder.commands())
        return out

    def precheck(self, test):
        """Skip before touching the server when an operation can never run here, so a
        skipped test leaves no half-done state and costs nothing."""
        for op in test["operations"]:
            name, args = op["name"], op.get("arguments", {})
            if op["object"] == "testRunner" and name in ("failPoint", "targetedFailPoint"):
                raise Skip("uses a fail point (configureFailPoint is a test-only server "
                           "command; fail-point tests are out of scope for devdb per "
                           "mongo-spec README)")
            for a in args:
                if (name, a) in PYMONGO_MISSING_ARGS:
                    raise Skip("%s: %s" % (name, PYMONGO_MISSING_ARGS[(name, a)]))
            if "session" in args:
                raise Skip("operation %s uses a session (out of scope)" % name)
            if name == "createCollection" and "viewOn" in args:
                raise Skip("creates a view (views are not a devdb feature; mongo-spec README: "
                           "the view test may be skipped by a stand-in)")
            if name in ("findOneAndUpdate", "updateOne", "updateMany") and \
                    isinstance(args.get("update"), list):
                raise Skip("update pipeline (aggregation-pipeline update) is out of scope for "
                           "devdb (mongo-spec README names it as skippable)")

    def execute(self, op, entities):
        expect_error = op.get("expectError")
        try:
            result = self.run_operation(op, entities)
        except (Skip, Failure, Unsupported):
            raise
        except Exception as e:  # the operation's error, driver or server
            if op.get("ignoreResultAndError"):
                return
            if expect_error is None:
                raise Failure("operation %s failed unexpectedly: %s: %s%s" % (
                    op["name"], type(e).__name__, e,
                    (" details=%s" % show(e.details)) if getattr(e, "details", None) else ""))
            self.check_error(expect_error, e, entities)
            return
        if op.get("ignoreResultAndError"):
            return
        if expect_error is not None:
            raise Failure("operation %s succeeded (result %s) but an error was expected: %s" % (
                op["name"], show(result if not isinstance(result, CursorEntity) else "cursor"),
                show(expect_error)))
        if "expectResult" in op:
            exp = op["expectResult"]
            if isinstance(result, list) and isinstance(exp, list) and op["name"] in (
                    "find", "aggregate", "listCollections", "listDatabases", "listIndexes"):
                r = match_list(exp, result, entities)
            else:
                r = match(exp, result, entities)
            if r:
                raise Failure("operation %s result: %s\n    expected: %s\n    actual:   %s" % (
                    op["name"], r, show(exp),
                    show(result if not isinstance(result, CursorEntity) else "cursor")))
        if "saveResultAsEntity" in op:
            if op["saveResultAsEntity"] in entities:
                raise Failure("entity %s already exists" % op["saveResultAsEntity"])
            entities[op["saveResultAsEntity"]] = result


def schema_supported(version):
    parts = parse_version(version)
    return parts[0] == SUPPORTED_SCHEMA_MAJOR and parts[1] <= SUPPORTED_SCHEMA_MINOR
