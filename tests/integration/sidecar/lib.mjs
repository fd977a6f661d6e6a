// Helpers shared by the sidecar's integration tests: processes (started, watched, always killed),
// free loopback ports, the aggregator's debug.event_log, the sidecar's /metrics, hand-made OTLP
// (JSON and protobuf) requests, and the OpenTelemetry JS packages of ../otel-js.
//
// Every test is a Node program: `node TEST.mjs --sidecar BIN --aggregator BIN --otel-js DIR`.
// It exits 0 when every check passed, 1 otherwise (each failure on stderr), and kills every
// process it started on any exit path.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

// --- arguments ---

const argv = process.argv.slice(2);
export function opt(name, fallback = null) {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
}
export const SIDECAR = opt('--sidecar');
export const AGGREGATOR = opt('--aggregator');
const otelJsArg = opt('--otel-js');
export const OTEL_JS = otelJsArg ? path.resolve(otelJsArg) : null;
// Sanitizer builds are slower and their RSS is not the program's: set by CMake.
export const SANITIZED = process.env.SENTINEL_TEST_SANITIZED === '1';
export const SLOW = SANITIZED ? 3 : 1;

// Loads a package installed in ../otel-js/node_modules (the tests live outside that tree).
export async function sdk(name) {
  if (!OTEL_JS) throw new Error('--otel-js DIR is required');
  const req = createRequire(path.join(OTEL_JS, 'package.json'));
  return import(pathToFileURL(req.resolve(name)).href);
}

// --- failures ---

let failures = 0;
export function fail(msg) {
  failures++;
  console.error(`FAIL: ${msg}`);
}
export function check(cond, msg) {
  if (!cond) fail(msg);
  return !!cond;
}
export function log(msg) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}
const t0 = Date.now();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- processes ---

const procs = new Set();
let tmpRoot = null;

// A temporary directory removed at exit (kept when KEEP_TMP=1, for debugging).
export function tempDir(prefix) {
  if (!tmpRoot) tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'sn-sidecar-it-'));
  return fs.mkdtempSync(path.join(tmpRoot, prefix));
}

function cleanup() {
  for (const p of procs) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
  procs.clear();
  if (tmpRoot && process.env.KEEP_TMP !== '1') fs.rmSync(tmpRoot, { recursive: true, force: true });
  else if (tmpRoot) console.error(`kept ${tmpRoot}`);
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
  process.on(sig, () => {
    cleanup();
    process.exit(1);
  });

// Runs main(); exits 0 when it returned without failures, 1 otherwise.
export async function run(name, main) {
  const hard = setTimeout(() => {
    fail(`${name}: did not finish in time`);
    cleanup();
    process.exit(1);
  }, 170000);
  hard.unref();
  try {
    await main();
  } catch (e) {
    fail(`${name}: ${e.stack || e}`);
  }
  for (const p of procs) await p.kill('SIGKILL');
  if (failures) {
    console.error(`${name}: ${failures} check(s) failed`);
    process.exit(1);
  }
  console.log(`${name}: all checks passed`);
  process.exit(0);
}

// A started program: its stderr log lines (JSON parsed when they are), and its exit.
export class Proc {
  constructor(name, bin, args, { prefix = [], env = {} } = {}) {
    this.name = name;
    this.lines = [];
    this.logs = [];
    this.waiters = [];
    const argvAll = [...prefix, bin, ...args];
    this.child = spawn(argvAll[0], argvAll.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.pid = this.child.pid;
    procs.add(this);
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        procs.delete(this);
        this.code = code;
        this.signal = signal;
        resolve({ code, signal });
        this.poke();
      }),
    );
    let buf = '';
    const onData = (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.lines.push(line);
        if (process.env.VERBOSE === '1') console.error(`${this.name}: ${line}`);
        try {
          this.logs.push(JSON.parse(line));
        } catch {
          /* not a log line (valgrind, gRPC) */
        }
      }
      this.poke();
    };
    this.child.stderr.on('data', onData);
    this.child.stdout.on('data', onData);
  }

  poke() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // The first log line for which pred(line) holds, waiting up to ms.
  async waitLog(pred, ms, what) {
    const deadline = Date.now() + ms * SLOW;
    for (;;) {
      const hit = this.logs.find(pred);
      if (hit) return hit;
      if (this.code !== undefined || this.signal !== undefined)
        throw new Error(`${this.name} exited (${this.code}/${this.signal}) before ${what}:\n${this.tail()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no ${what} within ${ms * SLOW} ms:\n${this.tail()}`);
      await new Promise((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  tail(n = 15) {
    return this.lines.slice(-n).join('\n');
  }

  // Sends sig and waits for the exit (SIGKILL after ms).
  async kill(sig = 'SIGTERM', ms = 20000) {
    if (this.code !== undefined || this.signal !== undefined) return this.exited;
    try {
      process.kill(this.pid, sig);
    } catch {
      /* gone */
    }
    const t = setTimeout(() => {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, ms * SLOW);
    const r = await this.exited;
    clearTimeout(t);
    return r;
  }

  // VmRSS of the process in KiB (Linux).
  rssKiB() {
    const s = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = s.match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) : NaN;
  }
}

// A loopback port that was free a moment ago (bound to port 0, then closed).
// Ports this process handed out: the kernel may give a port just closed to the next bind(0),
// so two calls could return the same port (seen: a sidecar's gRPC and HTTP ports equal).
const portsGiven = new Set();
export async function freePort() {
  for (let attempt = 0; ; attempt++) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.on('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port: p } = s.address();
        s.close(() => resolve(p));
      });
    });
    if (!portsGiven.has(port) || attempt >= 20) {
      portsGiven.add(port);
      return port;
    }
  }
}

