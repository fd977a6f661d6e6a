// The sample LLM application of `make demo`: two services calling three models, instrumented the
// way a real application is -- the official OpenTelemetry JS SDK, one TracerProvider per service,
// GenAI semantic-convention spans exported over OTLP/gRPC -- with incidents on a schedule.
//
//   node app.mjs [--scenario FILE] [--duration SECONDS] [--rate CALLS_PER_S] [--truth FILE] [--seed N]
//
// No model is called and nothing leaves the machine but the spans: each simulated call draws its
// latency, time to first chunk and token counts from truncated log-normal distributions (clients
// time out and max_tokens caps answers, so the tails end), then records a span that started
// `latency` ago and ends now. The exporter goes where OTEL_EXPORTER_OTLP_ENDPOINT points
// (default http://localhost:4317). Environment: DEMO_DURATION (seconds) and DEMO_TRUTH_FILE.
//
// Incidents come from the scenario file (times in seconds from the start; see scenario.json):
//   latency_spike    one model `factor` times slower (first chunk and decoding)
//   token_spike      a prompt-injection loop: `fraction` of calls answer `factor` x the tokens
//   cost_drift       input tokens grow by `growth_per_10s` (compounded) on one service
//   error_rate       `fraction` of calls fail with error.type timeout or rate_limit
//   throughput_drop  decoding tokens/s multiplied by `factor` (0.5: halved)
// Each incident start and end is printed as one line ("incident start ID: ..."), and the schedule
// with absolute times (unix ms) is written to the truth file at start for whoever checks the
// alerts. The app stops after the duration, or on SIGINT/SIGTERM, flushing the exporters.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_ERROR_TYPE, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import {
  ATTR_CLOUD_REGION,
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MAX_TOKENS,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_REQUEST_TEMPERATURE,
  ATTR_GEN_AI_RESPONSE_FINISH_REASONS,
  ATTR_GEN_AI_RESPONSE_ID,
  ATTR_GEN_AI_RESPONSE_MODEL,
  ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
  ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  ATTR_SERVER_ADDRESS,
} from '@opentelemetry/semantic-conventions/incubating';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// --- arguments ---

function usage(msg) {
  if (msg) console.error(`demo-app: ${msg}`);
  console.error('usage: node app.mjs [--scenario FILE] [--duration SECONDS] [--rate CALLS_PER_S] [--truth FILE] [--seed N]');
  process.exit(2);
}
const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '-h' || a === '--help') usage();
  if (!['--scenario', '--duration', '--rate', '--truth', '--seed'].includes(a)) usage(`unknown argument ${a}`);
  if (i + 1 >= process.argv.length) usage(`${a} needs a value`);
  args[a.slice(2)] = process.argv[++i];
}
function positiveNumber(name, text) {
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0) usage(`${name} must be a positive number (got "${text}")`);
  return v;
}

const scenarioFile = path.resolve(args.scenario ?? path.join(HERE, 'scenario.json'));
let scenario;
try {
  scenario = JSON.parse(fs.readFileSync(scenarioFile, 'utf8'));
} catch (e) {
  usage(`cannot read the scenario ${scenarioFile}: ${e.message}`);
}
const durationText = args.duration ?? process.env.DEMO_DURATION;
const DURATION_S = durationText ? positiveNumber('--duration', durationText) : scenario.duration_s ?? 360;
const RATE = args.rate ? positiveNumber('--rate', args.rate) : scenario.rate_per_s ?? 30;
const SEED = args.seed ? positiveNumber('--seed', args.seed) : scenario.seed ?? 7;
const TRUTH_FILE = args.truth ?? process.env.DEMO_TRUTH_FILE ?? null;

// --- randomness: seeded, so a run can be repeated ---

