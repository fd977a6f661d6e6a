// The terminal side of `make demo` (deploy/local/demo.sh): follows the logs of the demo app,
// sentinel-sidecar and sentinel-aggregator, prints each incident and alert as one readable line,
// and at the end a summary of which scheduled incident was caught.
//
//   node demo-view.mjs ports N [PREFERRED...]
//       prints N distinct free loopback ports, each PREFERRED one when it is free (0: any)
//   node demo-view.mjs watch --dir DIR --truth FILE [--summary-json FILE] [--warmup S] [--grace S]
//       follows DIR/app.log, DIR/sidecar.log and DIR/aggregator.log until SIGTERM/SIGINT (or until
//       the file DIR/stop exists), then reads what is left, prints the summary and exits 0
//       (1 when the truth file never appeared)
//
// Alerts come from two places: the sidecar's per-call checks ("msg":"local alert", shown as LOCAL)
// and the aggregator's alert lifecycle ("msg":"alert" with status firing|resolved). Repeated
// LOCAL alerts of one (type, service, model) are folded into one line per 10 s.
//
// An incident counts as caught when an alert of one of its expected types, for its service and
// model, fired between its start and `grace` seconds after its end. A firing or LOCAL alert that
// no incident explains (same service/model, inside an incident's window) is an alert outside
// the incidents; those in the first `warmup` seconds are counted apart (baselines still learning).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const [, , command, ...rest] = process.argv;

function usage(msg) {
  if (msg) console.error(`demo-view: ${msg}`);
  console.error('usage: node demo-view.mjs ports N [PREFERRED...] | watch --dir DIR --truth FILE [--summary-json FILE] [--warmup S] [--grace S]');
  process.exit(2);
}

// --- ports ---

function tryListen(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => {
      const got = s.address().port;
      s.close(() => resolve(got));
    });
  });
}

async function ports(n, preferred) {
  const out = [];
  for (let i = 0; i < n; i++) {
    let p = preferred[i] ? await tryListen(preferred[i]) : null;
    while (p === null || out.includes(p)) p = await tryListen(0);
    out.push(p);
  }
  console.log(out.join(' '));
}

if (command === 'ports') {
  const n = Number(rest[0]);
  if (!Number.isInteger(n) || n < 1 || n > 16) usage('ports N: N between 1 and 16');
  await ports(n, rest.slice(1).map(Number));
  process.exit(0);
}
if (command !== 'watch') usage(command ? `unknown command ${command}` : null);

// --- watch: arguments ---

const opts = { warmup: 15, grace: 10 };
for (let i = 0; i < rest.length; i += 2) {
  const k = rest[i];
  const v = rest[i + 1];
  if (v === undefined) usage(`${k} needs a value`);
  if (k === '--dir') opts.dir = v;
  else if (k === '--truth') opts.truth = v;
  else if (k === '--summary-json') opts.summary = v;
  else if (k === '--warmup') opts.warmup = Number(v);
  else if (k === '--grace') opts.grace = Number(v);
  else usage(`unknown argument ${k}`);
}
if (!opts.dir || !opts.truth) usage('--dir and --truth are required');

// --- output ---

const tty = process.stdout.isTTY;
const paint = (code, s) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const RED = 31, GREEN = 32, YELLOW = 33, CYAN = 36, DIM = 2, BOLD = 1;
const clock = (ms) => new Date(ms).toTimeString().slice(0, 8);
const say = (ms, tag, text) => process.stdout.write(`${clock(ms)}  ${tag}  ${text}\n`);

function num(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return String(x ?? '?');
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}
const UNITS = { latency_ms: ' ms', ttft_ms: ' ms', cost_usd: ' USD', tokens_per_second: ' tok/s', error_rate: '' };
const unit = (metric) => UNITS[metric] ?? '';
const where = (a) => `${a.service ?? '?'} / ${a.model ?? '?'}`;
const vsBaseline = (a) => `${a.metric ?? '?'} ${num(a.value)}${unit(a.metric)} vs baseline ${num(a.baseline)}${unit(a.metric)}`;

