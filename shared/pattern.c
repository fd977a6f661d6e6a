/*
 * pattern.c -- the price patterns' regular expression subset: a recursive-descent parser to a
 * small syntax tree, code generation to a Thompson NFA program, and a state-set simulation.
 *
 * Program instructions (pc indexes into insns[]):
 *   OP_CHAR c      consume one byte equal to c after ASCII lower-casing (c is stored lower-case)
 *   OP_ANY         consume any byte but NUL
 *   OP_CLASS k     consume a byte whose bit is set in classes[k] (both cases of a letter set)
 *   OP_SPLIT x y   continue at x and at y
 *   OP_JMP x       continue at x
 *   OP_BOL, OP_EOL succeed only at the start / the end of the subject
 *   OP_MATCH       the pattern matched
 * A consuming instruction continues at pc + 1.
 */
#include "pattern.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES  256 /* syntax tree nodes while compiling one pattern */
#define MAX_DEPTH  32  /* group nesting while parsing */
#define REPEAT_INF (-1)

enum { OP_CHAR, OP_ANY, OP_CLASS, OP_SPLIT, OP_JMP, OP_BOL, OP_EOL, OP_MATCH };

typedef struct insn {
    uint8_t op;
    uint8_t c;
    uint16_t x;
    uint16_t y;
} insn;

#define LITERAL_MAX 32 /* bytes of the literal every match contains */

struct sn_pattern {
    bool anchored; /* the program starts with OP_BOL on every path: try only position 0 */
    uint8_t litlen;
    char lit[LITERAL_MAX]; /* lower-case bytes every match contains in a row (a quick reject) */
    uint16_t ninsns;
    uint16_t nclasses;
    insn *insns;
    uint32_t (*classes)[8]; /* 256-bit sets */
};

/* --- parsing to a syntax tree --- */

enum { N_CHAR, N_ANY, N_CLASS, N_BOL, N_EOL, N_CAT, N_ALT, N_REP };

typedef struct node {
    uint8_t kind;
    uint8_t c;        /* N_CHAR: lower-case byte; N_CLASS: class index */
    int16_t a, b;     /* N_CAT, N_ALT: children; N_REP: a is the child */
    int16_t min, max; /* N_REP: counts, max REPEAT_INF for no bound */
} node;

typedef struct parser {
    const char *s; /* the rest of the pattern */
    node nodes[MAX_NODES];
    int nnodes;
    uint32_t classes[SN_PATTERN_MAX_CLASS][8];
    int nclasses;
    int depth;
    bool alt_start; /* the next atom starts an alternative of the whole pattern */
} parser;

static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static inline unsigned char upper(unsigned char c)
{
    return c >= 'a' && c <= 'z' ? (unsigned char)(c - 32) : c;
}

/* A new node of kind; -1 when the pool is full. */
static int new_node(parser *p, int kind, int a, int b)
{
    if (p->nnodes >= MAX_NODES)
        return -1;
    node *n = &p->nodes[p->nnodes];
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->a = (int16_t)a;
    n->b = (int16_t)b;
    return p->nnodes++;
}

/* A byte allowed as a literal or a class member: printable ASCII. */
static bool printable(unsigned char c)
{
    return c >= 0x20 && c < 0x7f;
}

static void class_add(uint32_t *set, unsigned char c)
{
    set[c >> 5] |= 1u << (c & 31);
}

