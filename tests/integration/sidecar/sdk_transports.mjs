// integration.sidecar_sdk_transports: the official OpenTelemetry JS SDK exports LLM spans through
// the real sentinel-sidecar with each of its trace exporters -- OTLP/gRPC, OTLP/HTTP protobuf and
// OTLP/HTTP JSON, each without and with gzip -- and every fact the sidecar extracted is checked
// where it arrives: the real sentinel-aggregator's debug.event_log.
//
// Each export must be acknowledged (ExportResultCode.SUCCESS); every LLM span must appear exactly
// once, with the SDK's trace and span ids, its exact start/end nanoseconds and every fact of
// ../otel-js/llm_spans.mjs (facts a span does not carry must be unknown, not 0); the non-LLM span
// must not appear. The sidecar's request counters must show each protocol was used.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import {
  OTEL_JS, check, fail, log, metrics, readEventLog, run, sdk, startAggregator, startSidecar,
  tempDir, waitEventLog,
} from './lib.mjs';

const CONV = { genai: 1, openinference: 2, openllmetry: 4 };
// Every per-event field of the event log, with the value it must have when the span does not
// say: strings empty, numbers unknown (null).
const STRINGS = ['service', 'model', 'provider', 'operation', 'region', 'service_version', 'pod', 'user',
  'error_type', 'finish_reason'];
const NUMBERS = ['ttft_ms', 'input_tokens', 'output_tokens', 'total_tokens', 'cache_read_tokens',
  'cache_write_tokens', 'reasoning_tokens'];

