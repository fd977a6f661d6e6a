/*
 * jsonpatch.h -- JSON Pointer (RFC 6901) and JSON Patch (RFC 6902) on jansson values.
 *
 * The injector builds its changes to a Pod as a JSON Patch (an array of operation objects) and
 * either sends it to the API server (the webhook) or applies it itself (offline `inject`). The
 * builder only ever produces `add`, `replace` and `test` operations; the apply function handles
 * all six operations so that the same code can be checked against any RFC 6902 patch.
 *
 * Pointers: "" is the whole document, "/a/b" a member of a member; "~" is written "~0" and "/"
 * "~1" inside a reference token (so the annotation key "sentinel.llm-devops.io/status" becomes
 * "/metadata/annotations/sentinel.llm-devops.io~1status"). Array indices are decimal without
 * leading zeros; "-" names the position after the last element (only for `add`).
 */
#ifndef SN_INJECTOR_JSONPATCH_H
#define SN_INJECTOR_JSONPATCH_H

#include <jansson.h>
#include <stddef.h>

#define SN_JSONPATCH_ERROR_MAX   256  /* bytes of an error message, NUL included */
#define SN_JSONPATCH_POINTER_MAX 4096 /* bytes of a pointer, NUL included */
#define SN_JSONPATCH_MAX_OPS     4096 /* operations in one patch */

/* Escapes one reference token (RFC 6901 section 3: "~" -> "~0", "/" -> "~1") into out (cap
 * bytes, NUL-terminated). Returns the escaped length, or -ENOSPC when it does not fit (out is
 * then ""). */
int sn_jsonpointer_escape(const char *token, char *out, size_t cap);

/* Decodes one escaped reference token of len bytes ("~1" -> "/", "~0" -> "~") into out (cap
 * bytes, NUL-terminated). Returns the decoded length, -EINVAL for a "~" not followed by 0 or 1,
 * or -ENOSPC. */
int sn_jsonpointer_unescape(const char *token, size_t len, char *out, size_t cap);

/* Appends "/" + escape(token) to the pointer in buf (cap bytes, NUL-terminated, may be "").
 * Returns 0 or -ENOSPC (buf unchanged). */
int sn_jsonpointer_append(char *buf, size_t cap, const char *token);

/* Like sn_jsonpointer_append for an array index. */
int sn_jsonpointer_append_index(char *buf, size_t cap, size_t index);

/* The value a pointer names in doc (borrowed), or NULL when the pointer is malformed or names
 * nothing ("-" names nothing). */
json_t *sn_jsonpointer_get(json_t *doc, const char *pointer);

/* Appends an operation {"op":op,"path":path[,"value":value]} to the patch array. value is
 * stolen (decref'd on failure too) and may be NULL for ops without a value. Returns 0,
 * -E2BIG when the patch already holds SN_JSONPATCH_MAX_OPS operations, or -ENOMEM. */
int sn_jsonpatch_add_op(json_t *patch, const char *op, const char *path, json_t *value);

/* Prefixes every operation's "path" (and "from") in patch with prefix (a pointer such as
 * "/spec/template"), in place. Returns 0, -ENOSPC (a path grew too long) or -ENOMEM. */
int sn_jsonpatch_prefix(json_t *patch, const char *prefix);

/* Applies an RFC 6902 patch (an array of operations) to *doc. The document is changed only when
 * every operation succeeds (the operations run on a copy which then replaces *doc; the old value
 * is decref'd). Returns 0, or -EINVAL with a one-line message naming the failing operation in
 * err (errlen bytes, may be NULL): malformed operation, a path that names nothing, a failed
 * `test`, `move` into its own child; -ENOMEM when out of memory. *doc is left as it was on any
 * failure. */
int sn_jsonpatch_apply(json_t **doc, const json_t *patch, char *err, size_t errlen);

#endif
