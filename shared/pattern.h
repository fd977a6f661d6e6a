/*
 * pattern.h -- a small matcher for the subset of POSIX extended regular expressions the price
 * table's model patterns use, answering "does it match anywhere" exactly as glibc's regexec() would
 * for the same pattern compiled with REG_EXTENDED | REG_ICASE | REG_NOSUB (the C locale).
 *
 * Why: glibc keeps a compiled regex (about 5 KB per pattern) and, once matching starts, the DFA
 * states it builds lazily (0.75 MB for the shipped table after a few thousand model names) for as
 * long as the regex lives. A compiled pattern here is a few hundred bytes and matching needs no
 * memory but the caller's stack: a Thompson NFA run as a set of states (linear in the name's
 * length times the pattern's size, no backtracking).
 *
 * The subset: literal printable ASCII characters, '.', bracket expressions of characters and ranges
 * ("[a-z0-9_.-]", "[^/]"; no "[:class:]", "[=e=]" or "[.c.]"), groups, '|', the quantifiers '*',
 * '+', '?', "{n}", "{n,}", "{n,m}" (n, m <= SN_PATTERN_MAX_REPEAT; one per atom), '^', '$', and a
 * backslash before a punctuation character. Anything else (back-references, GNU escapes such as
 * "\w", empty alternatives or groups, non-ASCII bytes, a program over SN_PATTERN_MAX_INSNS
 * instructions) is refused, and the caller uses regcomp() for it instead. The caller should also
 * check the pattern with regcomp() at load, so both accept the same patterns and report errors
 * the same way.
 */
#ifndef SN_PATTERN_H
#define SN_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

#define SN_PATTERN_MAX_INSNS  512 /* instructions of one compiled pattern */
#define SN_PATTERN_MAX_CLASS  32  /* bracket expressions in one pattern */
#define SN_PATTERN_MAX_REPEAT 64  /* the largest count in "{n,m}" */

/* An opaque, immutable compiled pattern; one may be used by any number of threads at once. */
typedef struct sn_pattern sn_pattern;

/* Compiles the NUL-terminated pattern re. Returns a pattern to free with sn_pattern_free, or NULL
 * when re is outside the subset above, too large, or memory ran out (the caller falls back to
 * regcomp(), which also reports a malformed pattern). */
sn_pattern *sn_pattern_compile(const char *re);

/* Whether p matches somewhere in s (len bytes; NUL bytes end nothing, and no character class or
 * '.' matches one), case-insensitively for ASCII letters. Never allocates: its state lives on the
 * caller's stack (about 6 KiB at most). */
bool sn_pattern_match(const sn_pattern *p, const char *s, size_t len);

/* The bytes p holds on the heap (for the memory measurements of the tests). */
size_t sn_pattern_size(const sn_pattern *p);

/* Frees p; NULL is allowed. */
void sn_pattern_free(sn_pattern *p);

#endif
