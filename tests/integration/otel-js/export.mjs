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

import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

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
const resource = resourceFromAttributes({
  [ATTR_SERVICE_NAME]: 'chatbot-api',
  [ATTR_SERVICE_VERSION]: '2.3.1',
  'cloud.region': 'eu-central-1',
  'k8s.pod.name': 'chatbot-api-6c9f7d8b5-x2x7q',
  'deployment.environment.name': 'production',
});
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

const resourceFacts = {
  service: 'chatbot-api',
  service_version: '2.3.1',
  region: 'eu-central-1',
  pod: 'chatbot-api-6c9f7d8b5-x2x7q',
};

// 1. OpenTelemetry GenAI, current names.
emit(
  'chat gpt-4o',
  at(0, 0),
  at(2, 500000000),
  {
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': 'az.ai.openai',
    'gen_ai.request.model': 'gpt-4o',
    'gen_ai.response.model': 'gpt-4o-2024-08-06',
    'gen_ai.usage.input_tokens': 1200,
    'gen_ai.usage.output_tokens': 350,
    'gen_ai.usage.cache_read.input_tokens': 200,
    'gen_ai.usage.reasoning.output_tokens': 0,
    'gen_ai.response.finish_reasons': ['stop', 'length'],
    'gen_ai.response.time_to_first_chunk': 0.42,
    'gen_ai.request.temperature': 0.2,
    'gen_ai.request.stop_sequences': ['\n\n'],
    'gen_ai.input.messages': '[{"role":"user","parts":[{"type":"text","content":"secret prompt"}]}]',
    'user.id': 'user-42',
    'server.address': 'my-resource.openai.azure.com',
  },
  {
    ...resourceFacts,
    model: 'gpt-4o-2024-08-06',
    provider: 'azure.ai.openai',
    operation: 'chat',
    finish_reason: 'stop',
    user: 'user-42',
    input_tokens: 1200,
    output_tokens: 350,
    total_tokens: 1550,
    cache_read_tokens: 200,
    reasoning_tokens: 0,
    latency_ms: 2500,
    ttft_ms: 420,
    is_error: false,
    cost_source: 'price_table',
    conventions: ['genai'],
  },
);

// 2. OpenTelemetry GenAI, old names, failed call.
emit(
  'chat gemini-1.5-pro',
  at(10, 250000000),
  at(11, 0),
  {
    'gen_ai.operation.name': 'chat',
    'gen_ai.system': 'vertex_ai',
    'gen_ai.request.model': 'gemini-1.5-pro',
    'gen_ai.usage.prompt_tokens': 800,
    'gen_ai.usage.completion_tokens': 120,
    'error.type': 'rate_limit_exceeded',
  },
  {
    ...resourceFacts,
    model: 'gemini-1.5-pro',
    provider: 'gcp.vertex_ai',
    operation: 'chat',
    error_type: 'rate_limit_exceeded',
    input_tokens: 800,
    output_tokens: 120,
    total_tokens: 920,
    latency_ms: 750,
    ttft_ms: null,
    is_error: true,
    conventions: ['genai'],
  },
  { code: SpanStatusCode.ERROR, message: '429 Too Many Requests' },
);

// 3. OpenInference (Arize/Phoenix instrumentations), with the span's own cost.
emit(
  'ChatCompletion',
  at(20, 0),
  at(23, 125000000),
  {
    'openinference.span.kind': 'LLM',
    'llm.model_name': 'claude-3-5-sonnet-20241022',
    'llm.provider': 'anthropic',
    'llm.system': 'anthropic',
    'llm.token_count.prompt': 500,
    'llm.token_count.completion': 60,
    'llm.token_count.total': 560,
    'llm.cost.total': 0.0123,
    'input.value': 'secret prompt',
    'output.value': 'secret answer',
  },
  {
    ...resourceFacts,
    model: 'claude-3-5-sonnet-20241022',
    provider: 'anthropic',
    input_tokens: 500,
    output_tokens: 60,
    total_tokens: 560,
    latency_ms: 3125,
    cost_usd: 0.0123,
    cost_source: 'span',
    is_error: false,
    conventions: ['openinference'],
  },
);

// 4. OpenLLMetry (Traceloop instrumentations).
emit(
  'openai.chat',
  at(30, 0),
  at(30, 900000000),
  {
    'llm.request.type': 'chat',
    'gen_ai.system': 'openai',
    'gen_ai.request.model': 'gpt-4o-mini',
    'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
    'gen_ai.usage.prompt_tokens': 30,
    'gen_ai.usage.completion_tokens': 10,
    'llm.usage.total_tokens': 40,
    'gen_ai.usage.cache_read_input_tokens': 5,
    'gen_ai.prompt.0.content': 'secret prompt',
  },
  {
    ...resourceFacts,
    model: 'gpt-4o-mini-2024-07-18',
    provider: 'openai',
    input_tokens: 30,
    output_tokens: 10,
    total_tokens: 40,
    cache_read_tokens: 5,
    latency_ms: 900,
    is_error: false,
    conventions: ['openllmetry'],
  },
);

// 5. Not an LLM call: must produce no event.
emit(
  'GET /healthz',
  at(40, 0),
  at(40, 1000000),
  { 'http.request.method': 'GET', 'url.path': '/healthz', 'http.response.status_code': 200, 'some.flags': [true, false] },
  null,
);

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
