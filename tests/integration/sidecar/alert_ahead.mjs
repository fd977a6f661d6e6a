// integration.sidecar_alert_ahead: a local alert reaches the aggregator ahead of a spool backlog
// (docs/sidecar.md, "Local alerts ahead of the batches"), and is applied exactly once.
//
//  1. The aggregator is down: 30 baseline calls, each sealed into its own batch, pile up in the
//     sidecar's spool.
//  2. The aggregator starts slow (debug.ingest_delay holds every sequenced batch), so the backlog
//     drains one batch at a time; once it has applied the first, one spike raises a local alert.
//  3. The alert must be at the aggregator -- its "alert" fired log line, the event log's alert
//     line with sequence 0 -- while the applied sequence of this sidecar is still below the
//     backlog's last, and the sidecar counts it in sentinel_sidecar_local_alerts_ahead_total.
//  4. The aggregator is restarted (its state kept), the backlog drains, and the spike's own
//     batch brings the alert's second copy: the event log holds the alert once, the REST API
//     one latency_spike alert for the service, and the restarted aggregator counts a copy skipped
//     for each alert applied ahead (local_alert_copies_skipped: the applied alert_ids survived
//     the restart).
// The span -> alert-at-the-aggregator time is printed (measured, not asserted).
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import {
  check, freePort, httpRequest, log, makeSpan, metrics, otlpJson, readEventLog, run, sleep,
  startAggregator, startSidecar, tempDir, waitEventLog,
} from './lib.mjs';

