// integration.sidecar_genai_metrics: GenAI metrics feed facts where spans are absent, through the
// real sidecar and the real aggregator.
//
//   1. metrics only: 30 delta intervals of gen_ai.client.operation.duration (5 calls, ~1 s each)
//      and gen_ai.client.token.usage (input ~100, output ~50 per call), hand-built OTLP/JSON to
//      /v1/metrics. The aggregator must hold latency_ms, input_tokens and output_tokens
//      baselines of that pair with exactly 30 samples (one per interval: its mean), count
//      30 x 5 calls, and a 31st interval whose mean latency is 20 s must raise a latency_spike
//      with context.signal "metrics" and details.calls 5.
//   2. spans and metrics of one pair: 20 spans, then metric points of the same pair. The points
//      are counted as covered by the sidecar and never reach the aggregator: the pair's
//      latency baseline has 20 samples (the spans), not 21, and no call is counted twice.
//   3. the local-alert suppressed count: with local.alert_interval=1s, three spikes in a row
//      ship one alert and hold back two; a fourth spike after the interval ships with
//      suppressed = 2, which the event log and the aggregator's alert (details.
//      sidecar_suppressed) show.
//   4. acknowledged points survive a kill -9: a second sidecar with a 60 s flush interval takes
//      10 metric requests (a pair without spans, distinct call counts), answers each 200 --
//      only after the aggregates are in its journal -- and is killed with SIGKILL before any
//      seal. Restarted on the same spool directory, it re-seals the journal: at the aggregator
//      every acknowledged interval's calls arrive exactly once (one aggregate per interval and
//      metric, calls summing to what was sent), none of them before the restart.
import path from 'node:path';

import {
  check, httpRequest, log, makeSpan, metrics, otlpJson, readEventLog, run, sleep, startAggregator,
  startSidecar, tempDir, waitEventLog, SLOW,
} from './lib.mjs';

const SEC = 1000000000n;

const post = (port, urlPath, body) =>
  httpRequest(port, 'POST', urlPath, { headers: { 'Content-Type': 'application/json' }, body });

const attr = (key, v) => ({ key, value: { stringValue: v } });

// One OTLP/JSON ExportMetricsServiceRequest: a delta histogram point per entry of points:
// {name, unit, attrs: [...], startNs, endNs, count, sum, min, max}.
function metricsJson(service, points) {
  return JSON.stringify({
    resourceMetrics: [
      {
        resource: { attributes: [attr('service.name', service)] },
        scopeMetrics: [
          {
            scope: { name: 'genai-metrics-it' },
            metrics: points.map((p) => ({
              name: p.name,
              unit: p.unit,
              histogram: {
                aggregationTemporality: 1,
                dataPoints: [
                  {
                    attributes: p.attrs,
                    startTimeUnixNano: p.startNs.toString(),
                    timeUnixNano: p.endNs.toString(),
                    count: String(p.count),
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                    bucketCounts: [],
                    explicitBounds: [],
                  },
                ],
              },
            })),
          },
        ],
      },
    ],
  });
}

// The three points of one interval of `calls` calls of model: duration (mean latencyS seconds),
// input and output token usage (means inTok, outTok).
function interval(model, startNs, endNs, calls, latencyS, inTok, outTok) {
  const base = [attr('gen_ai.operation.name', 'chat'), attr('gen_ai.provider.name', 'openai'),
    attr('gen_ai.request.model', model)];
  return [
    { name: 'gen_ai.client.operation.duration', unit: 's', attrs: base, startNs, endNs, count: calls,
      sum: latencyS * calls, min: latencyS * 0.9, max: latencyS * 1.1 },
    { name: 'gen_ai.client.token.usage', unit: '{token}', attrs: [...base, attr('gen_ai.token.type', 'input')],
      startNs, endNs, count: calls, sum: inTok * calls, min: inTok, max: inTok },
    { name: 'gen_ai.client.token.usage', unit: '{token}', attrs: [...base, attr('gen_ai.token.type', 'output')],
      startNs, endNs, count: calls, sum: outTok * calls, min: outTok, max: outTok },
  ];
}

async function api(port, p) {
  const r = await httpRequest(port, 'GET', p);
  check(r.status === 200, `GET ${p}: HTTP ${r.status} ${r.body}`);
  return JSON.parse(r.body.toString());
}

