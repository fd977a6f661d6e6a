// Test driver for integration.otel_js_traces: runs export.mjs (the official OpenTelemetry JS SDK
// exporting over OTLP/HTTP protobuf), decodes what it sent with otlp_dump (LLM-Sentinel's C
// decoder), and checks every fact of every span.
//
//   node check.mjs --dump PATH/TO/otlp_dump --work DIR
//
// Exit status 0 when every check passed, 1 otherwise (each failure on stderr).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : null;
};
const dump = opt('--dump');
const work = opt('--work');
if (!dump || !work) {
  console.error('usage: node check.mjs --dump OTLP_DUMP --work DIR');
  process.exit(2);
}

fs.rmSync(work, { recursive: true, force: true });
execFileSync(process.execPath, [path.join(here, 'export.mjs'), work], { stdio: 'inherit' });

const expected = JSON.parse(fs.readFileSync(path.join(work, 'expected.json'), 'utf8'));
const requests = fs.readdirSync(work).filter((f) => /^request-\d+\.pb$/.test(f)).sort();
const out = execFileSync(dump, requests.map((f) => path.join(work, f)), {
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'inherit'],
});
const events = out.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));

let failures = 0;
const fail = (msg) => {
  failures++;
  console.error(`FAIL: ${msg}`);
};
const near = (a, b) => typeof a === 'number' && typeof b === 'number' && Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

const llmSpans = expected.filter((s) => s.facts !== null);
if (events.length !== llmSpans.length)
  fail(`${events.length} events decoded, ${llmSpans.length} LLM spans exported`);

for (const span of expected) {
  const matches = events.filter((e) => e.trace_id === span.trace_id && e.span_id === span.span_id);
  if (span.facts === null) {
    if (matches.length !== 0) fail(`${span.name}: not an LLM call, yet an event was decoded`);
    continue;
  }
  if (matches.length !== 1) {
    fail(`${span.name}: ${matches.length} events with trace ${span.trace_id} span ${span.span_id}`);
    continue;
  }
  const ev = matches[0];
  // Times: exact nanoseconds (JSON numbers above 2^53 are compared as BigInt via the raw text).
  for (const k of ['start_unix_nano', 'end_unix_nano']) {
    const raw = out.match(new RegExp(`"span_id":"${span.span_id}","${k}":(\\d+)`));
    const got = raw ? raw[1] : String(ev[k]);
    if (got !== span[k]) fail(`${span.name}: ${k} ${got}, want ${span[k]}`);
  }
  for (const [k, want] of Object.entries(span.facts)) {
    const got = ev[k];
    if (k === 'conventions') {
      for (const c of want) if (!got.includes(c)) fail(`${span.name}: conventions ${JSON.stringify(got)} lack ${c}`);
    } else if (typeof want === 'number') {
      if (!near(got, want)) fail(`${span.name}: ${k} ${JSON.stringify(got)}, want ${want}`);
    } else if (got !== want) {
      fail(`${span.name}: ${k} ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    }
  }
  if (ev.cost_source === 'price_table' && !(ev.cost_usd > 0))
    fail(`${span.name}: priced cost ${ev.cost_usd} is not positive`);
  if (ev.cost_source === 'unknown' && ev.cost_usd !== null)
    fail(`${span.name}: unknown cost carries a value ${ev.cost_usd}`);
}

if (failures) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
console.log(`check.mjs: ${events.length} LLM events from ${requests.length} request(s) match the SDK's spans`);
