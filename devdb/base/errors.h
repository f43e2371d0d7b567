/*
 * errors.h: MongoDB error codes and their codeNames, shared by devdb's document engine and its
 * server half.
 *
 * Drivers branch on `code` (and sometimes `codeName`), so every error devdb reports carries the
 * number MongoDB 4.4 uses for the same situation. Engine functions report errors through a
 * bson_error_t whose `domain` is MDB_ERROR_DOMAIN, whose `code` is the MongoDB code and whose
 * `message` is worded like MongoDB's (users and tests match on it). The server turns such an
 * error into {ok: 0, errmsg: message, code: code, codeName: mdb_code_name(code)}.
 *
 * "Location" codes (numbers above 10000 other than DuplicateKey) are MongoDB's unnamed
 * assertion sites; their codeName is "Location<N>" as MongoDB reports it.
 */
#ifndef DEVDB_ERRORS_H
#define DEVDB_ERRORS_H

#include <bson/bson.h>

/* bson_error_t.domain for errors carrying a MongoDB code. */
#define MDB_ERROR_DOMAIN 27017

enum mdb_code {
    MDB_OK = 0,
    MDB_INTERNAL_ERROR = 1,
    MDB_BAD_VALUE = 2,
    MDB_NO_SUCH_KEY = 4,
    MDB_FAILED_TO_PARSE = 9,
    MDB_TYPE_MISMATCH = 14,
    MDB_OVERFLOW = 15,
    MDB_ILLEGAL_OPERATION = 20,
    MDB_NAMESPACE_NOT_FOUND = 26,
    MDB_INDEX_NOT_FOUND = 27,
    MDB_PATH_NOT_VIABLE = 28,
    MDB_CONFLICTING_UPDATE_OPERATORS = 40,
    MDB_CURSOR_NOT_FOUND = 43,
    MDB_MAX_TIME_MS_EXPIRED = 50,
    MDB_NAMESPACE_EXISTS = 48,
    MDB_DOLLAR_PREFIXED_FIELD_NAME = 52,
    MDB_INVALID_ID_FIELD = 53,
    MDB_NOT_SINGLE_VALUE_FIELD = 54,
    MDB_EMPTY_FIELD_NAME = 56,
    MDB_DOTTED_FIELD_NAME = 57,
    MDB_COMMAND_NOT_FOUND = 59,
    MDB_IMMUTABLE_FIELD = 66,
    MDB_CANNOT_CREATE_INDEX = 67,
    MDB_INDEX_ALREADY_EXISTS = 68,
    MDB_INVALID_OPTIONS = 72,
    MDB_INVALID_NAMESPACE = 73,
    MDB_INDEX_OPTIONS_CONFLICT = 85,
    MDB_INDEX_KEY_SPECS_CONFLICT = 86,
    MDB_OPERATION_FAILED = 96,
    MDB_COMMAND_NOT_SUPPORTED = 115,
    MDB_INVALID_PIPELINE_OPERATOR = 168,
    MDB_CANNOT_INDEX_PARALLEL_ARRAYS = 171,
    MDB_QUERY_EXCEEDED_MEMORY_LIMIT_NO_DISK_USE_ALLOWED = 292, /* blocking find sort */
    MDB_INVALID_INDEX_SPECIFICATION_OPTION = 197,
    MDB_DUPLICATE_KEY = 11000,
    MDB_OUT_OF_DISK_SPACE = 14031, /* the journal could not be written (full disk, I/O error) */
    /* Unnamed assertion sites ("Location<N>") devdb reproduces. */
    MDB_LOC_PROJECTION_EXCLUSION_IN_INCLUSION = 31254, /* "Cannot do exclusion on field x in
                                                          inclusion projection" */
    MDB_LOC_PROJECTION_INCLUSION_IN_EXCLUSION = 31253, /* "Cannot do inclusion on field x in
                                                          exclusion projection" */
    MDB_LOC_PROJECTION_PATH_COLLISION = 31250,         /* "Path collision at a.b" */
    MDB_LOC_UNRECOGNIZED_STAGE = 40324,    /* "Unrecognized pipeline stage name: '$x'" */
    MDB_LOC_STAGE_SPEC_NOT_OBJECT = 40323, /* "A pipeline stage specification object must
                                               contain exactly one field." */
    MDB_LOC_GROUP_ID_MISSING = 15955,      /* "a group specification must include an _id" */
    MDB_LOC_UNKNOWN_ACCUMULATOR = 15952,   /* "unknown group operator '$x'" */
    MDB_LOC_SORT_MEMORY = 16819,           /* $sort over the memory cap */
    MDB_LOC_UNKNOWN_EXPRESSION = 168,      /* same number as InvalidPipelineOperator */
};

/* MongoDB's codeName for `code` ("BadValue", "DuplicateKey", "Location40324", ...). Returns a
 * static string, or for Location codes a thread-local one valid until the thread's next call;
 * never NULL (unknown codes give "UnknownError"). Thread-safe. */
const char *mdb_code_name(int code);

/* Fills `err` (may be NULL) with domain MDB_ERROR_DOMAIN, `code` and a printf-style message
 * (truncated to the size of bson_error_t.message). Always returns -1, so callers can write
 * `return mdb_error(err, MDB_BAD_VALUE, "...")`. */
int mdb_error(bson_error_t *err, int code, const char *fmt, ...) BSON_GNUC_PRINTF(3, 4);

#endif