// The baseline of (service, model, metric) from /api/v1/baselines, or undefined.
async function baseline(port, service, model, metric) {
  const j = await api(port, `/api/v1/baselines?service=${service}&model=${model}&metric=${metric}`);
  return (j.baselines ?? []).find((b) => b.service === service && b.model === model && b.metric === metric);
}

// Retries fn until it returns a truthy value, up to ms; returns the last value.
async function until(fn, ms) {
  const deadline = Date.now() + ms * SLOW;
  for (;;) {
    const v = await fn();
    if (v || Date.now() > deadline) return v;
    await sleep(100);
  }
}

await run('sidecar_genai_metrics', async () => {
  const dir = tempDir('genai-metrics-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ eventLog });
  const restPort = (await agg.waitLog((j) => j.msg === 'REST API listening', 10000, 'REST API')).port;
  const sc = await startSidecar({
    aggregatorPort: agg.port,
    spoolDir: path.join(dir, 'spool'),
    extra: ['--set', 'local.alert_interval=1s'],
  });
  const model = 'gpt-4o';

  // --- 1. metrics only ---
  const svc = 'metrics-api';
  // Intervals up to now: a gap between the last interval and the aggregator's clock would be
  // (rightly) a throughput drop.
  const t0 = BigInt(Date.now()) * 1000000n - 300n * SEC;
  for (let i = 0; i < 30; i++) {
    const start = t0 + BigInt(i) * 10n * SEC;
    const jitter = 1 + (((i * 37) % 11) - 5) / 100; // +-5 %
    const r = await post(sc.httpPort, '/v1/metrics',
      metricsJson(svc, interval(model, start, start + 10n * SEC, 5, 1.0 * jitter, 100 * jitter, 50 * jitter)));
    check(r.status === 200, `interval ${i}: HTTP ${r.status} ${r.body}`);
  }
  const seen = async (service, metric) => (await baseline(restPort, service, model, metric))?.seen;
  await until(async () => (await seen(svc, 'output_tokens')) === 30, 10000);
  for (const metric of ['latency_ms', 'input_tokens', 'output_tokens']) {
    const b = await baseline(restPort, svc, model, metric);
    check(b !== undefined, `no ${metric} baseline for ${svc}/${model}`);
    if (b) {
      log(`${metric} baseline: ${JSON.stringify(b)}`);
      check(b.seen === 30, `${metric} baseline saw ${b.seen} samples, want 30 (one per interval)`);
      const want = { latency_ms: 1000, input_tokens: 100, output_tokens: 50 }[metric];
      check(Math.abs(b.mean - want) / want < 0.05, `${metric} baseline mean ${b.mean}, want ~${want}`);
    }
  }
  check((await seen(svc, 'total_tokens')) === undefined, 'a total_tokens baseline from metrics');
  let sm = await metrics(sc.adminPort);
  check(sm['sentinel_sidecar_genai_metric_facts_total{outcome="queued"}'] === 90,
    `sidecar queued ${sm['sentinel_sidecar_genai_metric_facts_total{outcome="queued"}']} aggregates, want 90`);
  // The aggregator's /metrics are refreshed every second.
  let am = await until(async () => {
    const x = await metrics(restPort);
    return x.sentinel_aggregator_aggregates_applied_total >= 90 ? x : null;
  }, 5000) ?? (await metrics(restPort));
  check(am.sentinel_aggregator_aggregates_applied_total === 90, `aggregates applied ${am.sentinel_aggregator_aggregates_applied_total}, want 90`);
  check(am.sentinel_aggregator_aggregate_calls_total === 150, `calls ${am.sentinel_aggregator_aggregate_calls_total}, want 150`);
  const noAlertYet = await api(restPort, `/api/v1/anomalies?service=${svc}`);
  check((noAlertYet.anomalies ?? []).length === 0, `anomalies during the metric baseline: ${JSON.stringify(noAlertYet)}`);

  // The shift: one interval whose calls take 20 s on average.
  const shiftStart = t0 + 30n * 10n * SEC;
  let r = await post(sc.httpPort, '/v1/metrics',
    metricsJson(svc, interval(model, shiftStart, shiftStart + 10n * SEC, 5, 20.0, 100, 50)));
  check(r.status === 200, `shift interval: HTTP ${r.status}`);
  const spike = await until(async () => {
    const j = await api(restPort, `/api/v1/anomalies?service=${svc}`);
    return (j.anomalies ?? []).find((a) => a.anomaly_type === 'latency_spike');
  }, 10000);
  if (check(spike !== undefined, 'no latency_spike anomaly from the shifted metric interval')) {
    log(`metrics anomaly: ${JSON.stringify(spike)}`);
    check(spike.model === model, `anomaly model ${spike.model}`);
    check(spike.details.metric === 'latency_ms', `anomaly metric ${spike.details.metric}`);
    check(Math.abs(spike.details.value - 20000) < 1e-6, `anomaly value ${spike.details.value}, want 20000 (the interval mean)`);
    check(spike.details.calls === 5, `anomaly details.calls ${spike.details.calls}, want 5`);
    check(spike.context.signal === 'metrics', `anomaly context.signal ${spike.context.signal}`);
    check(spike.context.source === 'aggregator', `anomaly context.source ${spike.context.source}`);
  }
  const lines = readAggregates(eventLog);
  check(lines.length === 93, `${lines.length} aggregate lines in the event log, want 93`);

  // --- 2. spans and metrics of one pair: counted once ---
  const mixed = 'mixed-api';
  for (let i = 0; i < 20; i++) {
    r = await post(sc.httpPort, '/v1/traces', otlpJson([makeSpan(model, 950 + ((i * 37) % 100))], mixed));
    check(r.status === 200, `span ${i}: HTTP ${r.status}`);
  }
  const now = BigInt(Date.now()) * 1000000n;
  r = await post(sc.httpPort, '/v1/metrics', metricsJson(mixed, interval(model, now - 10n * SEC, now, 20, 1.0, 100, 50)));
  check(r.status === 200, `mixed metrics: HTTP ${r.status}`);
  await until(async () => (await seen(mixed, 'latency_ms')) === 20, 10000);
  await sleep(500); // a batch holding the points would have arrived by now
  check((await seen(mixed, 'latency_ms')) === 20, `mixed pair latency baseline saw ${await seen(mixed, 'latency_ms')}, want 20 (spans only)`);
  sm = await metrics(sc.adminPort);
  check(sm['sentinel_sidecar_genai_metric_facts_total{outcome="covered"}'] === 3,
    `covered points ${sm['sentinel_sidecar_genai_metric_facts_total{outcome="covered"}']}, want 3`);
  await sleep(1200); // one /metrics refresh
  am = await metrics(restPort);
  check(am.sentinel_aggregator_aggregate_calls_total === 155, `calls from metrics ${am.sentinel_aggregator_aggregate_calls_total}, want 155 (the mixed pair's not counted)`);
  check(!readAggregates(eventLog).some((l) => l.service === mixed), 'aggregates of the span-covered pair reached the aggregator');

  // --- 3. the local-alert suppressed count ---
  const held = 'held-api';
  for (let i = 0; i < 30; i++) {
    r = await post(sc.httpPort, '/v1/traces', otlpJson([makeSpan(model, 950 + ((i * 37) % 100))], held));
    check(r.status === 200, `held baseline ${i}: HTTP ${r.status}`);
  }
  for (let i = 0; i < 3; i++) {
    r = await post(sc.httpPort, '/v1/traces', otlpJson([makeSpan(model, 60000)], held));
    check(r.status === 200, `spike ${i}: HTTP ${r.status}`);
  }
  await sleep(1300);
  r = await post(sc.httpPort, '/v1/traces', otlpJson([makeSpan(model, 60000)], held));
  check(r.status === 200, `last spike: HTTP ${r.status}`);
  const heldSpike = (l) => l.type === 'alert' && l.service === held && l.anomaly_type === 'latency_spike';
  const alertLines = (await waitEventLog(eventLog, (ls) => ls.filter(heldSpike).length >= 2, 10000))
    .filter(heldSpike);
  log(`held-api alerts: ${JSON.stringify(alertLines.map((a) => [a.anomaly_type, a.suppressed]))}`);
  check(alertLines.length === 2, `${alertLines.length} latency_spike local alerts of ${held} shipped, want 2`);
  check(alertLines[0]?.suppressed === 0, `first alert suppressed ${alertLines[0]?.suppressed}, want 0`);
  check(alertLines[1]?.suppressed === 2, `second alert suppressed ${alertLines[1]?.suppressed}, want 2`);
  const heldAlert = await until(async () => {
    const j = await api(restPort, `/api/v1/anomalies?service=${held}`);
    return (j.anomalies ?? []).find((a) => a.anomaly_type === 'latency_spike' && a.details.sidecar_suppressed === 2);
  }, 10000);
  if (check(heldAlert !== undefined, `no ${held} alert with details.sidecar_suppressed 2`)) {
    log(`held-api alert: occurrences ${heldAlert.occurrences}`);
    check(heldAlert.occurrences >= 4, `occurrences ${heldAlert.occurrences}, want >= 4 (2 shipped + 2 held back)`);
  }
  // Every held-back count the sidecar shipped (other keys' alerts, e.g. throughput, included).
  // Both are read again until they agree: an alert ahead of its batch is counted when applied
  // and logged just after, and /metrics refreshes on its own clock.
  const shippedNow = () => readEventLog(eventLog).filter((l) => l.type === 'alert').reduce((n, l) => n + l.suppressed, 0);
  let shipped = shippedNow();
  am = await until(async () => {
    const x = await metrics(restPort);
    shipped = shippedNow();
    return x.sentinel_local_alerts_held_back_total === shipped ? x : null;
  }, 5000) ?? (await metrics(restPort));
  check(am.sentinel_local_alerts_held_back_total === shipped,
    `held back total ${am.sentinel_local_alerts_held_back_total}, want ${shipped} (the event log's sum)`);

  check((await sc.kill('SIGTERM')).code === 0, 'sidecar exit status after SIGTERM');

  // --- 4. acknowledged points survive a kill -9 before the seal ---
  const durable = 'durable-api';
  const spool2 = path.join(dir, 'spool-kill');
  const slow = ['--set', 'batch.flush_interval=60s'];
  let sc2 = await startSidecar({ aggregatorPort: agg.port, spoolDir: spool2, extra: slow });
  const tk = BigInt(Date.now()) * 1000000n - 200n * SEC;
  const sent = new Map(); // start time (ns, string) -> calls, for each acknowledged interval
  for (let i = 0; i < 10; i++) {
    const start = tk + BigInt(i) * 10n * SEC;
    const calls = i + 1;
    r = await post(sc2.httpPort, '/v1/metrics', metricsJson(durable, interval(model, start, start + 10n * SEC, calls, 1.0, 100, 50)));
    check(r.status === 200, `durable interval ${i}: HTTP ${r.status} ${r.body}`);
    if (r.status === 200) sent.set(start.toString(), calls);
  }
  const sm2 = await metrics(sc2.adminPort);
  check(sm2['sentinel_sidecar_batches_sealed_total'] === 0, `a batch was sealed before the kill (${sm2['sentinel_sidecar_batches_sealed_total']})`);
  check((await sc2.kill('SIGKILL')).signal === 'SIGKILL', 'sidecar killed with SIGKILL');
  await sleep(300);
  check(!readAggregates(eventLog).some((l) => l.service === durable), 'aggregates of the killed sidecar arrived before its restart');
  sc2 = await startSidecar({ aggregatorPort: agg.port, spoolDir: spool2, extra: slow });
  check(sc2.logs.some((j) => j.msg === 're-sealing events and aggregates a previous run accepted' && j.aggregates === 30),
    'the restarted sidecar did not re-seal the 30 journaled aggregates');
  const ofDurable = (ls) => ls.filter((l) => l.type === 'aggregate' && l.service === durable);
  const got = ofDurable(await waitEventLog(eventLog, (ls) => ofDurable(ls).length >= 30, 10000));
  await sleep(500); // a duplicate would have arrived by now
  const all = ofDurable(readEventLog(eventLog));
  log(`after the kill: ${got.length} aggregates of ${durable} arrived, ${all.length} after 0.5 s more`);
  check(all.length === 30, `${all.length} aggregates of ${durable}, want 30 (10 intervals x 3 metrics, once each)`);
  for (const metric of ['latency_ms', 'input_tokens', 'output_tokens']) {
    const byStart = new Map();
    for (const l of all.filter((x) => x.metric === metric))
      byStart.set(String(l.start_unix_nano), (byStart.get(String(l.start_unix_nano)) ?? 0) + l.count);
    for (const [start, calls] of sent)
      check(byStart.get(start) === calls, `${metric} interval ${start}: ${byStart.get(start)} calls arrived, want ${calls}`);
    check(byStart.size === sent.size, `${metric}: ${byStart.size} intervals arrived, want ${sent.size}`);
  }
  check((await sc2.kill('SIGTERM')).code === 0, 'restarted sidecar exit status after SIGTERM');
  check((await agg.kill('SIGTERM')).code === 0, 'aggregator exit status after SIGTERM');
});

// The event log's aggregate lines.
function readAggregates(file) {
  return readEventLog(file).filter((l) => l.type === 'aggregate');
}
