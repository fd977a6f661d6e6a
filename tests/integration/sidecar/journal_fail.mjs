// integration.sidecar_journal_fail: the journal cannot be written. The sidecar runs with a file
// size limit (bash `ulimit -f 64`, SIGXFSZ ignored, so a write past 64 KiB fails with EFBIG)
// and a 2 s flush interval: each journal generation fills its file within a few requests, the
// next journal write fails, and the request must get a retryable refusal (HTTP 503 with
// Retry-After) that leaves nothing of it behind; the next seal starts a new journal file and
// requests are accepted again. Spool segments stay within the limit (spool.segment_bytes 64KiB;
// a sealed batch, compressed, is smaller than the journal file it came from).
// At the end (SIGTERM drain) every span of an accepted request has reached the aggregator exactly
// once, no span of a refused request has, and sentinel_sidecar_journal_errors_total counted the
// failures.
import path from 'node:path';

import {
  check, checkExactlyOnce, freePort, randomHex, httpRequest, log, makeSpan, metrics, otlpJson, run, sleep, startAggregator,
  startSidecar, tempDir, waitEventLog,
} from './lib.mjs';

await run('sidecar_journal_fail', async () => {
  const dir = tempDir('journal-fail-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ port: await freePort(), eventLog });
  const sc = await startSidecar({
    aggregatorPort: agg.port,
    spoolDir: path.join(dir, 'spool'),
    // $0 is the sidecar binary, "$@" its arguments.
    prefix: ['bash', '-c', 'trap "" XFSZ; ulimit -f 64; exec "$0" "$@"'],
    extra: ['--set', 'batch.flush_interval=2s', '--set', 'spool.segment_bytes=64KiB',
      '--set', 'batch.max_events=100000'],
  });

  const accepted = [];
  const refusedIds = [];
  let refusals = 0;
  let acceptedAfterRefusal = 0;
  const retryAfter = new Set();
  const deadline = Date.now() + 40000;
  while (Date.now() < deadline && (refusals < 3 || acceptedAfterRefusal < 5)) {
    const spans = Array.from({ length: 50 }, (_, k) => makeSpan('gpt-4o', 700 + k, { user: randomHex(31) }));
    const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', {
      headers: { 'Content-Type': 'application/json' },
      body: otlpJson(spans, 'journal-api'),
    });
    if (r.status === 200) {
      accepted.push(...spans.map((s) => s.spanId));
      if (refusals > 0) acceptedAfterRefusal++;
    } else if (r.status === 503) {
      refusals++;
      refusedIds.push(...spans.map((s) => s.spanId));
      retryAfter.add(r.headers['retry-after']);
      await sleep(100);
    } else {
      check(false, `HTTP ${r.status} ${r.body}`);
      break;
    }
  }
  const m = await metrics(sc.adminPort);
  const journalErrors = m.sentinel_sidecar_journal_errors_total;
  log(`${accepted.length} spans accepted, ${refusals} requests refused, ${acceptedAfterRefusal} accepted after a ` +
    `refusal, journal_errors_total ${journalErrors}`);
  check(refusals >= 3, `only ${refusals} refusals: the journal never failed`);
  check(acceptedAfterRefusal >= 5, `only ${acceptedAfterRefusal} requests accepted after the first refusal`);
  check(journalErrors >= refusals, `journal_errors_total ${journalErrors} < ${refusals} refusals`);
  check([...retryAfter].every((v) => Number(v) >= 1), `Retry-After values ${[...retryAfter]}`);

  check((await sc.kill('SIGTERM')).code === 0, 'sidecar exit status after SIGTERM');
  const want = new Set(accepted);
  await waitEventLog(eventLog, (ls) => ls.filter((l) => l.type === 'event').length >= want.size, 30000);
  await sleep(300);
  const events = (await waitEventLog(eventLog, () => true, 0)).filter((l) => l.type === 'event');
  checkExactlyOnce(events, accepted, refusedIds);
  await agg.kill('SIGTERM');
});