/* Parses a bracket expression after its '['. Returns its node, or -1 when outside the subset. */
static int parse_bracket(parser *p)
{
    if (p->nclasses >= SN_PATTERN_MAX_CLASS)
        return -1;
    uint32_t *set = p->classes[p->nclasses];
    memset(set, 0, 8 * sizeof *set);
    bool negate = false;
    if (*p->s == '^') {
        negate = true;
        p->s++;
    }
    bool first = true;
    for (;;) {
        /* glibc reads the pattern upper-cased under REG_ICASE: "[A-z]" is "[A-Z]", "[_-a]" is
         * refused as "[_-A]". */
        unsigned char c = upper((unsigned char)*p->s);
        if (c == ']' && !first)
            break;
        if (!printable(c) || (c == '[' && (p->s[1] == ':' || p->s[1] == '=' || p->s[1] == '.')))
            return -1;
        p->s++;
        first = false;
        if (p->s[0] == '-' && p->s[1] != ']' && p->s[1] != '\0') {
            unsigned char d = upper((unsigned char)p->s[1]);
            if (!printable(d) || d == '[' || d < c)
                return -1;
            p->s += 2;
            for (unsigned v = c; v <= d; v++)
                class_add(set, (unsigned char)v);
        } else {
            class_add(set, c);
        }
    }
    p->s++; /* the closing ']' */
    if (negate) {
        for (int i = 0; i < 8; i++)
            set[i] = ~set[i];
        set[0] &= ~1u; /* never NUL */
    }
    /* glibc tests the input upper-cased against the set so read: a lower-case letter is in the
     * class exactly when its capital is ("[_-~]" holds '{' but neither 'a' nor 'A'). */
    for (unsigned v = 'a'; v <= 'z'; v++) {
        unsigned u = v - 32;
        if (set[u >> 5] & (1u << (u & 31)))
            set[v >> 5] |= 1u << (v & 31);
        else
            set[v >> 5] &= ~(1u << (v & 31));
    }
    int n = new_node(p, N_CLASS, -1, -1);
    if (n < 0)
        return -1;
    p->nodes[n].c = (uint8_t)p->nclasses++;
    return n;
}

static int parse_alt(parser *p);

/* Reads a decimal count of at most SN_PATTERN_MAX_REPEAT; -1 when there is none or it is larger. */
static int parse_count(parser *p)
{
    int v = 0, digits = 0;
    while (*p->s >= '0' && *p->s <= '9') {
        v = v * 10 + (*p->s - '0');
        if (v > SN_PATTERN_MAX_REPEAT)
            return -1;
        p->s++;
        digits++;
    }
    return digits > 0 ? v : -1;
}

/* Parses an atom and at most one quantifier after it. Returns its node or -1. */
static int parse_repeat(parser *p)
{
    int n;
    unsigned char c = (unsigned char)*p->s;
    bool anchor = false;
    switch (c) {
    case '(':
        if (++p->depth > MAX_DEPTH)
            return -1;
        p->s++;
        n = parse_alt(p);
        if (n < 0 || *p->s != ')')
            return -1;
        p->s++;
        p->depth--;
        break;
    case '.':
        p->s++;
        n = new_node(p, N_ANY, -1, -1);
        break;
    case '[':
        p->s++;
        n = parse_bracket(p);
        break;
    case '^':
    case '$':
        /* Only at the start / the end of a top-level alternative: glibc's answers for anchors
         * inside groups and between atoms are not always what the pattern says (e.g.
         * "((.|$)[ac]{2}){2}aa" matches "ccacaaa"), and the price patterns do not need them. */
        if (c == '^' ? !p->alt_start : p->depth > 0 || (p->s[1] != '\0' && p->s[1] != '|'))
            return -1;
        p->s++;
        n = new_node(p, c == '^' ? N_BOL : N_EOL, -1, -1);
        anchor = true;
        break;
    case '\\':
        c = (unsigned char)p->s[1];
        /* A backslash before punctuation is the character itself; before a letter or digit it is a
         * back-reference or a GNU operator (\w, \b, \<, ...): not in the subset. */
        if (!printable(c) || (c >= '0' && c <= '9') || (lower(c) >= 'a' && lower(c) <= 'z') ||
            c == '<' || c == '>' || c == '`' || c == '\'')
            return -1;
        p->s += 2;
        n = new_node(p, N_CHAR, -1, -1);
        if (n >= 0)
            p->nodes[n].c = c;
        break;
    default:
        if (!printable(c) || c == '*' || c == '+' || c == '?' || c == '{' || c == '}' || c == '|' ||
            c == ')')
            return -1;
        p->s++;
        n = new_node(p, N_CHAR, -1, -1);
        if (n >= 0)
            p->nodes[n].c = lower(c);
        break;
    }
    if (n < 0)
        return -1;
    int min, max;
    switch (*p->s) {
    case '*':
        min = 0, max = REPEAT_INF;
        p->s++;
        break;
    case '+':
        min = 1, max = REPEAT_INF;
        p->s++;
        break;
    case '?':
        min = 0, max = 1;
        p->s++;
        break;
    case '{':
        p->s++;
        min = parse_count(p);
        if (min < 0)
            return -1;
        max = min;
        if (*p->s == ',') {
            p->s++;
            max = *p->s == '}' ? REPEAT_INF : parse_count(p);
            if (max == -1 && *p->s != '}')
                return -1;
            if (max != REPEAT_INF && max < min)
                return -1;
        }
        if (*p->s != '}')
            return -1;
        p->s++;
        break;
    default:
        return n;
    }
    /* A quantified anchor, or two quantifiers in a row, mean something only to glibc. */
    if (anchor || *p->s == '*' || *p->s == '+' || *p->s == '?' || *p->s == '{')
        return -1;
    int r = new_node(p, N_REP, n, -1);
    if (r < 0)
        return -1;
    p->nodes[r].min = (int16_t)min;
    p->nodes[r].max = (int16_t)max;
    return r;
}

