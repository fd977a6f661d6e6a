// Span arrival -> local alert at the aggregator, measured (not asserted) through the real
// sentinel-sidecar and sentinel-aggregator on loopback (docs/sidecar.md, "Local alerts ahead of
// the batches"). Each spike is one OTLP/HTTP request with one 20 s call on a model warmed with 30
// calls of about 1 s; the time runs from just before the request to the aggregator's "alert"
// fired log line for that model (read from its stderr as it comes).
//
//   idle     the aggregator keeps up (no backlog)
//   backlog  the aggregator holds every sequenced batch 200 ms (debug.ingest_delay) while the
//            sidecar seals a batch every 10 ms under a steady trickle of calls, so a backlog grows
//
// Usage: node tests/bench/alert_latency.mjs --sidecar build/sidecar/sentinel-sidecar \
//          --aggregator build/aggregator/sentinel-aggregator [--spikes 10] [--send-ahead false]
// Wall-clock numbers on a shared machine are noisy; compare runs made side by side.
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import {
  check, httpRequest, log, makeSpan, opt, otlpJson, run, sleep, startAggregator, startSidecar,
  tempDir,
} from '../integration/sidecar/lib.mjs';

const SPIKES = Number(opt('--spikes', '10'));
const AHEAD = opt('--send-ahead', 'true');
const post = (port, body) =>
  httpRequest(port, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/json' }, body });

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function phase(name, extraAgg) {
  const dir = tempDir(`alat-${name}-`);
  const agg = await startAggregator({ eventLog: path.join(dir, 'events.jsonl'), extra: extraAgg });
  const sc = await startSidecar({
    aggregatorPort: agg.port,
    spoolDir: path.join(dir, 'spool'),
    extra: ['--set', 'batch.flush_interval=10ms', '--set', `local.send_ahead=${AHEAD}`],
  });
  const service = `alat-${name}`;
  const models = Array.from({ length: SPIKES }, (_, i) => `model-${i}`);
  for (const model of models) {
    const spans = Array.from({ length: 30 }, (_, i) => makeSpan(model, 950 + ((i * 37) % 100)));
    const r = await post(sc.httpPort, otlpJson(spans, service));
    check(r.status === 200, `warm-up ${model}: HTTP ${r.status}`);
  }
  await sleep(500);
  let stop = false;
  const trickle = (async () => {
    for (let i = 0; !stop; i++) {
      await post(sc.httpPort, otlpJson([makeSpan('trickle', 1000)], service));
      await sleep(15);
    }
  })();
  await sleep(1000);
  const ms = [];
  for (const model of models) {
    const t0 = performance.now();
    const r = await post(sc.httpPort, otlpJson([makeSpan(model, 20000)], service));
    check(r.status === 200, `spike ${model}: HTTP ${r.status}`);
    await agg.waitLog((j) => j.msg === 'alert' && j.change === 'fired' && j.model === model, 60000, `alert for ${model}`);
    ms.push(performance.now() - t0);
    await sleep(200);
  }
  stop = true;
  await trickle;
  const spooled = (await httpRequest(sc.adminPort, 'GET', '/metrics')).body.toString()
    .match(/^sentinel_sidecar_spool_batches (\d+)/m);
  log(`${name} (send_ahead=${AHEAD}): ${ms.length} alerts, span -> alert at the aggregator ` +
      `p50 ${pct(ms, 50).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms; ` +
      `spool at the end: ${spooled ? spooled[1] : '?'} batches`);
  await sc.kill('SIGTERM');
  await agg.kill('SIGTERM');
}

await run('alert_latency', async () => {
  await phase('idle', []);
  await phase('backlog', ['--set', 'debug.ingest_delay=200ms']);
});