// --- state ---

let truth = null;
const alerts = []; // {source: 'local'|'aggregator', status, time, anomaly_type, service, model, severity, ...}
let aggregatorAlertLines = 0;
const app = { calls: null, errors: null, exported: null, exportFailures: null, stopped_at_s: null };
const folded = new Map(); // LOCAL key -> {shownAt, more, max, metric}

function loadTruth() {
  if (truth) return;
  try {
    truth = JSON.parse(fs.readFileSync(opts.truth, 'utf8'));
  } catch {
    /* not written yet */
  }
}

function onLocalAlert(j, ms) {
  alerts.push({ source: 'local', status: 'local', time: ms, ...j });
  const key = `${j.anomaly_type}|${j.service}|${j.model}`;
  const f = folded.get(key);
  if (f && ms - f.shownAt < 10000) {
    f.more++;
    if (Math.abs(j.value) > Math.abs(f.max)) f.max = j.value;
    return;
  }
  flushFolded(key, ms);
  folded.set(key, { shownAt: ms, more: 0, max: j.value, metric: j.metric, j });
  say(ms, paint(YELLOW, 'LOCAL    '), `${j.anomaly_type.padEnd(16)} ${where(j)}  ${j.severity}  ${vsBaseline(j)}`);
}

// Prints the "+N more" line of folded LOCAL keys and forgets them: the one key `onlyKey`, or
// every key whose 10 s are over at `now`, or every key when `all` (the end).
function flushFolded(onlyKey, now, all = false) {
  for (const [key, f] of folded) {
    if (onlyKey !== null ? key !== onlyKey : !all && now - f.shownAt < 10000) continue;
    if (f.more > 0)
      say(Math.min(now, f.shownAt + 10000), paint(YELLOW, 'LOCAL    '),
          paint(DIM, `${f.j.anomaly_type.padEnd(16)} ${where(f.j)}  +${f.more} more in 10 s (largest ${f.metric} ${num(f.max)}${unit(f.metric)})`));
    folded.delete(key);
  }
}

function onAggregatorAlert(j, ms) {
  aggregatorAlertLines++;
  const status = j.status === 'resolved' ? 'resolved' : 'firing';
  // The aggregator's alert, whichever detected it first (j.source: "sidecar" when a local alert
  // sent ahead of its batch raised it before the engine saw the events).
  alerts.push({ ...j, source: 'aggregator', detected_by: j.source, time: ms, status });
  const tag = status === 'firing' ? paint(RED, 'FIRING   ') : paint(GREEN, 'RESOLVED ');
  const extra = [j.detection_method, j.occurrences > 1 ? `x${j.occurrences}` : null].filter(Boolean).join(', ');
  say(ms, tag, `${String(j.anomaly_type).padEnd(16)} ${where(j)}  ${j.severity ?? ''}  ${vsBaseline(j)}${extra ? `  (${extra})` : ''}`);
}

function onAppLine(line) {
  const m = line.match(/^\[\s*([\d.]+)s\] (.*)$/);
  const text = m ? m[2] : line;
  const ms = truth && m ? truth.start_unix_ms + Number(m[1]) * 1000 : Date.now();
  let s;
  if ((s = text.match(/^incident start (\S+): (.*)$/))) say(ms, paint(CYAN + ';' + BOLD, 'INCIDENT '), `start ${s[1]}: ${s[2]}`);
  else if ((s = text.match(/^incident end (\S+)(.*)$/))) say(ms, paint(CYAN, 'INCIDENT '), `end   ${s[1]}${s[2]}`);
  else {
    if ((s = text.match(/^demo app stopped: (\d+) calls, (\d+) errors, (\d+) spans exported, (\d+) export failures/))) {
      [app.calls, app.errors, app.exported, app.exportFailures] = s.slice(1).map(Number);
      if (m) app.stopped_at_s = Number(m[1]);
    }
    say(ms, paint(DIM, 'app      '), text);
  }
}

