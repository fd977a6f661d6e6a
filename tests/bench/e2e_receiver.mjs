// e2e_receiver.mjs -- the alert receiver of tests/bench/e2e_bench.sh: one HTTP server on
// 127.0.0.1 that timestamps every request on arrival (wall clock, sub-millisecond) and appends
// it as one JSON line to OUT: {"sink": "webhook" | "alertmanager", "t_unix_ns": ..., "body": ...}.
// The aggregator's webhook sink posts to /webhook, Alertmanager's webhook receiver to
// /alertmanager. Answers 200 to both; anything else 404. Bodies over 4 MiB are refused (413).
//
// Usage: node e2e_receiver.mjs OUT   (prints "port=N" on stdout once listening; stops on
// SIGTERM/SIGINT)
import { createServer } from 'node:http';
import { appendFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const out = process.argv[2];
if (!out) {
    console.error('usage: node e2e_receiver.mjs OUT');
    process.exit(2);
}
const MAX_BODY = 4 << 20;

// Wall time in ns: the time origin plus the monotonic offset (sub-millisecond resolution).
function nowNs() {
    return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

const server = createServer((req, res) => {
    // The arrival is the first byte of the request: stamped before the body is read.
    const t = nowNs();
    const sink = req.url === '/webhook' ? 'webhook' : req.url === '/alertmanager' ? 'alertmanager' : null;
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
        if (sink === null) {
            res.writeHead(404).end();
            return;
        }
        if (size > MAX_BODY) {
            res.writeHead(413).end();
            return;
        }
        let body;
        try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
            res.writeHead(400).end();
            return;
        }
        const line = { sink, t_unix_ns: t.toString(), change: req.headers['x-sentinel-change'] || '', body };
        appendFileSync(out, JSON.stringify(line) + '\n');
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
});
server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`port=${server.address().port}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, () => {
        server.close(() => process.exit(0));
        server.closeAllConnections();
    });
}
