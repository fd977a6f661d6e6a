// integration.sidecar_local_alert: local detection in the real sidecar. After a baseline of 30
// normal calls (latency 1000 ms +- 5 %), one call of 20 s must raise exactly one local
// latency_spike alert: logged by the sidecar ("local alert"), counted in /metrics
// (sentinel_sidecar_local_alerts_total{type="latency_spike",...} 1), and delivered to the
// aggregator's event log (type "alert", a UUID alert_id, the spike's service, model, value and
// trace id). The baseline calls alone must raise no latency alert.
import path from 'node:path';

import {
  UUID_RE, check, httpRequest, log, makeSpan, metrics, otlpJson, run, startAggregator, startSidecar,
  tempDir, waitEventLog,
} from './lib.mjs';

const post = (port, body) =>
  httpRequest(port, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/json' }, body });

await run('sidecar_local_alert', async () => {
  const dir = tempDir('alert-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ eventLog });
  const sc = await startSidecar({ aggregatorPort: agg.port, spoolDir: path.join(dir, 'spool') });
  const service = 'alert-api';
  const model = 'gpt-4o';

  // The baseline: one request per call, as an application with a simple span processor sends.
  for (let i = 0; i < 30; i++) {
    const r = await post(sc.httpPort, otlpJson([makeSpan(model, 950 + ((i * 37) % 100))], service));
    check(r.status === 200, `baseline call ${i}: HTTP ${r.status} ${r.body}`);
  }
  await new Promise((r) => setTimeout(r, 300));
  let m = await metrics(sc.adminPort);
  const latencyAlerts = (mm) =>
    Object.entries(mm).filter(([k]) => k.startsWith('sentinel_sidecar_local_alerts_total{type="latency_spike"'));
  check(latencyAlerts(m).every(([, v]) => v === 0), `latency alerts during the baseline: ${JSON.stringify(latencyAlerts(m))}`);
  check(!sc.logs.some((j) => j.msg === 'local alert'), 'a local alert during the baseline');

  const spike = makeSpan(model, 20000);
  const r = await post(sc.httpPort, otlpJson([spike], service));
  check(r.status === 200, `spike call: HTTP ${r.status}`);

  const line = await sc.waitLog((j) => j.msg === 'local alert' && j.anomaly_type === 'latency_spike', 5000, 'local alert');
  log(`sidecar logged: ${JSON.stringify(line)}`);
  check(line.service === service && line.model === model, `alert for ${line.service}/${line.model}`);
  check(line.metric === 'latency_ms', `alert metric ${line.metric}`);
  check(Math.abs(line.value - 20000) < 1e-6, `alert value ${line.value}, want 20000`);
  check(line.baseline > 900 && line.baseline < 1100, `alert baseline ${line.baseline}, want ~1000`);
  check(UUID_RE.test(line.alert_id), `alert_id ${line.alert_id} is not a UUID`);

  m = await metrics(sc.adminPort);
  const series = `sentinel_sidecar_local_alerts_total{type="latency_spike",severity="${line.severity}"}`;
  check(m[series] === 1, `${series} = ${m[series]}, want 1`);
  const total = latencyAlerts(m).reduce((a, [, v]) => a + v, 0);
  check(total === 1, `latency_spike alerts over all severities: ${total}, want 1`);

  // The alert comes ahead of its batch (sequence 0): wait for both, the alert and the spike event.
  const lines = await waitEventLog(eventLog, (ls) => ls.some((l) => l.type === 'alert' && l.anomaly_type === 'latency_spike') &&
    ls.some((l) => l.type === 'event' && l.span_id === spike.spanId), 10000);
  const alerts = lines.filter((l) => l.type === 'alert' && l.anomaly_type === 'latency_spike');
  if (check(alerts.length === 1, `${alerts.length} latency_spike alerts in the event log, want 1`)) {
    const a = alerts[0];
    check(a.alert_id === line.alert_id, `event log alert_id ${a.alert_id}, sidecar logged ${line.alert_id}`);
    check(UUID_RE.test(a.alert_id), `event log alert_id ${a.alert_id} is not a UUID`);
    check(a.service === service && a.model === model, `event log alert for ${a.service}/${a.model}`);
    check(a.metric === 'latency_ms' && Math.abs(a.value - 20000) < 1e-6, `event log alert ${a.metric} = ${a.value}`);
    check(a.severity === line.severity, `event log severity ${a.severity}, sidecar ${line.severity}`);
    check(a.trace_id === spike.traceId, `event log alert trace_id ${a.trace_id}, spike ${spike.traceId}`);
    check(a.sidecar_id === sc.sidecarId, `alert sidecar_id ${a.sidecar_id}`);
  }
  // Every call arrived once, the spike included.
  const events = lines.filter((l) => l.type === 'event');
  check(events.length === 31, `${events.length} events, want 31`);
  check(events.some((e) => e.span_id === spike.spanId && Math.abs(e.latency_ms - 20000) < 1e-6), 'the spike event is missing');

  check((await sc.kill('SIGTERM')).code === 0, 'sidecar exit status after SIGTERM');
  check((await agg.kill('SIGTERM')).code === 0, 'aggregator exit status after SIGTERM');
});
