// integration.sidecar_fault_*: "every acknowledged event arrives exactly once" under faults.
//
//   node faults.mjs --case aggregator-late|aggregator-restart|sidecar-kill --sidecar BIN --aggregator BIN
//
// A bounded load -- 2000 LLM spans with unique ids, 10 per OTLP/HTTP JSON request, paced over
// about 6 s by 4 concurrent senders -- goes to the real sidecar. The sender keeps, per request,
// whether the sidecar ACKNOWLEDGED it (HTTP 200) and how: a refusal (429/503, honouring
// Retry-After) or a refused connection means "not taken" and is retried like an exporter would;
// a request whose connection broke after it was sent (reset, timeout) may or may not have been
// taken, so its spans are "uncertain" when it is later acknowledged on a retry.
//
//   aggregator-late     the aggregator is absent for the first 2 s, then started;
//   aggregator-restart  the aggregator is killed (SIGKILL) mid-stream and restarted 1.5 s later
//                       on the same port, appending to the same event log;
//   sidecar-kill        the sidecar is killed (SIGKILL) mid-stream and restarted 0.5 s later on
//                       the same spool directory and port.
//
// Checked in the aggregator's event log once it holds every acknowledged span:
//   - every acknowledged span is there; one acknowledged on its first clean attempt exactly once,
//     an uncertain one at most once per attempt;
//   - a span never acknowledged appears at most once per attempt; no span id that was not sent;
//   - aggregator-restart: the aggregator's de-duplication table lives in memory, so a batch it
//     applied just before the kill, whose answer was lost, is applied again by the restarted
//     aggregator when the sidecar resends it. That -- and only that -- is allowed: a repeated
//     (sidecar_id, sequence) must be the last one logged before the kill for that sidecar, logged
//     once before and once after; every duplicated event must belong to such a batch. Everything
//     else is exactly once, as in the other cases.
import fs from 'node:fs';
import path from 'node:path';

import {
  check, fail, freePort, httpRequest, log, metrics, opt, otlpJson, randomHex, readEventLog, run, sleep,
  startAggregator, startSidecar, tempDir, waitEventLog, SLOW,
} from './lib.mjs';

const CASE = opt('--case');
const N = 2000;
const PER_REQ = 10;
const WORKERS = 4;
const SEND_MS = 6000;

// Sends N spans to sidecar.httpPort (read at each attempt: a restarted sidecar may move).
async function sendLoad(target) {
  const reqs = [];
  const base = BigInt(Date.now() - 60000) * 1000000n;
  for (let i = 0; i < N / PER_REQ; i++) {
    const spans = [];
    for (let k = 0; k < PER_REQ; k++)
      spans.push({
        traceId: randomHex(16),
        spanId: randomHex(8),
        startNs: base + BigInt(i * PER_REQ + k) * 1000000n,
        latencyMs: 900 + ((i * 7 + k * 13) % 200),
        model: 'gpt-4o-mini',
      });
    reqs.push({ spans, body: otlpJson(spans, 'fault-api'), acked: false, uncertain: false, attempts: 0, refusals: 0 });
  }
  const start = Date.now();
  const interval = SEND_MS / reqs.length;
  let next = 0;
  const stats = { refused: 0, connRefused: 0, broken: 0, retryAfter: new Set() };
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= reqs.length) return;
      const r = reqs[i];
      const wait = start + i * interval - Date.now();
      if (wait > 0) await sleep(wait);
      const giveUp = Date.now() + 60000 * SLOW;
      while (!r.acked && Date.now() < giveUp) {
        r.attempts++;
        try {
          const res = await httpRequest(target.httpPort, 'POST', '/v1/traces', {
            headers: { 'Content-Type': 'application/json' },
            body: r.body,
            timeout: 10000,
          });
          if (res.status === 200) {
            r.acked = true;
          } else if (res.status === 429 || res.status === 503) {
            stats.refused++;
            r.refusals++;
            stats.retryAfter.add(res.headers['retry-after']);
            await sleep(Math.min(1000, 1000 * Number(res.headers['retry-after'] || 0.1)));
          } else {
            fail(`request ${i}: HTTP ${res.status} ${res.body}`);
            return;
          }
        } catch (e) {
          if (e.code === 'ECONNREFUSED') stats.connRefused++;
          else {
            stats.broken++;
            r.uncertain = true; // it may have been taken before the connection broke
          }
          await sleep(100);
        }
      }
    }
  }
  await Promise.all(Array.from({ length: WORKERS }, worker));
  return { reqs, stats, seconds: (Date.now() - start) / 1000 };
}