function onServiceLine(who, line) {
  let j;
  try {
    j = JSON.parse(line);
  } catch {
    return; // gRPC core's own diagnostics; the log files keep them
  }
  const ms = Date.parse(j.ts) || Date.now();
  if (who === 'sidecar' && j.msg === 'local alert') onLocalAlert(j, ms);
  else if (who === 'aggregator' && j.msg === 'alert') onAggregatorAlert(j, ms);
  else if (j.level === 'error') say(ms, paint(RED, `${who.padEnd(9)}`), `${j.msg}${j.reason ? `: ${j.reason}` : ''}`);
}

// --- following the files ---

const files = [
  { name: 'app', file: path.join(opts.dir, 'app.log'), pos: 0, buf: '', on: onAppLine },
  { name: 'sidecar', file: path.join(opts.dir, 'sidecar.log'), pos: 0, buf: '', on: (l) => onServiceLine('sidecar', l) },
  { name: 'aggregator', file: path.join(opts.dir, 'aggregator.log'), pos: 0, buf: '', on: (l) => onServiceLine('aggregator', l) },
];

function readNew(f, final) {
  let fd;
  try {
    fd = fs.openSync(f.file, 'r');
  } catch {
    return;
  }
  try {
    const chunk = Buffer.alloc(1 << 16);
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, f.pos);
      if (n <= 0) break;
      f.pos += n;
      f.buf += chunk.subarray(0, n).toString('utf8');
    }
  } finally {
    fs.closeSync(fd);
  }
  let i;
  while ((i = f.buf.indexOf('\n')) >= 0) {
    const line = f.buf.slice(0, i);
    f.buf = f.buf.slice(i + 1);
    if (line.trim()) f.on(line);
  }
  if (final && f.buf.trim()) {
    f.on(f.buf);
    f.buf = '';
  }
}

// Lines of the three files in time order is not needed: each file is read in order, often enough.
function poll(final = false) {
  loadTruth();
  for (const f of files) readNew(f, final);
  flushFolded(null, Date.now(), final);
}

// --- summary ---

const matchesScope = (inc, a) =>
  (!inc.service || a.service === inc.service) && (!inc.model || (typeof a.model === 'string' && a.model.startsWith(inc.model)));
const inWindow = (inc, ms, graceMs) => ms >= inc.start_unix_ms - 1000 && ms <= inc.end_unix_ms + graceMs;

function summarize() {
  const graceMs = opts.grace * 1000;
  const warmEnd = truth.start_unix_ms + opts.warmup * 1000;
  const raised = alerts.filter((a) => a.status !== 'resolved');
  // Stopped early (Ctrl-C): incidents that had not started did not happen.
  const ranS = app.stopped_at_s ?? truth.duration_s;
  const incidents = truth.incidents.map((inc) => {
    const hits = raised.filter((a) => inc.expect.includes(a.anomaly_type) && matchesScope(inc, a) && inWindow(inc, a.time, graceMs));
    const local = hits.filter((a) => a.source === 'local');
    const agg = hits.filter((a) => a.source === 'aggregator');
    const first = hits.length ? Math.min(...hits.map((a) => a.time)) : null;
    return {
      id: inc.id, type: inc.type, expect: inc.expect, service: inc.service, model: inc.model,
      start_s: inc.start_s, end_s: inc.end_s, description: inc.description,
      local_alerts: local.length, aggregator_alerts: agg.length,
      happened: inc.start_s < ranS,
      detected: hits.length > 0,
      first_alert_after_s: first === null ? null : Math.round((first - inc.start_unix_ms) / 100) / 10,
    };
  });
  const explained = (a) => truth.incidents.some((inc) => matchesScope(inc, a) && inWindow(inc, a.time, graceMs));
  const unexplained = raised.filter((a) => !explained(a));
  const warmup = unexplained.filter((a) => a.time < warmEnd);
  const outside = unexplained.filter((a) => a.time >= warmEnd).map((a) => ({
    source: a.source, at_s: Math.round((a.time - truth.start_unix_ms) / 100) / 10, anomaly_type: a.anomaly_type,
    service: a.service, model: a.model, metric: a.metric, severity: a.severity, value: a.value, baseline: a.baseline,
  }));
  return {
    duration_s: truth.duration_s, ran_s: Math.min(ranS, truth.duration_s), warmup_s: opts.warmup, grace_s: opts.grace,
    app, local_alerts: alerts.filter((a) => a.source === 'local').length,
    aggregator_alert_lines: aggregatorAlertLines,
    incidents, outside, warmup_alerts: warmup.length,
  };
}

