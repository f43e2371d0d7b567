/*
 * jscan: a strict, allocation-light JSON scanner for the delivery pipeline's hot paths.
 *
 * What it is for: the vendor simulator's send batches ({"campaign_id", "sends": [...]} with
 * ~500 sends), the API's receipt POST bodies (arrays of up to 1000 receipts) and the receipts
 * worker's jobs ({"receipts": [...]}) are parsed thousands of times per second, and building
 * a jansson tree for each (a hashtable and a malloc per value) dominated the vendor
 * simulator's CPU. jscan instead validates the text in one pass and fills a flat array of
 * tokens (jsmn style) that point into the caller's buffer; strings are unescaped only when
 * the caller asks for them. jansson stays the JSON library for everything else.
 *
 * Guarantees:
 *  - Exactly as strict as jansson 2.14's json_loadb(buf, len, 0, &err), which every minicrm
 *    program uses: a document is accepted by jscan_parse if and only if jansson accepts it.
 *    That is RFC 8259 plus jansson's own rules:
 *      * the top-level value must be an object or an array (flags 0: no JSON_DECODE_ANY);
 *      * UTF-8 is validated (no overlong forms, no surrogates, nothing above U+10FFFF);
 *      * control characters (including a raw NUL byte) inside strings are rejected, a NUL
 *        byte anywhere else is an invalid token; \u escapes of lone surrogates are rejected,
 *        and so is \u0000 (jansson refuses it without JSON_ALLOW_NUL, in keys always), so an
 *        unescaped string never contains a NUL byte (with JSCAN_ALLOW_NUL a value may); one
 *        jansson quirk is reproduced: a single raw NUL byte directly after a number or
 *        true/false/null is skipped ("[1\0]" is accepted), because jansson's lexer loses it
 *        when pushing it back;
 *      * integers (no fraction or exponent) must fit int64_t; reals must not overflow a
 *        double (1e400 is rejected, 1e-400 is accepted), decided exactly as strtod rounds;
 *      * nesting: every value, scalars included, has a depth (the top-level container is 1)
 *        and a depth above JSCAN_MAX_DEPTH (2048, jansson's JSON_PARSER_MAX_DEPTH) is rejected;
 *      * only whitespace may follow the top-level value.
 *    Duplicate keys are accepted; jscan_get returns the last one, as jansson keeps the last.
 *    jscan_parse_opts adds jansson's decoding flags (JSCAN_REJECT_DUPLICATES, JSCAN_ALLOW_NUL,
 *    JSCAN_DECODE_ANY): with them it accepts exactly what json_loadb with the matching flags
 *    accepts (the API's receipts route uses all three).
 *  - Tokens are in document order (pre-order). A container's `count` is its number of
 *    elements, or of key/value pairs as written (duplicates counted). For an object, the key
 *    of each pair is a STRING token at i, its value at i + 1, the next pair at t[i + 1].next.
 *  - Memory: one token array, grown by doubling with realloc and kept across calls, at most
 *    len / 2 + 1 tokens (24 bytes each) for an input of len bytes; the caller caps len. Input
 *    longer than JSCAN_MAX_INPUT is rejected. No other allocation.
 *  - jscan_parse is O(len) and uses a fixed 8 KiB of stack for the open-container stack.
 *
 * Ownership: the jscan struct is the caller's (jscan_init / jscan_release). Tokens refer to
 * the buffer passed to jscan_parse by offset; it must stay alive and unchanged while the
 * tokens are used. The struct is not thread-safe; use one per thread.
 */
#ifndef MINICRM_JSCAN_H
#define MINICRM_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSCAN_MAX_DEPTH 2048
#define JSCAN_MAX_INPUT ((size_t)UINT32_MAX - 1)

typedef enum {
    JSCAN_OBJECT,
    JSCAN_ARRAY,
    JSCAN_STRING,
    JSCAN_NUMBER,
    JSCAN_TRUE,
    JSCAN_FALSE,
    JSCAN_NULL
} jscan_type;

typedef struct jscan_tok {
    jscan_type type;
    uint32_t start; /* offset of the value in the buffer; strings: first byte after the quote */
    uint32_t len;   /* raw length; strings: without the quotes and still escaped; containers:
                       from the opening to the closing bracket inclusive */
    uint32_t count; /* containers: elements, or key/value pairs for an object; else 0 */
    uint32_t next;  /* index of the first token after this value's subtree */
    bool escaped;   /* strings: the raw text contains a backslash */
    bool integer;   /* numbers: no fraction or exponent (fits int64_t, see jscan_int) */
} jscan_tok;

typedef struct jscan {
    jscan_tok *t;    /* tokens of the last successful parse; t[0] is the top-level value */
    size_t n, cap;   /* tokens in use, allocated */
    const char *buf; /* the buffer of the last parse */
    char err[128];   /* message of the last failed parse */
    size_t err_pos;  /* byte offset of the error in the buffer */
} jscan;

/* Fill a caller-owned struct (a zeroed struct is also a valid initial state). */
void jscan_init(jscan *s);
/* Free the token array; the struct may be reused (NULL-safe). */
void jscan_release(jscan *s);

/* Scan buf[0..len) (need not be NUL-terminated). Returns 0 with s->n tokens, or -1 with
 * s->n == 0 and a message in s->err such as "invalid escape near '\"ab\\q' at position 4
 * (line 1, column 5)". Reuses the token array of earlier calls. */
int jscan_parse(jscan *s, const char *buf, size_t len);

/* Flags of jscan_parse_opts, each the counterpart of the jansson decoding flag of that name
 * (the API parses client bodies with all three):
 *   JSCAN_DECODE_ANY          any value at the top level, not only an object or array;
 *   JSCAN_ALLOW_NUL           "\u0000" accepted in string values (never in keys): the unescaped
 *                             value may then contain NUL bytes (use jscan_str_copy's length);
 *   JSCAN_REJECT_DUPLICATES   an object that repeats a key (compared unescaped) is an error,
 *                             "duplicate object key", reported when the object closes. */
#define JSCAN_DECODE_ANY        0x1u
#define JSCAN_ALLOW_NUL         0x2u
#define JSCAN_REJECT_DUPLICATES 0x4u
int jscan_parse_opts(jscan *s, const char *buf, size_t len, unsigned flags);

/* ---- Navigation (tok must be a valid index of the last successful parse) ---------------- */

/* The value token of `key` in object token obj (the last pair if the key repeats), or -1 if
 * absent or obj is not an object. Keys are compared after unescaping. */
int jscan_get(const jscan *s, int obj, const char *key);
/* First element (array) or first key (object) of a container, or -1 if it is empty or not a
 * container. Siblings: an array element's successor is t[i].next while it is below the
 * container's next; for objects see the note on pairs above. */
int jscan_child(const jscan *s, int tok);
/* True if tok is a string token whose unescaped value equals the NUL-terminated lit. */
bool jscan_str_eq(const jscan *s, int tok, const char *lit);
/* Copy the unescaped UTF-8 value of string token tok into out (NUL-terminated). Returns its
 * length, or (size_t)-1 if tok is not a string or the value plus NUL does not fit in cap. */
size_t jscan_str_copy(const jscan *s, int tok, char *out, size_t cap);
/* The value of an integer number token (no fraction or exponent); false for anything else. */
bool jscan_int(const jscan *s, int tok, int64_t *v);

#endif