let rngState = SEED >>> 0 || 1;
function random() {
  // mulberry32
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function gaussian() {
  const u = 1 - random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}
// A log-normal draw around `median` with log-sd `sigma`, cut at +-`cut` sigma.
function lognormal(median, sigma, cut = 2.5) {
  let z;
  do z = gaussian();
  while (Math.abs(z) > cut);
  return median * Math.exp(sigma * z);
}
function pick(items) {
  let r = random() * items.reduce((s, it) => s + it.weight, 0);
  for (const it of items) if ((r -= it.weight) < 0) return it;
  return items[items.length - 1];
}
function poisson(mean) {
  const l = Math.exp(-mean);
  let k = 0;
  for (let p = random(); p > l; p *= random()) k++;
  return k;
}
const hex = (n) => Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join('');

// --- the workload: models, services and what each service asks of each model ---

// maxTokens: the max_tokens each request sets (the model's output limit); longer answers stop there.
const MODELS = {
  'gpt-4o': { provider: 'openai', response: 'gpt-4o-2024-08-06', server: 'api.openai.com', ttftMs: 450, tps: 85, maxTokens: 16384, cache: 'openai' },
  'claude-sonnet-4': { provider: 'anthropic', response: 'claude-sonnet-4-20250514', server: 'api.anthropic.com', ttftMs: 700, tps: 60, maxTokens: 64000, cache: 'anthropic' },
  'gemini-2.5-flash': { provider: 'gcp.vertex_ai', response: 'gemini-2.5-flash', server: 'us-central1-aiplatform.googleapis.com', ttftMs: 300, tps: 160, maxTokens: 65536, cache: null },
};

const SERVICES = scenario.services ?? [
  {
    name: 'chatbot-api', version: '2.4.0', region: 'us-east-1', weight: 0.6,
    calls: [
      { model: 'gpt-4o', weight: 0.6, input: 900, output: 280, temperature: 0.7 },
      { model: 'claude-sonnet-4', weight: 0.4, input: 1400, output: 350, temperature: 0.5 },
    ],
  },
  {
    name: 'rag-search', version: '1.9.2', region: 'eu-west-1', weight: 0.4,
    calls: [
      { model: 'gemini-2.5-flash', weight: 0.7, input: 4200, output: 220, temperature: 0.2 },
      { model: 'gpt-4o', weight: 0.3, input: 3000, output: 180, temperature: 0.2 },
    ],
  },
];
for (const s of SERVICES)
  for (const c of s.calls) if (!MODELS[c.model]) usage(`service ${s.name}: unknown model ${c.model} (known: ${Object.keys(MODELS).join(', ')})`);

// --- incidents ---

const KINDS = ['latency_spike', 'token_spike', 'cost_drift', 'error_rate', 'throughput_drop'];
const incidents = (scenario.incidents ?? []).map((inc, i) => {
  const where = `incident ${inc.id ?? i}`;
  if (!KINDS.includes(inc.type)) usage(`${where}: type must be one of ${KINDS.join(', ')}`);
  if (!(inc.start_s >= 0)) usage(`${where}: start_s must be >= 0`);
  if (inc.model && !MODELS[inc.model]) usage(`${where}: unknown model ${inc.model}`);
  if (inc.service && !SERVICES.some((s) => s.name === inc.service)) usage(`${where}: unknown service ${inc.service}`);
  const end = inc.duration_s == null ? DURATION_S : inc.start_s + inc.duration_s;
  return { ...inc, id: inc.id ?? `${inc.type}-${i}`, end_s: Math.min(end, DURATION_S), active: false, done: false };
});

const appliesTo = (inc, svc, model) => (!inc.service || inc.service === svc.name) && (!inc.model || inc.model === model);
const scope = (inc) => [inc.service, inc.model].filter(Boolean).join('/') || 'every service';
function describe(inc) {
  switch (inc.type) {
    case 'latency_spike': return `latency spike: ${scope(inc)} ${inc.factor}x slower`;
    case 'token_spike': return `prompt-injection token blow-up: ${Math.round(inc.fraction * 100)} % of ${scope(inc)} calls answer ${inc.factor}x the tokens`;
    case 'cost_drift': return `slow cost drift: ${scope(inc)} input tokens +${(inc.growth_per_10s * 100).toFixed(1)} % every 10 s`;
    case 'error_rate': return `error burst: ${Math.round(inc.fraction * 100)} % of ${scope(inc)} calls fail (timeout, rate_limit)`;
    case 'throughput_drop': return `throughput drop: ${scope(inc)} tokens/s x${inc.factor}`;
  }
  return inc.type;
}

// --- OpenTelemetry: one provider per service, as two separate applications would have ---

let exportFailures = 0;
let exportedSpans = 0;
// Counts what the exporter managed to send; the SDK itself only logs failures through diag.
function countingExporter(inner) {
  return {
    export(spans, done) {
      inner.export(spans, (result) => {
        if (result.code === 0) exportedSpans += spans.length;
        else if (exportFailures++ === 0) say(`export failed: ${result.error?.message ?? 'unknown error'} (later failures are counted)`);
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
}
for (const svc of SERVICES) {
  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: svc.name,
    [ATTR_SERVICE_VERSION]: svc.version,
    [ATTR_CLOUD_REGION]: svc.region,
    'deployment.environment.name': 'demo',
    'k8s.pod.name': `${svc.name}-7d9f8c6b5-${hex(5)}`,
  });
  svc.provider = new BasicTracerProvider({
    resource,
    spanProcessors: [
      new BatchSpanProcessor(countingExporter(new OTLPTraceExporter()), {
        scheduledDelayMillis: 250, maxExportBatchSize: 512, maxQueueSize: 8192,
      }),
    ],
  });
  svc.tracer = svc.provider.getTracer('llm-sentinel-demo-app', '0.1.0');
}

// --- one simulated model call ---

let calls = 0;
let errors = 0;
function simulateCall(svc, call, nowMs, elapsedS) {
  const m = MODELS[call.model];
  const active = incidents.filter((inc) => inc.active && appliesTo(inc, svc, call.model));
  let ttft = lognormal(m.ttftMs, 0.2);
  let tps = lognormal(m.tps, 0.15);
  // Token counts end sooner: prompts come from templates, answers from max_tokens and stop rules.
  let input = lognormal(call.input, 0.3, 2);
  let output = lognormal(call.output, 0.3, 2);
  let failure = null;
  for (const inc of active) {
    switch (inc.type) {
      case 'latency_spike': ttft *= inc.factor; tps /= inc.factor; break;
      case 'throughput_drop': tps *= inc.factor; break;
      case 'cost_drift': input *= Math.pow(1 + inc.growth_per_10s, (elapsedS - inc.start_s) / 10); break;
      case 'token_spike': if (random() < inc.fraction) output *= inc.factor; break;
      case 'error_rate': if (random() < inc.fraction) failure = random() < 0.5 ? 'timeout' : 'rate_limit'; break;
    }
  }
  input = Math.round(input);
  output = Math.min(Math.round(output), m.maxTokens);
  const attributes = {
    [ATTR_GEN_AI_OPERATION_NAME]: 'chat',
    [ATTR_GEN_AI_PROVIDER_NAME]: m.provider,
    [ATTR_GEN_AI_REQUEST_MODEL]: call.model,
    [ATTR_GEN_AI_REQUEST_MAX_TOKENS]: m.maxTokens,
    [ATTR_GEN_AI_REQUEST_TEMPERATURE]: call.temperature,
    [ATTR_SERVER_ADDRESS]: m.server,
  };
  let latency;
  if (failure === 'timeout') {
    latency = 30000 + random() * 200; // the client's 30 s timeout
  } else if (failure === 'rate_limit') {
    latency = lognormal(80, 0.3); // an immediate 429
  } else {
    latency = ttft + (output / tps) * 1000;
    const cached = m.cache && random() < 0.4 ? Math.round(input * (0.3 + 0.5 * random())) : 0;
    Object.assign(attributes, {
      [ATTR_GEN_AI_RESPONSE_MODEL]: m.response,
      [ATTR_GEN_AI_RESPONSE_ID]: `resp_${hex(24)}`,
      [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: input,
      [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: output,
      [ATTR_GEN_AI_RESPONSE_FINISH_REASONS]: [output >= m.maxTokens ? 'length' : random() < 0.05 ? 'tool_calls' : 'stop'],
      [ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]: ttft / 1000,
    });
    if (cached) attributes[ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cached;
    if (m.cache === 'anthropic' && random() < 0.1) attributes[ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = Math.round(input * 0.2);
  }
  const span = svc.tracer.startSpan(`chat ${call.model}`, { kind: SpanKind.CLIENT, startTime: nowMs - latency, attributes });
  if (failure) {
    span.setAttribute(ATTR_ERROR_TYPE, failure);
    span.setStatus({ code: SpanStatusCode.ERROR, message: failure === 'timeout' ? 'request timed out after 30 s' : '429 Too Many Requests' });
    errors++;
  }
  span.end(nowMs);
  calls++;
}

// --- the schedule ---

const t0 = performance.now();
const startUnixMs = Date.now();
function say(msg) {
  const s = ((performance.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stdout.write(`[${s}s] ${msg}\n`);
}

if (TRUTH_FILE) {
  const truth = {
    scenario: scenarioFile,
    start_unix_ms: startUnixMs,
    end_unix_ms: startUnixMs + DURATION_S * 1000,
    duration_s: DURATION_S,
    rate_per_s: RATE,
    incidents: incidents.filter((inc) => inc.start_s < DURATION_S).map((inc) => ({
      id: inc.id, type: inc.type, service: inc.service ?? null, model: inc.model ?? null,
      expect: inc.expect ?? [inc.type], description: describe(inc),
      start_s: inc.start_s, end_s: inc.end_s,
      start_unix_ms: startUnixMs + inc.start_s * 1000, end_unix_ms: startUnixMs + inc.end_s * 1000,
    })),
  };
  fs.writeFileSync(TRUTH_FILE, JSON.stringify(truth, null, 2) + '\n');
}

say(`demo app started: ${SERVICES.map((s) => `${s.name} (${s.calls.map((c) => c.model).join(', ')})`).join(' and ')}; ` +
    `${RATE} calls/s for ${DURATION_S} s; ${incidents.length} incidents scheduled; spans to ${process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? 'http://localhost:4317'}`);

const TICK_MS = 100;
let stopping = false;
let lastStats = 0;
const timer = setInterval(() => {
  const elapsedS = (performance.now() - t0) / 1000;
  for (const inc of incidents) {
    if (!inc.active && !inc.done && elapsedS >= inc.start_s) {
      inc.active = true;
      say(`incident start ${inc.id}: ${describe(inc)} until +${inc.end_s}s`);
    }
    if (inc.active && elapsedS >= inc.end_s) {
      inc.active = false;
      inc.done = true;
      say(`incident end ${inc.id}`);
    }
  }
  if (elapsedS >= DURATION_S) {
    stop('duration reached');
    return;
  }
  const now = Date.now();
  for (let n = poisson((RATE * TICK_MS) / 1000); n > 0; n--) {
    const svc = pick(SERVICES);
    simulateCall(svc, pick(svc.calls), now, elapsedS);
  }
  if (elapsedS - lastStats >= 30) {
    lastStats = elapsedS;
    say(`calls ${calls} (errors ${errors}), spans exported ${exportedSpans}, export failures ${exportFailures}`);
  }
}, TICK_MS);

async function stop(why) {
  if (stopping) return;
  stopping = true;
  clearInterval(timer);
  for (const inc of incidents) if (inc.active) say(`incident end ${inc.id} (stopped early)`);
  say(`stopping (${why}): flushing the exporters`);
  const results = await Promise.allSettled(SERVICES.map((s) => s.provider.shutdown()));
  const failed = results.filter((r) => r.status === 'rejected');
  say(`demo app stopped: ${calls} calls, ${errors} errors, ${exportedSpans} spans exported, ${exportFailures} export failures`);
  process.exit(failed.length ? 1 : 0);
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => stop(sig));
