/*
 * json_util.h -- small pieces the OTLP/JSON decoders share: the bounds check before parsing,
 * parse error messages, the proto3 JSON number forms, and AnyValue scalars.
 */
#ifndef SN_OTLP_JSON_UTIL_H
#define SN_OTLP_JSON_UTIL_H

#include "genai.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One pass over the raw bytes before parsing: refuses nesting deeper than
 * SN_OTLP_JSON_MAX_DEPTH and documents over SN_OTLP_JSON_MAX_NODES weighted nodes
 * (otlp/traces_json.h). Returns 0, or -1 with a one-line message in err. Malformed JSON is left
 * to the parser. */
int sn_otlp_json_prescan(const uint8_t *p, size_t len, char *err, size_t errsize);

/* Writes "invalid JSON at line L column C: TEXT" for a jansson parse error into err (errsize
 * bytes). jansson's text quotes the input near the error, so every byte of it that is not
 * printable ASCII (a line break, a control character, a byte of a UTF-8 sequence that may be cut)
 * becomes '?': the message stays one line of plain text whatever the input. */
void sn_otlp_json_syntax_error(const json_error_t *e, char *err, size_t errsize);

/* The first steps every OTLP/JSON decoder takes: the bounds pre-scan, parsing, and the check that
 * the document is an object. Returns the parsed object (a new reference the caller releases with
 * json_decref), or NULL with a one-line message in err. */
json_t *sn_otlp_json_load_request(const uint8_t *buf, size_t len, char *err, size_t errsize);

/* An int64 given as a JSON integer, an integral real, or a decimal string. */
bool sn_otlp_json_int64(const json_t *v, int64_t *out);

/* A uint64 (fixed64) given as a non-negative JSON integer or a decimal string. */
bool sn_otlp_json_uint64(const json_t *v, uint64_t *out);

/* A double given as a JSON number or "NaN" / "Infinity" / "-Infinity". */
bool sn_otlp_json_double(const json_t *v, double *out);

/* Converts the scalar member of an AnyValue object (stringValue cut to max bytes at a UTF-8
 * boundary, setting *truncated; boolValue; intValue; doubleValue) into *out, which borrows the
 * JSON string. Returns false for anything else (bytes, arrays, lists, empty, bad numbers). */
bool sn_otlp_json_scalar(const json_t *val, size_t max, sn_attr_value *out, bool *truncated);

#endif