/* Parses a concatenation up to '|', ')' or the end; an empty one is outside the subset. */
static int parse_cat(parser *p)
{
    int left = -1;
    p->alt_start = p->depth == 0;
    while (*p->s != '\0' && *p->s != '|' && *p->s != ')') {
        int n = parse_repeat(p);
        p->alt_start = false;
        if (n < 0)
            return -1;
        left = left < 0 ? n : new_node(p, N_CAT, left, n);
        if (left < 0)
            return -1;
    }
    return left;
}

static int parse_alt(parser *p)
{
    int left = parse_cat(p);
    while (left >= 0 && *p->s == '|') {
        p->s++;
        int right = parse_cat(p);
        if (right < 0)
            return -1;
        left = new_node(p, N_ALT, left, right);
    }
    return left;
}

/* --- code generation --- */

typedef struct codegen {
    const parser *p;
    insn insns[SN_PATTERN_MAX_INSNS];
    int n;
    bool full;
} codegen;

static int emit(codegen *g, int op, int c, int x, int y)
{
    if (g->n >= SN_PATTERN_MAX_INSNS) {
        g->full = true;
        return 0;
    }
    g->insns[g->n] = (insn){(uint8_t)op, (uint8_t)c, (uint16_t)x, (uint16_t)y};
    return g->n++;
}

static void gen_node(codegen *g, int i)
{
    if (g->full)
        return;
    const node *n = &g->p->nodes[i];
    switch (n->kind) {
    case N_CHAR:
        emit(g, OP_CHAR, n->c, 0, 0);
        break;
    case N_ANY:
        emit(g, OP_ANY, 0, 0, 0);
        break;
    case N_CLASS:
        emit(g, OP_CLASS, n->c, 0, 0);
        break;
    case N_BOL:
        emit(g, OP_BOL, 0, 0, 0);
        break;
    case N_EOL:
        emit(g, OP_EOL, 0, 0, 0);
        break;
    case N_CAT:
        gen_node(g, n->a);
        gen_node(g, n->b);
        break;
    case N_ALT: {
        /* split L1 L2; L1: a; jmp end; L2: b; end: */
        int split = emit(g, OP_SPLIT, 0, 0, 0);
        g->insns[split].x = (uint16_t)g->n;
        gen_node(g, n->a);
        int jmp = emit(g, OP_JMP, 0, 0, 0);
        g->insns[split].y = (uint16_t)g->n;
        gen_node(g, n->b);
        g->insns[jmp].x = (uint16_t)g->n;
        break;
    }
    case N_REP: {
        for (int k = 0; k < n->min; k++)
            gen_node(g, n->a);
        if (n->max == REPEAT_INF) {
            /* L1: split L2 end; L2: a; jmp L1; end: */
            int split = emit(g, OP_SPLIT, 0, 0, 0);
            g->insns[split].x = (uint16_t)g->n;
            gen_node(g, n->a);
            emit(g, OP_JMP, 0, split, 0);
            g->insns[split].y = (uint16_t)g->n;
        } else {
            /* each optional copy: split next end; a */
            int splits[SN_PATTERN_MAX_REPEAT];
            int nsplits = 0;
            for (int k = n->min; k < n->max; k++) {
                splits[nsplits] = emit(g, OP_SPLIT, 0, 0, 0);
                g->insns[splits[nsplits]].x = (uint16_t)g->n;
                nsplits++;
                gen_node(g, n->a);
            }
            for (int k = 0; k < nsplits; k++)
                g->insns[splits[k]].y = (uint16_t)g->n;
        }
        break;
    }
    default:
        break;
    }
}

