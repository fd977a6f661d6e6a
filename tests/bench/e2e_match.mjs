// e2e_match.mjs -- matches the spikes sentinel-loadgen injected (--marks: one JSON line per
// spike with its service, trace id and the wall time its request was handed to the exporter)
// with the alerts e2e_receiver.mjs recorded at each sink, and prints one JSON object:
//   {"spikes": N, "webhook": {"matched": n, "p50_ms": .., "p99_ms": .., "max_ms": .., "delays_ms": [..]},
//    "alertmanager": {...}, "other_alerts": {"webhook": n, "alertmanager": n}, "unmatched": [...]}
//
// Matching: each spike has a service of its own (spike-NNN), so a spike's alert is
//   - webhook: the first arrival whose alert has context.trace_id = the spike's trace id, or
//     (when the alert carries no trace id) service_name = the spike's service;
//   - Alertmanager: the first notification holding a firing alert whose labels.service is the
//     spike's service.
// Only arrivals after the spike's export count (an alert on that service before it would be a
// false positive of the warm-up, reported under "early"). Percentiles are nearest-rank.
//
// Usage: node e2e_match.mjs MARKS RECEIVED
//        node e2e_match.mjs --combine MATCH.json ...   (pools the delays of several runs: the
//        same object, "spikes" and "matched" summed, percentiles over every delay, and
//        "run_p50_ms" per sink, the p50 of each run)
import { readFileSync, existsSync } from 'node:fs';

const SINKS = ['webhook', 'alertmanager'];
const r3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);

function pct(sorted, p) {
    if (sorted.length === 0) return null;
    const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
    return sorted[rank - 1];
}

// p50, p99 and max of a list of delays (ms), and the list itself.
function summary(delays) {
    const sorted = [...delays].sort((a, b) => a - b);
    return {
        matched: delays.length,
        p50_ms: r3(pct(sorted, 50)),
        p99_ms: r3(pct(sorted, 99)),
        max_ms: r3(sorted.length ? sorted[sorted.length - 1] : null),
        delays_ms: delays.map(r3),
    };
}

if (process.argv[2] === '--combine') {
    const runs = process.argv.slice(3).map((f) => JSON.parse(readFileSync(f, 'utf8')));
    const out = { runs: runs.length, spikes: 0, unmatched: [], early: [], other_alerts: {} };
    for (const r of runs) {
        out.spikes += r.spikes;
        out.unmatched.push(...r.unmatched);
        out.early.push(...r.early);
    }
    for (const sink of SINKS) {
        out[sink] = summary(runs.flatMap((r) => r[sink].delays_ms));
        out[sink].run_p50_ms = runs.map((r) => r[sink].p50_ms);
        out.other_alerts[sink] = runs.reduce((n, r) => n + r.other_alerts[sink], 0);
    }
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(0);
}

const [marksFile, recvFile] = process.argv.slice(2);
if (!marksFile || !recvFile) {
    console.error('usage: node e2e_match.mjs MARKS RECEIVED | --combine MATCH.json ...');
    process.exit(2);
}
function lines(file) {
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l));
}
const marks = lines(marksFile);
const recv = lines(recvFile).map((r) => ({ ...r, t: BigInt(r.t_unix_ns) }));

// The spike services an arrival is about (and, for the webhook, its trace id).
function about(r) {
    if (r.sink === 'webhook') {
        const b = r.body || {};
        return [{ service: b.service_name, trace: (b.context && b.context.trace_id) || '', status: b.status }];
    }
    const alerts = (r.body && r.body.alerts) || [];
    return alerts.map((a) => ({ service: (a.labels || {}).service, trace: '', status: a.status }));
}

const spikeServices = new Set(marks.map((m) => m.service));
const result = { spikes: marks.length, unmatched: [], early: [] };
for (const sink of SINKS) {
    const delays = [];
    for (const m of marks) {
        const t0 = BigInt(m.export_unix_nano);
        let hit = null;
        for (const r of recv) {
            if (r.sink !== sink) continue;
            const ok = about(r).some(
                (a) =>
                    a.status === 'firing' &&
                    (sink === 'webhook' && a.trace !== '' ? a.trace === m.trace_id : a.service === m.service),
            );
            if (!ok) continue;
            if (r.t < t0) {
                result.early.push({ sink, spike: m.spike, service: m.service });
                continue;
            }
            if (hit === null || r.t < hit.t) hit = r;
        }
        if (hit === null) result.unmatched.push({ sink, spike: m.spike, service: m.service });
        else delays.push(Number(hit.t - t0) / 1e6);
    }
    result[sink] = summary(delays);
}
// Alerts that arrived but are not about a spike service (background false positives).
result.other_alerts = { webhook: 0, alertmanager: 0 };
for (const r of recv)
    if (!about(r).some((a) => spikeServices.has(a.service))) result.other_alerts[r.sink]++;
process.stdout.write(JSON.stringify(result) + '\n');