await run('sidecar_sdk_transports', async () => {
  const { SpanKind } = await sdk('@opentelemetry/api');
  const { resourceFromAttributes } = await sdk('@opentelemetry/resources');
  const { BasicTracerProvider, SimpleSpanProcessor, InMemorySpanExporter } = await sdk('@opentelemetry/sdk-trace-base');
  const grpcExp = await sdk('@opentelemetry/exporter-trace-otlp-grpc');
  const protoExp = await sdk('@opentelemetry/exporter-trace-otlp-proto');
  const jsonExp = await sdk('@opentelemetry/exporter-trace-otlp-http');
  const { llmSpanSpecs, resourceAttributes } = await import(pathToFileURL(path.join(OTEL_JS, 'llm_spans.mjs')).href);

  const dir = tempDir('sdk-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ eventLog });
  const sc = await startSidecar({ aggregatorPort: agg.port, spoolDir: path.join(dir, 'spool') });
  log(`aggregator :${agg.port}, sidecar grpc :${sc.grpcPort} http :${sc.httpPort}`);

  const T0 = Math.floor(Date.now() / 1000) - 3600; // an hour ago: recent, exact
  const at = (sec, ns) => [T0 + sec, ns];
  const exporters = [
    ['grpc', 'none', () => new grpcExp.OTLPTraceExporter({ url: `http://127.0.0.1:${sc.grpcPort}`, compression: 'none' })],
    ['grpc', 'gzip', () => new grpcExp.OTLPTraceExporter({ url: `http://127.0.0.1:${sc.grpcPort}`, compression: 'gzip' })],
    ['http/protobuf', 'none', () => new protoExp.OTLPTraceExporter({ url: `http://127.0.0.1:${sc.httpPort}/v1/traces`, compression: 'none' })],
    ['http/protobuf', 'gzip', () => new protoExp.OTLPTraceExporter({ url: `http://127.0.0.1:${sc.httpPort}/v1/traces`, compression: 'gzip' })],
    ['http/json', 'none', () => new jsonExp.OTLPTraceExporter({ url: `http://127.0.0.1:${sc.httpPort}/v1/traces`, compression: 'none' })],
    ['http/json', 'gzip', () => new jsonExp.OTLPTraceExporter({ url: `http://127.0.0.1:${sc.httpPort}/v1/traces`, compression: 'gzip' })],
  ];

  const expected = []; // {run, spec, traceId, spanId, startNs, endNs}
  for (const [proto, comp, make] of exporters) {
    const memory = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes(resourceAttributes),
      spanProcessors: [new SimpleSpanProcessor(memory)],
    });
    const tracer = provider.getTracer('sidecar-it', '1.0.0');
    for (const spec of llmSpanSpecs(at)) {
      const span = tracer.startSpan(spec.name, { kind: SpanKind.CLIENT, startTime: spec.start, attributes: spec.attributes });
      if (spec.status) span.setStatus(spec.status);
      span.end(spec.end);
      const ctx = span.spanContext();
      const ns = (t) => BigInt(t[0]) * 1000000000n + BigInt(t[1]);
      expected.push({ run: `${proto}+${comp}`, spec, traceId: ctx.traceId, spanId: ctx.spanId,
        startNs: ns(spec.start).toString(), endNs: ns(spec.end).toString() });
    }
    const spans = memory.getFinishedSpans();
    const exporter = make();
    const result = await new Promise((resolve) => exporter.export(spans, resolve));
    check(result.code === 0, `${proto}+${comp}: export result ${result.code} ${result.error ?? ''}`);
    await exporter.shutdown();
    await provider.shutdown();
    log(`${proto}+${comp}: exported ${spans.length} spans, result ${result.code}`);
  }

  const llm = expected.filter((e) => e.spec.facts !== null);
  const want = new Set(llm.map((e) => e.spanId));
  const lines = await waitEventLog(eventLog, (ls) => {
    const seen = new Set(ls.filter((l) => l.type === 'event').map((l) => l.span_id));
    return [...want].every((id) => seen.has(id));
  }, 15000);
  const events = lines.filter((l) => l.type === 'event');
  check(events.length === llm.length, `${events.length} events in the event log, ${llm.length} LLM spans exported`);
  check(lines.every((l) => l.type !== 'alert'), 'no alert expected from 6 samples per model');

  for (const e of expected) {
    const label = `${e.run} "${e.spec.name}"`;
    const got = events.filter((ev) => ev.span_id === e.spanId);
    if (e.spec.facts === null) {
      check(got.length === 0, `${label}: not an LLM call, yet ${got.length} event(s)`);
      continue;
    }
    if (!check(got.length === 1, `${label}: ${got.length} events with span id ${e.spanId}`)) continue;
    const ev = got[0];
    const f = e.spec.facts;
    check(ev.trace_id === e.traceId, `${label}: trace_id ${ev.trace_id}, SDK ${e.traceId}`);
    check(ev.sidecar_id === sc.sidecarId, `${label}: sidecar_id ${ev.sidecar_id}, want ${sc.sidecarId}`);
    check(ev.start_unix_nano_raw === e.startNs, `${label}: start ${ev.start_unix_nano_raw}, want ${e.startNs}`);
    check(ev.end_unix_nano_raw === e.endNs, `${label}: end ${ev.end_unix_nano_raw}, want ${e.endNs}`);
    for (const k of STRINGS) {
      const w = f[k] ?? '';
      check(ev[k] === w, `${label}: ${k} ${JSON.stringify(ev[k])}, want ${JSON.stringify(w)}`);
    }
    for (const k of NUMBERS) {
      const w = f[k] ?? null;
      check(ev[k] === w || (typeof w === 'number' && Math.abs(ev[k] - w) < 1e-9),
        `${label}: ${k} ${JSON.stringify(ev[k])}, want ${JSON.stringify(w)}`);
    }
    check(Math.abs(ev.latency_ms - f.latency_ms) < 1e-6, `${label}: latency_ms ${ev.latency_ms}, want ${f.latency_ms}`);
    check(ev.is_error === f.is_error, `${label}: is_error ${ev.is_error}, want ${f.is_error}`);
    const bits = f.conventions.reduce((a, c) => a | CONV[c], 0);
    check((ev.conventions & bits) === bits, `${label}: conventions ${ev.conventions} lack ${bits}`);
    if (f.cost_source === 'span') {
      check(ev.cost_source === 'span' && Math.abs(ev.cost_usd - f.cost_usd) < 1e-12,
        `${label}: cost ${ev.cost_usd} (${ev.cost_source}), want ${f.cost_usd} (span)`);
    } else if (f.cost_source === 'price_table') {
      check(ev.cost_source === 'price_table' && ev.cost_usd > 0, `${label}: cost ${ev.cost_usd} (${ev.cost_source}), want a priced cost`);
    }
    // Known or not, the pair must agree: a cost exactly when it has a source.
    check((ev.cost_source === 'span' || ev.cost_source === 'price_table') === (typeof ev.cost_usd === 'number'),
      `${label}: cost_usd ${ev.cost_usd} with cost_source ${ev.cost_source}`);
  }

  // Each protocol was used (gRPC and HTTP requests counted separately), none refused.
  const m = await metrics(sc.adminPort);
  check(m['sentinel_sidecar_otlp_requests_total{signal="traces",protocol="grpc",outcome="ok"}'] === 2,
    `gRPC trace requests ok: ${m['sentinel_sidecar_otlp_requests_total{signal="traces",protocol="grpc",outcome="ok"}']}, want 2`);
  check(m['sentinel_sidecar_otlp_requests_total{signal="traces",protocol="http",outcome="ok"}'] === 4,
    `HTTP trace requests ok: ${m['sentinel_sidecar_otlp_requests_total{signal="traces",protocol="http",outcome="ok"}']}, want 4`);
  check(m.sentinel_sidecar_llm_events_total === llm.length, `llm_events_total ${m.sentinel_sidecar_llm_events_total}, want ${llm.length}`);
  check(m.sentinel_sidecar_spans_received_total === expected.length, `spans_received_total ${m.sentinel_sidecar_spans_received_total}, want ${expected.length}`);

  // A clean shutdown of both: exit status 0.
  const s = await sc.kill('SIGTERM');
  check(s.code === 0, `sidecar exit ${s.code}/${s.signal} after SIGTERM`);
  const a = await agg.kill('SIGTERM');
  check(a.code === 0, `aggregator exit ${a.code}/${a.signal} after SIGTERM`);
  if (readEventLog(eventLog).filter((l) => l.type === 'event').length !== llm.length) fail('events changed after shutdown');
});
