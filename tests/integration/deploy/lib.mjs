// Helpers shared by the deploy checks: YAML loading, a small assertion counter, PromQL metric
// names, and the metric names the project documents.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

let passed = 0;
let failed = 0;

/** Records one check; prints the failure with its context. */
export function check(ok, what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        console.error(`FAIL: ${what}`);
    }
    return ok;
}

/** Prints the closing line and exits non-zero when any check failed (or none ran). */
export function finish(name) {
    console.log(`${name}: ${passed} passed, ${failed} failed`);
    process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

/** Parses every YAML document of a text strictly (duplicate keys are errors); null docs dropped. */
export function parseDocs(text, label) {
    const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true });
    const out = [];
    for (const d of docs) {
        const errs = [...d.errors, ...d.warnings];
        check(errs.length === 0, `${label}: YAML: ${errs.map((e) => e.message).join('; ')}`);
        const js = d.toJS({ maxAliasCount: 0 });
        if (js !== null && js !== undefined) out.push(js);
    }
    return out;
}

export function loadDocs(file) {
    return parseDocs(readFileSync(file, 'utf8'), file);
}

export function yamlFiles(dir) {
    return readdirSync(dir)
        .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
        .sort()
        .map((f) => join(dir, f));
}

const PROMQL_WORDS = new Set([
    'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'bool', 'offset',
    'group_left', 'group_right', 'inf', 'nan', 'Inf', 'NaN',
]);

/** The metric names a PromQL expression reads (functions, keywords, labels and strings removed). */
export function metricNames(expr) {
    let s = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/'(?:[^'\\]|\\.)*'/g, "''");
    s = s.replace(/\{[^}]*\}/g, ' ');
    s = s.replace(/\[[^\]]*\]/g, ' ');
    s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
    const names = new Set();
    for (const m of s.matchAll(/(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()/g)) {
        if (!PROMQL_WORDS.has(m[1])) names.add(m[1]);
    }
    return names;
}

/**
 * Metric names from the tables of the project's docs: name -> {histogram: bool}. Only table
 * rows count (lines starting with "|"), so a name mentioned in passing is not a definition.
 */
export function documentedMetrics(root) {
    const out = new Map();
    for (const doc of ['docs/sidecar.md', 'docs/observability.md', 'docs/aggregator.md', 'docs/injector.md']) {
        let text;
        try {
            text = readFileSync(join(root, doc), 'utf8');
        } catch {
            continue;
        }
        for (const line of text.split('\n')) {
            if (!line.startsWith('|')) continue;
            for (const m of line.matchAll(/`((?:sentinel|process)_[a-z0-9_]+)(?:\{[^`]*\})?`/g)) {
                const prev = out.get(m[1]);
                out.set(m[1], { histogram: (prev && prev.histogram) || /\|\s*histogram\b/.test(line) });
            }
        }
    }
    return out;
}

/**
 * The problems with the metrics an expression reads, checked against the documented names:
 * [] when all are documented; histogram series (_bucket/_sum/_count) need a documented
 * histogram. `external` names come from elsewhere (Prometheus, the API server).
 */
export function metricProblems(expr, documented, external) {
    const names = metricNames(expr);
    const problems = [];
    if (names.size === 0) problems.push(`no metric name found in ${expr}`);
    for (const n of names) {
        if (external.has(n)) continue;
        const h = n.match(/^(.*)_(bucket|sum|count)$/);
        if (h && documented.has(h[1])) {
            if (!documented.get(h[1]).histogram) problems.push(`${n}: ${h[1]} is not a documented histogram`);
            continue;
        }
        if (!documented.has(n)) problems.push(`metric ${n} is not in the docs' metric tables`);
    }
    return { names, problems };
}

/** Index of Kubernetes objects: "Kind/namespace/name" -> object. */
export function indexObjects(objs) {
    const m = new Map();
    for (const o of objs) {
        const key = `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
        check(!m.has(key), `duplicate object ${key}`);
        m.set(key, o);
    }
    return m;
}

/** True when every key/value of `selector` is in `labels`. */
export function selects(selector, labels) {
    if (!selector || !labels) return false;
    return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The pod spec of a workload (Deployment, StatefulSet, Job, CronJob), or undefined. */
export function podSpec(o) {
    if (o.kind === 'CronJob') return o.spec?.jobTemplate?.spec?.template?.spec;
    return o.spec?.template?.spec;
}
export function podTemplate(o) {
    if (o.kind === 'CronJob') return o.spec?.jobTemplate?.spec?.template;
    return o.spec?.template;
}