// The read-buffer caps gRPC's tcp tracer (GRPC_TRACE=tcp) reported in a program's JSON log lines
// (msg "grpc", "alloc_slices ... max_chunk=N": the capped read path only), sorted, each once.
export function grpcReadCaps(logs) {
  const caps = new Set();
  for (const j of logs) {
    const m = j.msg === 'grpc' && /alloc_slices;.*max_chunk=(\d+)/.exec(j.message || '');
    if (m) caps.add(Number(m[1]));
  }
  return [...caps].sort((a, b) => a - b);
}

// Starts sentinel-aggregator on 127.0.0.1:port (0: any) with an event log; resolves when it listens
// (.port; .listening: the "ingest listening" log line).
export async function startAggregator({ port = 0, eventLog, extra = [], prefix, env = {}, waitMs = 15000 } = {}) {
  const a = new Proc('aggregator', AGGREGATOR, [
    '--set', `ingest.endpoint=127.0.0.1:${port}`,
    '--set', `debug.event_log=${eventLog}`,
    // Embedded state next to the event log (kept across restarts of one test), and the REST
    // API on any free port: nothing of a test may land in /var/lib/sentinel or on 8080.
    '--set', `state.data_dir=${eventLog}.state`,
    '--set', 'http.endpoint=127.0.0.1:0',
    ...extra,
  ], { prefix, env });
  const l = await a.waitLog((j) => j.msg === 'ingest listening', waitMs, 'ingest listening');
  a.port = l.port;
  a.listening = l;
  return a;
}

// Starts sentinel-sidecar on any free loopback ports; resolves with .grpcPort, .httpPort,
// .adminPort and .sidecarId once it has started.
export async function startSidecar({ aggregatorPort, spoolDir, extra = [], prefix, env = {}, grpcPort = 0, httpPort = 0, waitMs = 20000 } = {}) {
  const s = new Proc('sidecar', SIDECAR, [
    '--aggregator', `127.0.0.1:${aggregatorPort}`,
    '--spool-dir', spoolDir,
    '--set', `otlp.grpc_endpoint=127.0.0.1:${grpcPort}`,
    '--set', `otlp.http_endpoint=127.0.0.1:${httpPort}`,
    '--set', 'admin.endpoint=127.0.0.1:0',
    '--set', 'sidecar.name=it-sidecar',
    ...extra,
  ], { prefix, env });
  const started = await s.waitLog((j) => j.msg === 'sentinel-sidecar started', waitMs, 'started');
  s.started = started;
  s.sidecarId = started.sidecar_id;
  s.grpcPort = s.logs.find((j) => j.msg === 'OTLP/gRPC listening').port;
  s.httpPort = s.logs.find((j) => j.msg === 'OTLP/HTTP listening').port;
  s.adminPort = s.logs.find((j) => j.msg === 'admin endpoints listening').port;
  return s;
}

