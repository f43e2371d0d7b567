#!/usr/bin/python3
"""test_match: unit checks of unified_match (the conformance runner's judge).

A runner whose matcher says "match" too easily would pass a broken server, so each rule of
"Evaluating Matches" is checked both ways: a value that must match, and one that must not.
No server needed. Exit status 1 on the first broken rule set (all failures are printed).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bson.int64 import Int64  # noqa: E402
from bson.objectid import ObjectId  # noqa: E402
from bson.decimal128 import Decimal128  # noqa: E402

from unified_match import Unsupported, exact_equal, match, match_list  # noqa: E402

failures = []


def ok(expected, actual, root=True, entities=None):
    r = match(expected, actual, entities, root)
    if r is not None:
        failures.append("should match: %r vs %r: %s" % (expected, actual, r))


def bad(expected, actual, root=True, entities=None):
    r = match(expected, actual, entities, root)
    if r is None:
        failures.append("should NOT match: %r vs %r" % (expected, actual))


def check(cond, what):
    if not cond:
        failures.append(what)


# flexible numerics: int32, int64 and double are one number type; bool and strings are not
ok(1, 1.0)
ok(1, Int64(1))
ok(Int64(5), 5.0)
bad(1, 1.5)
bad(1, True)
bad(True, 1)
bad(0, False)
bad(1, "1")
bad(None, 0)
ok(None, None)
bad(Decimal128("1"), 1)
ok("a", "a")
bad("a", "b")

# root documents may carry extra fields, nested ones may not; key order never matters
ok({"x": 1}, {"x": 1, "y": 1})
bad({"x": 1, "y": 1}, {"x": 1})
bad({"x": {"y": 1}}, {"x": {"y": 1, "z": 1}})
ok({"x": {"y": 1, "z": 2}}, {"x": {"z": 2, "y": 1}})
bad({"x": 1}, {"x": 1, "y": 1}, root=False)
bad({"x": 1}, [1])
# documents inside arrays are nested, not root
bad({"a": [{"x": 1}]}, {"a": [{"x": 1, "y": 2}]})

# arrays: same length, element by element
ok([1, 2, 3], [1, 2, 3])
bad([1, 2, 3], [1, 2, 3, 4])
bad([1, 2, 3], [1, 3, 2])
bad([1], {"0": 1})

# lists of root documents (find/aggregate results) allow extra fields per element
check(match_list([{"x": 1}, {"x": 2}], [{"x": 1, "y": 1}, {"x": 2, "y": 2}]) is None,
      "match_list must allow extra fields in root documents")
check(match_list([{"x": 1}], [{"x": 1}, {"x": 2}]) is not None,
      "match_list must compare lengths")
check(match_list([{"x": 1}], [{"x": 2}]) is not None, "match_list must compare values")
# distinct returns values: documents in it are not root
bad([{"x": 1}], [{"x": 1, "y": 1}], root=True)

# $$exists
ok({"a": {"$$exists": True}}, {"a": None})
bad({"a": {"$$exists": True}}, {"b": 1})
ok({"a": {"$$exists": False}}, {"b": 1})
bad({"a": {"$$exists": False}}, {"a": 1})

# $$type, single and list, "number"; arrays are not looked into
ok({"a": {"$$type": "int"}}, {"a": 5})
bad({"a": {"$$type": "int"}}, {"a": Int64(5)})
ok({"a": {"$$type": ["int", "long"]}}, {"a": Int64(5)})
ok({"a": {"$$type": "long"}}, {"a": 2 ** 40})
bad({"a": {"$$type": "double"}}, {"a": 5})
ok({"a": {"$$type": "number"}}, {"a": 5.5})
bad({"a": {"$$type": "number"}}, {"a": "5"})
ok({"a": {"$$type": "objectId"}}, {"a": ObjectId()})
ok({"a": {"$$type": "array"}}, {"a": [1, "x"]})
bad({"a": {"$$type": "string"}}, {"a": ["x"]})
bad({"a": {"$$type": "bool"}}, {"a": 1})
bad({"a": {"$$type": "string"}}, {})
ok({"$$type": "object"}, {"x": 1})

# $$unsetOrMatches: absent is fine, present must match; at the root too
ok({"a": {"$$unsetOrMatches": 2}}, {})
ok({"a": {"$$unsetOrMatches": 2}}, {"a": 2})
bad({"a": {"$$unsetOrMatches": 2}}, {"a": 3})
ok({"$$unsetOrMatches": {"n": 1}}, {"n": 1, "extra": 0})
bad({"$$unsetOrMatches": {"n": 1}}, {"n": 2})
ok({"insertedIds": {"$$unsetOrMatches": {"0": 1}}}, {"insertedIds": {"0": 1}})
bad({"insertedIds": {"$$unsetOrMatches": {"0": 1}}}, {"insertedIds": {"0": 1, "1": 2}})
# special operators inside nested values
ok({"u": {"$set": {"x": {"$$type": "int"}}}}, {"u": {"$set": {"x": 3}}})
bad({"u": {"$set": {"x": {"$$type": "int"}}}}, {"u": {"$set": {"x": 3, "y": 1}}})

# $$matchesEntity
ok({"_id": {"$$matchesEntity": "oid"}}, {"_id": 7}, entities={"oid": 7})
bad({"_id": {"$$matchesEntity": "oid"}}, {"_id": 8}, entities={"oid": 7})
try:
    match({"_id": {"$$matchesEntity": "nope"}}, {"_id": 1}, {})
    failures.append("$$matchesEntity with an unknown entity must raise")
except Unsupported:
    pass

# $$lte, $$matchesHexBytes
ok({"n": {"$$lte": 5}}, {"n": 5.0})
ok({"n": {"$$lte": 5}}, {"n": 0})
bad({"n": {"$$lte": 5}}, {"n": 5.1})
ok({"b": {"$$matchesHexBytes": "12ab"}}, {"b": b"\x12\xab"})
bad({"b": {"$$matchesHexBytes": "12ab"}}, {"b": b"\x12"})

# exact equality for outcomes: types matter, key order does not
check(exact_equal({"_id": 1, "x": 11}, {"x": 11, "_id": 1}), "exact_equal ignores key order")
check(not exact_equal({"x": 12}, {"x": 12.0}), "exact_equal must see int32 vs double")
check(not exact_equal({"x": 12}, {"x": Int64(12)}), "exact_equal must see int32 vs int64")
check(not exact_equal({"x": 1}, {"x": 1, "y": 2}), "exact_equal must see extra fields")
check(not exact_equal({"x": True}, {"x": 1}), "exact_equal must see bool vs int")
check(exact_equal({"a": [1, {"b": "c"}]}, {"a": [1, {"b": "c"}]}), "exact_equal nested")
check(not exact_equal({"a": [1, 2]}, {"a": [2, 1]}), "exact_equal array order")

if failures:
    for f in failures:
        print("FAIL " + f)
    print("%d matcher check(s) failed" % len(failures))
    sys.exit(1)
print("all matcher checks passed")