// The sidecar's spooled batches once there are none (or the deadline passed).
async function spoolDrained(adminPort) {
  const deadline = Date.now() + 15000 * SLOW;
  for (;;) {
    const n = (await metrics(adminPort)).sentinel_sidecar_spool_batches;
    if (n === 0 || Date.now() > deadline) return n;
    await sleep(100);
  }
}

// Starts the sidecar again on the killed one's HTTP port. That port was free for a moment, and
// on a shared machine any connect() may take it as its local port meanwhile (it comes from the
// ephemeral range): then the sidecar starts on another port, and the senders follow it
// (target.httpPort), as clients behind a service would.
async function restartSidecar(opts, target) {
  try {
    return await startSidecar(opts);
  } catch (e) {
    if (!/cannot serve OTLP\/HTTP.*(in use|EADDRINUSE)/.test(e.message)) throw e;
    log(`port ${opts.httpPort} taken meanwhile; the sidecar restarts on another one`);
    const sc = await startSidecar({ ...opts, httpPort: 0 });
    target.httpPort = sc.httpPort;
    return sc;
  }
}

await run(`sidecar_fault_${CASE}`, async () => {
  if (!['aggregator-late', 'aggregator-restart', 'sidecar-kill'].includes(CASE)) throw new Error(`unknown --case ${CASE}`);
  const dir = tempDir('fault-');
  const eventLog = path.join(dir, 'events.jsonl');
  const spoolDir = path.join(dir, 'spool');
  const aggPort = await freePort();
  const httpPort = await freePort();

  let agg = CASE === 'aggregator-late' ? null : await startAggregator({ port: aggPort, eventLog });
  let sc = await startSidecar({ aggregatorPort: aggPort, spoolDir, httpPort });
  const firstSidecarId = sc.sidecarId;
  const target = { httpPort };
  const sending = sendLoad(target);
  let killOffset = -1;

  if (CASE === 'aggregator-late') {
    await sleep(2000);
    const m = await metrics(sc.adminPort);
    check(m['sentinel_sidecar_batches_shipped_total{result="failed"}'] > 0, 'no failed Ingest call while the aggregator was absent');
    check(m.sentinel_sidecar_spool_batches > 0, `nothing spooled while the aggregator was absent (${m.sentinel_sidecar_spool_batches})`);
    check(!fs.existsSync(eventLog), 'event log exists before the aggregator started');
    log(`aggregator absent: ${m.sentinel_sidecar_spool_batches} batches spooled, ${m['sentinel_sidecar_batches_shipped_total{result="failed"}']} failed calls`);
    agg = await startAggregator({ port: aggPort, eventLog });
    log('aggregator started');
  } else if (CASE === 'aggregator-restart') {
    await sleep(2500);
    const before = readEventLog(eventLog).filter((l) => l.type === 'event').length;
    check(before > 0, 'nothing reached the aggregator before the kill');
    await agg.kill('SIGKILL');
    killOffset = fs.statSync(eventLog).size;
    log(`aggregator killed after ${before} events`);
    await sleep(1500);
    const m = await metrics(sc.adminPort);
    check(m['sentinel_sidecar_batches_shipped_total{result="failed"}'] > 0, 'no failed Ingest call while the aggregator was down');
    agg = await startAggregator({ port: aggPort, eventLog });
    log('aggregator restarted');
  } else {
    await sleep(2500);
    await sc.kill('SIGKILL');
    log('sidecar killed');
    await sleep(500);
    sc = await restartSidecar({ aggregatorPort: aggPort, spoolDir, httpPort }, target);
    check(sc.sidecarId !== firstSidecarId, 'the restarted sidecar kept its sidecar_id');
    const opened = sc.logs.find((j) => j.msg === 'spool: opened');
    log(`sidecar restarted: ${JSON.stringify(opened)}`);
  }

  const { reqs, stats, seconds } = await sending;
  const acked = reqs.filter((r) => r.acked);
  log(`sent in ${seconds}s: ${acked.length}/${reqs.length} requests acknowledged, ${stats.refused} refusals ` +
    `(Retry-After ${[...stats.retryAfter].join(',')}), ${stats.connRefused} refused connections, ${stats.broken} broken`);
  check(acked.length === reqs.length, `${reqs.length - acked.length} requests never acknowledged within 60 s`);

  const want = new Set(acked.flatMap((r) => r.spans.map((s) => s.spanId)));
  const lines = await waitEventLog(eventLog, (ls) => {
    const seen = new Set(ls.filter((l) => l.type === 'event').map((l) => l.span_id));
    for (const id of want) if (!seen.has(id)) return false;
    return true;
  }, 30000);
  await sleep(500); // anything still on its way (a duplicate would show now)
  // Everything the sidecar spooled has been shipped and acknowledged: a batch leaves the spool
  // only once the aggregator's answer is back, after its events are in the event log.
  const spooled = await spoolDrained(sc.adminPort);
  check(spooled === 0, `spool not empty at the end: ${spooled} batches`);
  const all = readEventLog(eventLog);
  const events = all.filter((l) => l.type === 'event');
  // A SIGKILLed aggregator may leave its last line cut, and the restarted one appends to it.
  const torn = all.filter((l) => l.type === 'torn').length;
  check(torn <= (CASE === 'aggregator-restart' ? 1 : 0), `${torn} lines of the event log are not JSON`);
  const count = new Map();
  for (const e of events) count.set(e.span_id, (count.get(e.span_id) || 0) + 1);

  // Batches logged twice: which, and where.
  const batchSeen = new Map();
  let offset = 0;
  const text = fs.readFileSync(eventLog, 'utf8');
  for (const line of text.split('\n')) {
    let b = null;
    try {
      b = line.startsWith('{"type":"batch"') ? JSON.parse(line) : null;
    } catch {
      /* torn: counted below */
    }
    if (b) {
      const k = `${b.sidecar_id}#${b.sequence}`;
      if (!batchSeen.has(k)) batchSeen.set(k, []);
      batchSeen.get(k).push(offset);
    }
    offset += Buffer.byteLength(line) + 1;
  }
  const replayed = new Set([...batchSeen].filter(([, offs]) => offs.length > 1).map(([k]) => k));
  if (CASE === 'aggregator-restart') {
    // The last batch of each sidecar logged before the kill.
    const lastBefore = new Map();
    for (const [k, offs] of batchSeen)
      if (offs[0] < killOffset) {
        const [sid, seq] = k.split('#');
        if (!lastBefore.has(sid) || Number(seq) > lastBefore.get(sid)) lastBefore.set(sid, Number(seq));
      }
    for (const k of replayed) {
      const offs = batchSeen.get(k);
      const [sid, seq] = k.split('#');
      check(offs.length === 2 && offs[0] < killOffset && offs[1] >= killOffset && lastBefore.get(sid) === Number(seq),
        `batch ${k} logged at ${offs}: only the batch in flight at the kill may be applied twice`);
    }
    if (replayed.size) log(`aggregator-restart: ${[...replayed].join(', ')} applied before the kill and again after it (de-duplication is in memory only)`);
  } else {
    check(replayed.size === 0, `batches applied twice: ${[...replayed].join(', ')}`);
  }
  const inReplayed = new Set(
    events.filter((e) => replayed.has(`${e.sidecar_id}#${e.sequence}`)).map((e) => e.span_id),
  );

  let clean = 0;
  let dupAllowed = 0;
  for (const r of reqs) {
    for (const s of r.spans) {
      const c = count.get(s.spanId) || 0;
      const replay = inReplayed.has(s.spanId) ? 1 : 0;
      if (r.acked && !r.uncertain) {
        clean++;
        if (c !== 1 && !(replay && c === 2)) fail(`acknowledged span ${s.spanId}: logged ${c} times`);
        if (c === 2) dupAllowed++;
      } else if (r.acked) {
        if (c < 1 || c > r.attempts + replay) fail(`acknowledged (after a broken attempt) span ${s.spanId}: logged ${c} times, ${r.attempts} attempts`);
      } else if (c > r.attempts) {
        fail(`unacknowledged span ${s.spanId}: logged ${c} times, ${r.attempts} attempts`);
      }
    }
  }
  const sent = new Set(reqs.flatMap((r) => r.spans.map((s) => s.spanId)));
  const stray = events.filter((e) => !sent.has(e.span_id));
  check(stray.length === 0, `${stray.length} events with span ids never sent`);
  log(`event log: ${events.length} events for ${sent.size} spans; ${clean} acknowledged cleanly, ` +
    `${dupAllowed} of them applied twice by the restarted aggregator`);
  check(events.length >= want.size, `${events.length} events < ${want.size} acknowledged spans`);

  if (CASE === 'sidecar-kill') {
    // The restarted sidecar delivered what the killed one had spooled under the old id.
    const m = await metrics(sc.adminPort);
    log(`restarted sidecar: shipped ${JSON.stringify(Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('sentinel_sidecar_batches_shipped_total'))))}`);
  }
  check((await sc.kill('SIGTERM')).code === 0, 'sidecar exit status after SIGTERM');
  check((await agg.kill('SIGTERM')).code === 0, 'aggregator exit status after SIGTERM');
});