// --- HTTP ---

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

// One HTTP request; resolves {status, headers, body (Buffer)} or rejects on a transport error.
export function httpRequest(port, method, urlPath, { headers = {}, body = null, timeout = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, headers, agent, timeout: timeout * SLOW },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

// The sidecar's /metrics parsed into {'name{labels}': value}.
export async function metrics(adminPort) {
  const r = await httpRequest(adminPort, 'GET', '/metrics');
  const out = {};
  for (const line of r.body.toString().split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

// --- the aggregator's event log ---

// Every line of the event log, parsed; 64-bit times are kept exact as strings (*_raw). A line
// that is not JSON is returned as {type: 'torn', raw}.
export function readEventLog(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  // A line being written has no newline yet: it is read next time.
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      let j;
      try {
        j = JSON.parse(l);
      } catch {
        return { type: 'torn', raw: l }; // cut by a SIGKILL mid-write, then appended to
      }
      for (const k of ['start_unix_nano', 'end_unix_nano', 'time_unix_nano', 'created_unix_nano']) {
        const m = l.match(new RegExp(`"${k}":(\\d+)`));
        if (m) j[`${k}_raw`] = m[1];
      }
      return j;
    });
}

// Waits until pred(lines) holds for the event log, up to ms; returns the lines either way.
export async function waitEventLog(file, pred, ms) {
  const deadline = Date.now() + ms * SLOW;
  for (;;) {
    const lines = readEventLog(file);
    if (pred(lines) || Date.now() > deadline) return lines;
    await sleep(100);
  }
}

// --- OTLP requests made by hand ---

export const randomHex = (bytes) => crypto.randomBytes(bytes).toString('hex');
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// One OTLP/JSON ExportTraceServiceRequest with one GenAI span per entry of spans:
// {traceId, spanId, startNs (BigInt), latencyMs, model, inputTokens, outputTokens, user}.
export function otlpJson(spans, service = 'load-api') {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
        scopeSpans: [
          {
            scope: { name: 'sidecar-it' },
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              name: `chat ${s.model}`,
              kind: 3,
              startTimeUnixNano: s.startNs.toString(),
              endTimeUnixNano: (s.startNs + BigInt(Math.round(s.latencyMs * 1e6))).toString(),
              attributes: [
                { key: 'gen_ai.operation.name', value: { stringValue: 'chat' } },
                { key: 'gen_ai.provider.name', value: { stringValue: 'openai' } },
                { key: 'gen_ai.request.model', value: { stringValue: s.model } },
                { key: 'gen_ai.usage.input_tokens', value: { intValue: String(s.inputTokens ?? 100) } },
                { key: 'gen_ai.usage.output_tokens', value: { intValue: String(s.outputTokens ?? 50) } },
                ...(s.user ? [{ key: 'user.id', value: { stringValue: s.user } }] : []),
              ],
            })),
          },
        ],
      },
    ],
  });
}

// A minimal protobuf writer (enough for OTLP requests made by hand).
export const pb = {
  varint(n) {
    let v = BigInt(n);
    const out = [];
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v) b |= 0x80;
      out.push(b);
    } while (v);
    return Buffer.from(out);
  },
  tag(field, wire) {
    return pb.varint((field << 3) | wire);
  },
  bytes(field, buf) {
    const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf);
    return Buffer.concat([pb.tag(field, 2), pb.varint(b.length), b]);
  },
  uint(field, n) {
    return Buffer.concat([pb.tag(field, 0), pb.varint(n)]);
  },
  fixed64(field, n) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return Buffer.concat([pb.tag(field, 1), b]);
  },
  // A KeyValue with a string / int value as field `field` of the enclosing message (Span: 9).
  kvString(key, value, field = 9) {
    return pb.bytes(field, Buffer.concat([pb.bytes(1, key), pb.bytes(2, pb.bytes(1, value))]));
  },
  kvInt(key, value, field = 9) {
    return pb.bytes(field, Buffer.concat([pb.bytes(1, key), pb.bytes(2, pb.uint(3, value))]));
  },
};

