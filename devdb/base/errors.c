/*
 * errors.c: codeName table and the error-filling helper of errors.h.
 *
 * The table is a plain switch over the codes devdb uses; unnamed assertion codes get MongoDB's
 * "Location<N>" name formatted into a thread-local buffer (so the function
 * stays thread-safe).
 */
#include "base/errors.h"

#include <stdarg.h>
#include <stdio.h>

const char *mdb_code_name(int code)
{
    switch (code) {
    case MDB_OK:
        return "OK";
    case MDB_INTERNAL_ERROR:
        return "InternalError";
    case MDB_BAD_VALUE:
        return "BadValue";
    case MDB_NO_SUCH_KEY:
        return "NoSuchKey";
    case MDB_FAILED_TO_PARSE:
        return "FailedToParse";
    case MDB_TYPE_MISMATCH:
        return "TypeMismatch";
    case MDB_OVERFLOW:
        return "Overflow";
    case MDB_ILLEGAL_OPERATION:
        return "IllegalOperation";
    case MDB_NAMESPACE_NOT_FOUND:
        return "NamespaceNotFound";
    case MDB_INDEX_NOT_FOUND:
        return "IndexNotFound";
    case MDB_PATH_NOT_VIABLE:
        return "PathNotViable";
    case MDB_CONFLICTING_UPDATE_OPERATORS:
        return "ConflictingUpdateOperators";
    case MDB_CURSOR_NOT_FOUND:
        return "CursorNotFound";
    case MDB_MAX_TIME_MS_EXPIRED:
        return "MaxTimeMSExpired";
    case MDB_QUERY_EXCEEDED_MEMORY_LIMIT_NO_DISK_USE_ALLOWED:
        return "QueryExceededMemoryLimitNoDiskUseAllowed";
    case MDB_NAMESPACE_EXISTS:
        return "NamespaceExists";
    case MDB_DOLLAR_PREFIXED_FIELD_NAME:
        return "DollarPrefixedFieldName";
    case MDB_INVALID_ID_FIELD:
        return "InvalidIdField";
    case MDB_NOT_SINGLE_VALUE_FIELD:
        return "NotSingleValueField";
    case MDB_EMPTY_FIELD_NAME:
        return "EmptyFieldName";
    case MDB_DOTTED_FIELD_NAME:
        return "DottedFieldName";
    case MDB_COMMAND_NOT_FOUND:
        return "CommandNotFound";
    case MDB_IMMUTABLE_FIELD:
        return "ImmutableField";
    case MDB_CANNOT_CREATE_INDEX:
        return "CannotCreateIndex";
    case MDB_INDEX_ALREADY_EXISTS:
        return "IndexAlreadyExists";
    case MDB_INVALID_OPTIONS:
        return "InvalidOptions";
    case MDB_INVALID_NAMESPACE:
        return "InvalidNamespace";
    case MDB_INDEX_OPTIONS_CONFLICT:
        return "IndexOptionsConflict";
    case MDB_INDEX_KEY_SPECS_CONFLICT:
        return "IndexKeySpecsConflict";
    case MDB_OPERATION_FAILED:
        return "OperationFailed";
    case MDB_COMMAND_NOT_SUPPORTED:
        return "CommandNotSupported";
    case MDB_INVALID_PIPELINE_OPERATOR:
        return "InvalidPipelineOperator";
    case MDB_CANNOT_INDEX_PARALLEL_ARRAYS:
        return "CannotIndexParallelArrays";
    case MDB_INVALID_INDEX_SPECIFICATION_OPTION:
        return "InvalidIndexSpecificationOption";
    case MDB_OUT_OF_DISK_SPACE:
        return "OutOfDiskSpace";
    case MDB_DUPLICATE_KEY:
        return "DuplicateKey";
    default:
        break;
    }
    if (code >= 10000) {
        /* MongoDB names unnamed assertion sites after their number. */
        static _Thread_local char name[32];
        snprintf(name, sizeof name, "Location%d", code);
        return name;
    }
    return "UnknownError";
}

int mdb_error(bson_error_t *err, int code, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->domain = MDB_ERROR_DOMAIN;
    err->code = (uint32_t)code;
    return -1;
}
