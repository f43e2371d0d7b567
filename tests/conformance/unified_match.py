"""unified_match: "Evaluating Matches" of MongoDB's unified test format, for pymongo values.

match(expected, actual, entities, root=True) returns None when `actual` matches `expected`, or
a one-line reason (with the path of the first difference) when it does not. The rules are
those of the unified test format specification (mongodb/specifications,
source/unified-test-format/unified-test-format.md, section "Evaluating Matches"):

- documents: every expected key must match; a root-level actual document may carry extra
  keys, a nested one may not; key order never matters;
- arrays: same length, element by element (array elements are not root documents unless the
  caller says so: results of find/aggregate are lists of root documents, see match_list);
- scalars: same BSON type and value, except that int32, int64 and double are one "number"
  type compared by value (flexible numerics; Decimal128 is not part of that);
- special operators in a document whose first and only key starts with "$$":
  $$exists, $$type, $$unsetOrMatches, $$matchesEntity, $$matchesHexBytes, $$lte,
  $$matchAsDocument, $$matchAsRoot; $$sessionLsid raises Unsupported (no session entities).

exact_equal(a, b) is the stricter comparison used for test outcomes (collection contents
"MUST match exactly" apart from key order): BSON types must be identical, so a server that
turns an int32 into a double is caught.

Pure functions, no I/O; bool is never a number here (Python's True == 1 is not BSON's).
"""
import datetime
import re

from bson import json_util
from bson.binary import Binary
from bson.code import Code
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp

try:
    import uuid
except ImportError:  # pragma: no cover
    uuid = None


class Unsupported(Exception):
    """The expectation uses a feature this runner deliberately does not implement."""


INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def bson_type(v):
    """The $type alias of a decoded BSON value (pymongo 3.11 decoding)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, Int64):
        return "long"
    if isinstance(v, int):
        return "int" if INT32_MIN <= v <= INT32_MAX else "long"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, (Binary, bytes)) or (uuid is not None and isinstance(v, uuid.UUID)):
        return "binData"
    if isinstance(v, ObjectId):
        return "objectId"
    if isinstance(v, datetime.datetime):
        return "date"
    if isinstance(v, (Regex, type(re.compile("")))):
        return "regex"
    if isinstance(v, Code):
        return "javascriptWithScope" if v.scope is not None else "javascript"
    if isinstance(v, Timestamp):
        return "timestamp"
    if isinstance(v, Decimal128):
        return "decimal"
    if isinstance(v, MinKey):
        return "minKey"
    if isinstance(v, MaxKey):
        return "maxKey"
    if isinstance(v, DBRef):
        return "dbPointer"
    return type(v).__name__


NUMERIC = ("int", "long", "double")


def is_number(v):
    return bson_type(v) in NUMERIC


def is_operator(v):
    """True when v is a document whose first and only key starts with "$$"."""
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)).startswith("$$")


def show(v):
    """Short extended-JSON rendering for messages."""
    try:
        s = json_util.dumps(v)
    except Exception:  # values the encoder does not know: best effort
        s = repr(v)
    return s if len(s) <= 300 else s[:297] + "..."


def _type_ok(actual, names):
    if isinstance(names, str):
        names = [names]
    t = bson_type(actual)
    for n in names:
        if n == t or (n == "number" and t in NUMERIC):
            return True
    return False


def _operator(op, arg, actual, present, entities, path, root):
    """Apply a special operator. `present` is False when the key is absent from the parent
    document (actual is then None). Returns None or a reason."""
    if op == "$$exists":
        if bool(arg) != present:
            return "%s: expected field to %s" % (path, "exist" if arg else "be absent")
        return None
    if op == "$$unsetOrMatches":
        if not present:
            return None
        return _match(arg, actual, entities, path, root)
    if not present:
        return "%s: field is missing (expected %s)" % (path, show({op: arg}))
    if op == "$$type":
        if not _type_ok(actual, arg):
            return "%s: expected type %s, got %s (%s)" % (path, arg, bson_type(actual), show(actual))
        return None
    if op == "$$matchesEntity":
        if entities is None or arg not in entities:
            raise Unsupported("$$matchesEntity names unknown entity %r" % arg)
        return _match(entities[arg], actual, entities, path, root)
    if op == "$$matchesHexBytes":
        if not isinstance(arg, str) or len(arg) % 2 or re.search("[^0-9a-fA-F]", arg):
            raise Unsupported("malformed $$matchesHexBytes %r" % arg)
        want = bytes.fromhex(arg)
        got = bytes(actual) if isinstance(actual, (bytes, bytearray, Binary)) else None
        if got is None and isinstance(actual, str):
            got = actual.encode("latin-1", "replace")
        if got != want:
            return "%s: expected bytes %s, got %s" % (path, arg, show(actual))
        return None
    if op == "$$lte":
        if not is_number(actual) or not is_number(arg):
            return "%s: $$lte needs numbers, got %s" % (path, show(actual))
        if not actual <= arg:
            return "%s: expected <= %s, got %s" % (path, show(arg), show(actual))
        return None
    if op == "$$matchAsDocument":
        if not isinstance(actual, str):
            return "%s: $$matchAsDocument needs a string, got %s" % (path, bson_type(actual))
        try:
            doc = json_util.loads(actual)
        except ValueError as e:
            return "%s: not extended JSON: %s" % (path, e)
        return _match(arg, doc, entities, path, False)
    if op == "$$matchAsRoot":
        return _match(arg, actual, entities, path, True)
    if op == "$$sessionLsid":
        raise Unsupported("$$sessionLsid needs session entities")
    raise Unsupported("unknown special operator %s" % op)


def _match(expected, actual, entities, path, root):
    if isinstance(expected, dict):
        if is_operator(expected):
            op, arg = next(iter(expected.items()))
            return _operator(op, arg, actual, True, entities, path, root)
        if not isinstance(actual, dict):
            return "%s: expected a document %s, got %s %s" % (
                path, show(expected), bson_type(actual), show(actual))
        for k, v in expected.items():
            sub = "%s.%s" % (path, k) if path else k
            present = k in actual
            if is_operator(v):
                op, arg = next(iter(v.items()))
                r = _operator(op, arg, actual.get(k), present, entities, sub, False)
                if r:
                    return r
                continue
            if not present:
                return "%s: field is missing (expected %s)" % (sub, show(v))
            r = _match(v, actual[k], entities, sub, False)
            if r:
                return r
        if not root:
            extra = [k for k in actual if k not in expected]
            if extra:
                return "%s: unexpected extra field(s) %s in nested document %s" % (
                    path or "(document)", ", ".join(extra), show(actual))
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            return "%s: expected an array %s, got %s %s" % (
                path, show(expected), bson_type(actual), show(actual))
        if len(expected) != len(actual):
            return "%s: expected %d element(s) %s, got %d %s" % (
                path, len(expected), show(expected), len(actual), show(actual))
        for i, (e, a) in enumerate(zip(expected, actual)):
            r = _match(e, a, entities, "%s[%d]" % (path, i), False)
            if r:
                return r
        return None
    return _scalar(expected, actual, path)


def _scalar(expected, actual, path):
    te, ta = bson_type(expected), bson_type(actual)
    if te in NUMERIC and ta in NUMERIC:
        if expected == actual:
            return None
        return "%s: expected %s, got %s" % (path, show(expected), show(actual))
    if te != ta:
        return "%s: expected %s %s, got %s %s" % (path, te, show(expected), ta, show(actual))
    if te == "regex":
        pe = (expected.pattern, getattr(expected, "flags", 0))
        pa = (actual.pattern, getattr(actual, "flags", 0))
        return None if pe == pa else "%s: expected %s, got %s" % (path, show(expected), show(actual))
    if expected != actual:
        return "%s: expected %s, got %s" % (path, show(expected), show(actual))
    return None


def match(expected, actual, entities=None, root=True):
    """Match one value; `root` says whether a document here may carry extra fields."""
    return _match(expected, actual, entities, "", root)


def match_list(expected, actual, entities=None):
    """Match an iterable result (find, aggregate...): a list whose elements are root docs."""
    if is_operator(expected):
        return match(expected, actual, entities)
    if not isinstance(actual, list):
        return "expected a list of %d document(s), got %s" % (len(expected), show(actual))
    if len(expected) != len(actual):
        return "expected %d document(s) %s, got %d %s" % (
            len(expected), show(expected), len(actual), show(actual))
    for i, (e, a) in enumerate(zip(expected, actual)):
        r = _match(e, a, entities, "[%d]" % i, isinstance(e, dict))
        if r:
            return r
    return None


def exact_equal(a, b):
    """Exact BSON equality (types included), ignoring only key order of documents."""
    ta, tb = bson_type(a), bson_type(b)
    if ta != tb:
        return False
    if ta == "object":
        if set(a.keys()) != set(b.keys()):
            return False
        return all(exact_equal(a[k], b[k]) for k in a)
    if ta == "array":
        return len(a) == len(b) and all(exact_equal(x, y) for x, y in zip(a, b))
    if ta == "double" and a != a and b != b:  # NaN
        return True
    return a == b
