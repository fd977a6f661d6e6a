/*
 * yamljson.h -- Kubernetes manifests as YAML streams <-> jansson values.
 *
 * Loading follows what kubectl does with a manifest (sigs.k8s.io/yaml, YAML 1.1 rules): plain
 * scalars resolve to null (~, null, empty), booleans (true/false, yes/no, on/off, y/n in their
 * usual cases), integers (decimal, 0x hex, 0o octal and the YAML 1.1 leading-zero octal: 0644 is
 * 420) and floats; quoted scalars and "!!str" are strings; mapping keys are strings in document
 * order (jansson keeps insertion order). Aliases are refused (manifests do not need them),
 * duplicate keys too. Empty documents are dropped.
 *
 * Dumping writes block style with libyaml's emitter; a string is quoted whenever it would read
 * back as something else ("true", "1.0", "0755", "", "null", "2024-01-01"), and written as a
 * literal block when it has line breaks.
 */
#ifndef SN_INJECTOR_YAMLJSON_H
#define SN_INJECTOR_YAMLJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SN_YAML_MAX_DEPTH  64                  /* nesting of collections */
#define SN_YAML_MAX_OUTPUT (64u * 1024 * 1024) /* bytes of one dump */

/* Parses every document of a YAML stream into *docs (a new array, caller decrefs). Returns 0, or
 * -EINVAL with "line N: what" in err (errlen bytes), or -ENOMEM. */
int sn_yaml_load(const char *text, size_t len, json_t **docs, char *err, size_t errlen);

/* Writes docs (an array of documents) as one YAML stream ("---" between documents) into a
 * malloc'd NUL-terminated buffer (caller frees). Returns 0, -E2BIG (over SN_YAML_MAX_OUTPUT),
 * -EINVAL (a value YAML cannot hold, e.g. a non-finite real) or -ENOMEM, with err filled. */
int sn_yaml_dump(const json_t *docs, char **out, size_t *outlen, char *err, size_t errlen);

/* The value a plain (unquoted) scalar resolves to, as a new reference (never NULL except when
 * out of memory). */
json_t *sn_yaml_resolve_plain(const char *s, size_t len);

/* True when s written plain would not read back as the same string. */
bool sn_yaml_needs_quotes(const char *s);

#endif