/* Whether every path through node i starts with '^' (so matches can start only at 0). */
static bool starts_anchored(const parser *p, int i)
{
    const node *n = &p->nodes[i];
    switch (n->kind) {
    case N_BOL:
        return true;
    case N_CAT:
        return starts_anchored(p, n->a);
    case N_ALT:
        return starts_anchored(p, n->a) && starts_anchored(p, n->b);
    case N_REP:
        return n->min > 0 && starts_anchored(p, n->a);
    default:
        return false;
    }
}

typedef struct literal_run {
    char cur[LITERAL_MAX], best[LITERAL_MAX];
    int curlen, bestlen;
} literal_run;

/* Walks the top-level concatenation of node i in order, keeping the longest run of plain
 * characters (each must appear, in a row, in every match); anything else ends a run. */
static void find_literal(const parser *p, int i, literal_run *r)
{
    const node *n = &p->nodes[i];
    if (n->kind == N_CAT) {
        find_literal(p, n->a, r);
        find_literal(p, n->b, r);
        return;
    }
    if (n->kind == N_CHAR && r->curlen < LITERAL_MAX) {
        r->cur[r->curlen++] = (char)n->c;
    } else {
        r->curlen = 0;
        if (n->kind == N_CHAR)
            r->cur[r->curlen++] = (char)n->c;
    }
    if (r->curlen > r->bestlen) {
        memcpy(r->best, r->cur, (size_t)r->curlen);
        r->bestlen = r->curlen;
    }
}

/* Whether s (len bytes) contains lit (n lower-case bytes) ignoring ASCII case. */
static bool contains_literal(const char *s, size_t len, const char *lit, size_t n)
{
    for (size_t i = 0; i + n <= len; i++) {
        if (lower((unsigned char)s[i]) != (unsigned char)lit[0])
            continue;
        size_t k = 1;
        while (k < n && lower((unsigned char)s[i + k]) == (unsigned char)lit[k])
            k++;
        if (k == n)
            return true;
    }
    return false;
}

sn_pattern *sn_pattern_compile(const char *re)
{
    sn_pattern *pat = NULL;
    parser *p = calloc(1, sizeof *p);
    codegen *g = calloc(1, sizeof *g);
    if (p == NULL || g == NULL || re == NULL)
        goto out;
    p->s = re;
    int root = parse_alt(p);
    if (root < 0 || *p->s != '\0')
        goto out;
    g->p = p;
    gen_node(g, root);
    emit(g, OP_MATCH, 0, 0, 0);
    if (g->full)
        goto out;
    pat = calloc(1, sizeof *pat);
    if (pat == NULL)
        goto out;
    pat->insns = malloc((size_t)g->n * sizeof *pat->insns);
    pat->classes = malloc((p->nclasses ? (size_t)p->nclasses : 1) * sizeof *pat->classes);
    if (pat->insns == NULL || pat->classes == NULL) {
        sn_pattern_free(pat);
        pat = NULL;
        goto out;
    }
    memcpy(pat->insns, g->insns, (size_t)g->n * sizeof *pat->insns);
    memcpy(pat->classes, p->classes, (size_t)p->nclasses * sizeof *pat->classes);
    pat->ninsns = (uint16_t)g->n;
    pat->nclasses = (uint16_t)p->nclasses;
    pat->anchored = starts_anchored(p, root);
    literal_run run = {.curlen = 0, .bestlen = 0};
    find_literal(p, root, &run);
    memcpy(pat->lit, run.best, (size_t)run.bestlen);
    pat->litlen = (uint8_t)run.bestlen;
out:
    free(g);
    free(p);
    return pat;
}