const post = (port, body) =>
  httpRequest(port, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/json' }, body });

async function apiGet(port, p) {
  const r = await httpRequest(port, 'GET', p);
  check(r.status === 200, `GET ${p}: HTTP ${r.status} ${r.body}`);
  return JSON.parse(r.body.toString());
}

const appliedSeq = (lines, id) =>
  lines.filter((l) => l.type === 'batch' && l.sidecar_id === id).reduce((a, l) => Math.max(a, l.sequence), 0);

await run('sidecar_alert_ahead', async () => {
  const dir = tempDir('ahead-');
  const eventLog = path.join(dir, 'events.jsonl');
  const aggPort = await freePort();
  const service = 'ahead-api';
  const model = 'gpt-4o';
  const sc = await startSidecar({
    aggregatorPort: aggPort,
    spoolDir: path.join(dir, 'spool'),
    extra: ['--set', 'batch.flush_interval=10ms'],
  });

  // 1. The backlog: one batch per call while nobody listens on aggPort.
  const calls = 30;
  for (let i = 0; i < calls; i++) {
    const r = await post(sc.httpPort, otlpJson([makeSpan(model, 950 + ((i * 37) % 100))], service));
    check(r.status === 200, `baseline call ${i}: HTTP ${r.status} ${r.body}`);
    await sleep(25);
  }
  await sleep(200);
  let m = await metrics(sc.adminPort);
  const backlog = m.sentinel_sidecar_spool_batches;
  log(`backlog: ${backlog} batches in the spool`);
  check(backlog >= 10, `${backlog} batches in the spool, want >= 10`);
  check(!sc.logs.some((j) => j.msg === 'local alert'), 'a local alert during the baseline');

  // 2. A slow aggregator: each sequenced batch is held 300 ms.
  let agg = await startAggregator({ port: aggPort, eventLog, extra: ['--set', 'debug.ingest_delay=300ms'] });
  let lines = await waitEventLog(eventLog, (ls) => appliedSeq(ls, sc.sidecarId) >= 1, 20000);
  check(appliedSeq(lines, sc.sidecarId) >= 1, 'the aggregator applied no batch of the backlog');

  const spike = makeSpan(model, 20000);
  const t0 = performance.now();
  const r = await post(sc.httpPort, otlpJson([spike], service));
  check(r.status === 200, `spike call: HTTP ${r.status}`);
  const local = await sc.waitLog((j) => j.msg === 'local alert' && j.anomaly_type === 'latency_spike', 5000, 'local alert');
  const fired = await agg.waitLog(
    (j) => j.msg === 'alert' && j.change === 'fired' && j.service === service && j.anomaly_type === 'latency_spike',
    5000, 'the alert at the aggregator');
  const ms = performance.now() - t0;
  // The event log gets an alert ahead of its batch once it is applied (just after "fired").
  lines = await waitEventLog(eventLog, (ls) => ls.some((l) => l.type === 'alert' && l.alert_id === local.alert_id), 5000);
  const applied = appliedSeq(lines, sc.sidecarId);
  log(`span -> alert at the aggregator: ${ms.toFixed(1)} ms (measured behind a slow backlog: ` +
      `one held batch of 300 ms may be in flight); applied sequence ${applied} of ${backlog}`);

  // 3. Ahead of the backlog.
  check(fired.source === 'sidecar', `alert source ${fired.source}, want sidecar`);
  check(applied < backlog, `applied sequence ${applied}: the backlog (${backlog}) was drained already`);
  const copies = lines.filter((l) => l.type === 'alert' && l.alert_id === local.alert_id);
  check(copies.length === 1 && copies[0].sequence === 0,
    `event log alert lines for ${local.alert_id}: ${JSON.stringify(copies)}, want one with sequence 0`);
  // The sidecar counts it once the answer is back (the aggregator logs before it answers). The
  // spike's call raises a second local alert besides its latency_spike (its tokens per second
  // fall as far); the two may go ahead in one call or two: every local alert goes ahead, so the
  // count is the number of local alerts the sidecar logged.
  const localIds = () => new Set(sc.logs.filter((j) => j.msg === 'local alert').map((j) => j.alert_id));
  for (let i = 0; i < 50; i++) {
    m = await metrics(sc.adminPort);
    if (m.sentinel_sidecar_local_alerts_ahead_total === localIds().size) break;
    await sleep(100);
  }
  const nLocal = localIds().size;
  log(`local alerts raised by the spike: ${JSON.stringify(sc.logs.filter((j) => j.msg === 'local alert').map((j) => [j.anomaly_type, j.metric]))}`);
  check(m.sentinel_sidecar_local_alerts_ahead_total === nLocal,
    `sentinel_sidecar_local_alerts_ahead_total = ${m.sentinel_sidecar_local_alerts_ahead_total}, want ${nLocal} (the local alerts logged)`);
  check(m.sentinel_sidecar_spool_batches >= 2, `spool already down to ${m.sentinel_sidecar_spool_batches} batches`);

  // 4. Restart the aggregator (state kept), no delay: the backlog and the spike's batch drain.
  check((await agg.kill('SIGTERM')).code === 0, 'aggregator exit status after SIGTERM');
  agg = await startAggregator({ port: aggPort, eventLog });
  const apiPort = (await agg.waitLog((j) => j.msg === 'REST API listening', 10000, 'REST API')).port;
  lines = await waitEventLog(eventLog, (ls) => ls.some((l) => l.type === 'event' && l.span_id === spike.spanId), 30000);
  const spikeEvent = lines.find((l) => l.type === 'event' && l.span_id === spike.spanId);
  check(spikeEvent !== undefined, 'the spike event never arrived');
  check(spikeEvent === undefined || spikeEvent.sequence > backlog,
    `the spike's batch ${spikeEvent && spikeEvent.sequence} is not after the backlog ${backlog}`);
  const all = lines.filter((l) => l.type === 'alert' && l.alert_id === local.alert_id);
  check(all.length === 1, `the alert was applied ${all.length} times (event log), want 1`);
  const sum = await apiGet(apiPort, '/api/v1/statistics/summary');
  // A copy applied ahead (its event log line has sequence 0) is remembered, so its batch copy is
  // skipped; one the aggregator's baseline did not confirm (the per-call throughput drop, which
  // the aggregator judges over an interval) was not applied ahead and is judged again.
  const ids = localIds();
  const aheadApplied = new Set(lines.filter((l) => l.type === 'alert' && l.sequence === 0 && ids.has(l.alert_id))
    .map((l) => l.alert_id)).size;
  check(aheadApplied >= 1, 'no local alert was applied ahead of its batch');
  check(sum.local_alert_copies_skipped === aheadApplied,
    `copies skipped after the restart: ${sum.local_alert_copies_skipped}, want ${aheadApplied} (the copies applied ahead)`);
  check(sum.local_alerts_ahead === 0, `alerts ahead after the restart: ${sum.local_alerts_ahead}, want 0`);
  const an = await apiGet(apiPort, `/api/v1/anomalies?service=${service}&anomaly_type=latency_spike`);
  check(an.total === 1, `${an.total} latency_spike alerts for ${service} in the store, want 1`);
  const events = lines.filter((l) => l.type === 'event');
  check(events.length === calls + 1, `${events.length} events, want ${calls + 1}`);
  m = await metrics(sc.adminPort);
  const fb = Object.entries(m).filter(([k]) => k.startsWith('sentinel_sidecar_local_alerts_fallback_total'));
  check(fb.every(([, v]) => v === 0), `alerts fallen back: ${JSON.stringify(fb)}`);

  check((await sc.kill('SIGTERM')).code === 0, 'sidecar exit status after SIGTERM');
  check((await agg.kill('SIGTERM')).code === 0, 'aggregator exit status after SIGTERM');
});
