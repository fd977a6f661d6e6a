// Exports LLM spans with the official OpenTelemetry JS SDK and OTLP/HTTP protobuf exporter to a
// local HTTP server, and saves what the exporter sent.
//
//   node export.mjs OUTDIR
//
// Writes OUTDIR/request-<n>.pb (each POST /v1/traces body, as received) and
// OUTDIR/expected.json: for every span, the facts LLM-Sentinel should extract from it (null when
// the span is not an LLM call), with the trace and span ids the SDK assigned.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

import { SpanKind } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

import { llmSpanSpecs, resourceAttributes } from './llm_spans.mjs';

const outDir = process.argv[2];
if (!outDir) {
  console.error('usage: node export.mjs OUTDIR');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });

// --- the receiving end: a bare HTTP server that stores request bodies ---
const bodies = [];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const type = req.headers['content-type'] || '';
    if (req.method !== 'POST' || req.url !== '/v1/traces' || !type.startsWith('application/x-protobuf')) {
      console.error(`unexpected request: ${req.method} ${req.url} ${type}`);
      res.writeHead(400).end();
      return;
    }
    if (req.headers['content-encoding'] && req.headers['content-encoding'] !== 'identity') {
      console.error(`unexpected content-encoding: ${req.headers['content-encoding']}`);
      res.writeHead(415).end();
      return;
    }
    bodies.push(Buffer.concat(chunks));
    res.writeHead(200, { 'Content-Type': 'application/x-protobuf' }).end();
  });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();

// --- the sending end: the SDK as an application would set it up ---
const resource = resourceFromAttributes(resourceAttributes);
const exporter = new OTLPTraceExporter({ url: `http://127.0.0.1:${port}/v1/traces` });
const provider = new BasicTracerProvider({
  resource,
  spanProcessors: [new BatchSpanProcessor(exporter, { maxExportBatchSize: 512, scheduledDelayMillis: 60000 })],
});
const tracer = provider.getTracer('llm-sentinel-compat', '1.0.0');

// Fixed span times (unix seconds + nanoseconds) so latencies are exact.
const T0 = 1767225600; // 2026-01-01T00:00:00Z
const at = (sec, ns) => [T0 + sec, ns];
const expected = [];

function record(span, start, end, facts) {
  const ctx = span.spanContext();
  const startNs = BigInt(start[0]) * 1000000000n + BigInt(start[1]);
  const endNs = BigInt(end[0]) * 1000000000n + BigInt(end[1]);
  expected.push({
    name: span.name,
    trace_id: ctx.traceId,
    span_id: ctx.spanId,
    start_unix_nano: startNs.toString(),
    end_unix_nano: endNs.toString(),
    facts,
  });
}

function emit(name, start, end, attributes, facts, status) {
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, startTime: start, attributes });
  if (status) span.setStatus(status);
  span.end(end);
  record(span, start, end, facts);
}

for (const s of llmSpanSpecs(at)) emit(s.name, s.start, s.end, s.attributes, s.facts, s.status);

await provider.forceFlush();
await provider.shutdown();
server.close();

if (bodies.length === 0) {
  console.error('the exporter sent nothing');
  process.exit(1);
}
bodies.forEach((b, i) => fs.writeFileSync(path.join(outDir, `request-${i}.pb`), b));
fs.writeFileSync(path.join(outDir, 'expected.json'), JSON.stringify(expected, null, 2) + '\n');
console.log(`export.mjs: ${expected.length} spans, ${bodies.length} request(s) written to ${outDir}`);