/* --- matching --- */

typedef struct sim {
    const sn_pattern *pat;
    size_t len;
    uint32_t mark[SN_PATTERN_MAX_INSNS]; /* generation in which a pc was last added */
    uint16_t stack[2 * SN_PATTERN_MAX_INSNS + 1];
    bool matched;
} sim;

/* Adds pc and what it reaches without consuming (at subject position pos, generation gen) to
 * list; sets matched when OP_MATCH is reached. Each pc is processed once per generation and pushes
 * at most two more, so the stack holds at most 2 * ninsns + 1 entries. */
static void add_thread(sim *m, uint16_t *list, int *count, uint16_t pc, size_t pos, uint32_t gen)
{
    int top = 0;
    m->stack[top++] = pc;
    while (top > 0) {
        pc = m->stack[--top];
        if (m->mark[pc] == gen)
            continue;
        m->mark[pc] = gen;
        const insn *in = &m->pat->insns[pc];
        switch (in->op) {
        case OP_JMP:
            m->stack[top++] = in->x;
            break;
        case OP_SPLIT:
            m->stack[top++] = in->y;
            m->stack[top++] = in->x;
            break;
        case OP_BOL:
            if (pos == 0)
                m->stack[top++] = (uint16_t)(pc + 1);
            break;
        case OP_EOL:
            if (pos == m->len)
                m->stack[top++] = (uint16_t)(pc + 1);
            break;
        case OP_MATCH:
            m->matched = true;
            break;
        default:
            list[(*count)++] = pc;
            break;
        }
    }
}

bool sn_pattern_match(const sn_pattern *pat, const char *s, size_t len)
{
    sim m;
    uint16_t lists[2][SN_PATTERN_MAX_INSNS];
    int counts[2] = {0, 0};
    int cur = 0;

    if (pat->litlen > 0 && !contains_literal(s, len, pat->lit, pat->litlen))
        return false;
    memset(m.mark, 0, (size_t)pat->ninsns * sizeof m.mark[0]);
    m.pat = pat;
    m.len = len;
    m.matched = false;
    for (size_t pos = 0;; pos++) {
        /* A match may start here (generation pos + 1: the one the threads moved here carry). */
        if (pos == 0 || !pat->anchored)
            add_thread(&m, lists[cur], &counts[cur], 0, pos, (uint32_t)pos + 1);
        if (m.matched)
            return true;
        if (pos == len || (counts[cur] == 0 && pat->anchored))
            return false;
        unsigned char c = (unsigned char)s[pos];
        int next = cur ^ 1;
        counts[next] = 0;
        for (int i = 0; i < counts[cur]; i++) {
            uint16_t pc = lists[cur][i];
            const insn *in = &pat->insns[pc];
            bool ok;
            if (in->op == OP_CHAR)
                ok = lower(c) == in->c;
            else if (in->op == OP_ANY)
                ok = c != '\0';
            else
                ok = (pat->classes[in->c][c >> 5] >> (c & 31)) & 1u;
            if (ok)
                add_thread(&m, lists[next], &counts[next], (uint16_t)(pc + 1), pos + 1,
                           (uint32_t)pos + 2);
            if (m.matched)
                return true;
        }
        cur = next;
    }
}

size_t sn_pattern_size(const sn_pattern *p)
{
    if (p == NULL)
        return 0;
    return sizeof *p + (size_t)p->ninsns * sizeof *p->insns +
           (size_t)p->nclasses * sizeof *p->classes;
}

void sn_pattern_free(sn_pattern *p)
{
    if (p == NULL)
        return;
    free(p->insns);
    free(p->classes);
    free(p);
}