// Incident types only windowed detection (the aggregator's) can see; per-call checks cannot.
const WINDOWED = ['error_rate', 'throughput_drop', 'cost_drift'];

function printSummary(s) {
  const out = (line = '') => process.stdout.write(`${line}\n`);
  out();
  const ran = s.ran_s < s.duration_s - 1 ? `${Math.round(s.ran_s)} s of ${s.duration_s} (stopped early)` : `${s.duration_s} s`;
  out(paint(BOLD, `== Summary: ${ran}, ${s.app.calls ?? '?'} LLM calls (${s.app.errors ?? '?'} errors), ` +
      `${s.local_alerts} sidecar alerts, ${s.aggregator_alert_lines} aggregator alert changes ==`));
  out(`  ${'incident'.padEnd(18)}${'when'.padEnd(13)}${'expected'.padEnd(17)}${'sidecar'.padEnd(9)}${'aggregator'.padEnd(12)}result`);
  for (const i of s.incidents) {
    const when = `+${i.start_s}..+${i.end_s}s`;
    let result;
    if (i.detected) result = paint(GREEN, `caught after ${i.first_alert_after_s} s`);
    else if (!i.happened) result = paint(DIM, 'did not happen (stopped before)');
    else if (!s.aggregator_alert_lines && WINDOWED.includes(i.type)) result = paint(YELLOW, 'not caught (windowed: the aggregator engine)');
    else result = paint(RED, 'MISSED');
    out(`  ${i.id.padEnd(18)}${when.padEnd(13)}${i.expect.join(',').padEnd(17)}${String(i.local_alerts).padEnd(9)}${String(i.aggregator_alerts).padEnd(12)}${result}`);
  }
  out(`  alerts outside the incidents: ${s.outside.length === 0 ? paint(GREEN, '0') : paint(RED, String(s.outside.length))}` +
      (s.warmup_alerts ? ` (and ${s.warmup_alerts} in the first ${s.warmup_s} s, while baselines learn)` : ''));
  for (const a of s.outside.slice(0, 10))
    out(`    +${a.at_s}s ${a.source} ${a.anomaly_type} ${a.service} / ${a.model} ${a.metric} ${num(a.value)} vs ${num(a.baseline)}`);
  if (s.outside.length > 10) out(`    ... ${s.outside.length - 10} more`);
  if (!s.aggregator_alert_lines)
    out(paint(DIM, '  The aggregator logged no alert: its detection engine and alert lifecycle are not wired in yet, so\n' +
        '  only the sidecar\'s per-call checks (LOCAL) can fire; windowed detection (error rate, throughput,\n' +
        '  drift) is the aggregator\'s.'));
  if (s.app.exportFailures) out(paint(RED, `  the app failed to export ${s.app.exportFailures} times`));
}

// --- main loop ---

let finishing = false;
function finish(code = 0) {
  if (finishing) return;
  finishing = true;
  clearInterval(timer);
  poll(true);
  if (!truth) {
    console.error(`demo-view: no ground truth in ${opts.truth}: the demo app did not start`);
    process.exit(1);
  }
  const s = summarize();
  printSummary(s);
  if (opts.summary) fs.writeFileSync(opts.summary, JSON.stringify(s, null, 2) + '\n');
  process.exit(code);
}
const timer = setInterval(() => {
  poll();
  if (fs.existsSync(path.join(opts.dir, 'stop'))) finish();
}, 200);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => finish());