// One OTLP/protobuf ExportTraceServiceRequest with one GenAI span (fields as in otlpJson).
export function otlpProto(s, service = 'load-api') {
  const endNs = s.startNs + BigInt(Math.round(s.latencyMs * 1e6));
  const span = Buffer.concat([
    pb.bytes(1, Buffer.from(s.traceId, 'hex')),
    pb.bytes(2, Buffer.from(s.spanId, 'hex')),
    pb.bytes(5, `chat ${s.model}`),
    pb.uint(6, 3),
    pb.fixed64(7, s.startNs),
    pb.fixed64(8, endNs),
    pb.kvString('gen_ai.operation.name', 'chat'),
    pb.kvString('gen_ai.provider.name', 'openai'),
    pb.kvString('gen_ai.request.model', s.model),
    pb.kvInt('gen_ai.usage.input_tokens', s.inputTokens ?? 100),
    pb.kvInt('gen_ai.usage.output_tokens', s.outputTokens ?? 50),
  ]);
  const resource = pb.bytes(1, pb.kvString('service.name', service, 1)); // Resource.attributes = 1
  const scopeSpans = pb.bytes(2, pb.bytes(2, span));
  return pb.bytes(1, Buffer.concat([resource, scopeSpans]));
}

// Protobuf fields of a message: [{field, wire, start, end, value}] (varint values as BigInt).
export function pbFields(buf) {
  const out = [];
  let i = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const start = i;
    const key = Number(varint());
    const wire = key & 7;
    let value = null;
    if (wire === 0) value = varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const n = Number(varint());
      value = buf.subarray(i, i + n);
      i += n;
    } else throw new Error(`wire type ${wire}`);
    out.push({ field: key >> 3, wire, start, end: i, value });
  }
  return out;
}

// Reads field 2 (message) of a google.rpc.Status {code = 1, message = 2} protobuf body; `bad`
// when it holds a field that is neither a varint nor length-delimited.
export function statusMessage(buf) {
  let code = null;
  let message = null;
  let all;
  try {
    all = pbFields(buf);
  } catch {
    return { code, message, bad: true };
  }
  for (const f of all) {
    if (f.wire === 0 && f.field === 1) code = Number(f.value);
    else if (f.wire === 2 && f.field === 2) message = f.value.toString();
    else if (f.wire !== 0 && f.wire !== 2) return { code, message, bad: true };
  }
  return { code, message };
}

// A span whose start is now minus its latency (detectors see current times).
export function makeSpan(model, latencyMs, extra = {}) {
  const startNs = BigInt(Date.now()) * 1000000n - BigInt(Math.round(latencyMs * 1e6));
  return { traceId: randomHex(16), spanId: randomHex(8), startNs, latencyMs, model, ...extra };
}

// Checks that every span id of `accepted` is among the events exactly once, that none of
// `refused` is, and that there are no other events. Returns the count per span id.
export function checkExactlyOnce(events, accepted, refused = []) {
  const count = new Map();
  for (const e of events) count.set(e.span_id, (count.get(e.span_id) || 0) + 1);
  const want = new Set(accepted);
  let missing = 0;
  let twice = 0;
  for (const id of want) {
    const c = count.get(id) || 0;
    if (c === 0) missing++;
    if (c > 1) twice++;
  }
  check(missing === 0 && twice === 0, `accepted spans: ${missing} missing, ${twice} more than once (of ${want.size})`);
  const leaked = refused.filter((id) => count.has(id)).length;
  check(leaked === 0, `${leaked} spans of refused requests reached the aggregator`);
  check(events.length === want.size, `${events.length} events, ${want.size} accepted spans`);
  return count;
}
