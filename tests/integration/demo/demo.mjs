// integration.demo_short and integration.demo_interrupt: `make demo` as a person runs it, from the
// build tree, on free loopback ports, with TMPDIR pointed at a temporary directory of the test.
//
//   node demo.mjs --case short|interrupt --demo deploy/local/demo.sh --build BUILD_DIR
//
// short: demo.sh --short (90 s, demo-app/scenario-short.json) must exit 0; from its summary
//   (--summary-json): every call the app made was exported; the sidecar's LOCAL alerts caught the
//   latency spike and the prompt-injection token blow-up within seconds of their start; no alert
//   fired outside the incidents after the 15 s warm-up; and the terminal showed the incidents,
//   the alerts and the summary. The aggregator's detection engine is not wired into
//   sentinel-aggregator yet: once it logs any "msg":"alert" line, every scheduled incident
//   (error burst, throughput drop and cost drift included) must also have been caught by an
//   aggregator alert of its type -- so this test is honest today and tightens by itself.
// interrupt: SIGTERM to demo.sh during the latency spike stops everything in order (exit 0, the
//   app flushed, the summary printed with what was caught so far, the processes gone and the
//   temporary directory removed). Also bad usage (exit 2) and a build directory without the
//   programs (exit 1).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : null;
};
const CASE = opt('--case');
const DEMO = opt('--demo');
const BUILD = opt('--build');
if (!CASE || !DEMO || !BUILD) {
  console.error('usage: node demo.mjs --case short|interrupt --demo demo.sh --build BUILD_DIR');
  process.exit(2);
}

let failures = 0;
function check(cond, msg) {
  if (!cond) {
    failures++;
    console.error(`FAIL: ${msg}`);
  }
  return !!cond;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sn-demo-it-'));
const demoTmp = path.join(tmp, 'tmp');
fs.mkdirSync(demoTmp);
let child = null;
function cleanup() {
  if (child && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (process.env.KEEP_TMP !== '1') fs.rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanup);

// Runs demo.sh with args; resolves {code, out}. onLine sees each output line as it comes.
function runDemo(args, { onLine = () => {}, timeoutMs = 200000 } = {}) {
  return new Promise((resolve) => {
    const out = [];
    child = spawn(DEMO, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TMPDIR: demoTmp, DEMO_ANY_PORTS: '1', DEMO_KEEP: '0' },
    });
    let buf = '';
    const onData = (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        out.push(line);
        process.stdout.write(`demo| ${line}\n`);
        onLine(line, child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const t = setTimeout(() => {
      check(false, `demo.sh ${args.join(' ')} did not finish in ${timeoutMs / 1000} s`);
      process.kill(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(t);
      if (buf) out.push(buf);
      resolve({ code, signal, out: out.join('\n') });
    });
  });
}

// Programs of this demo still running (their command line or environment names its TMPDIR).
function leftovers() {
  const left = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
      if (cmd.includes(demoTmp) || env.includes(demoTmp)) left.push(`${pid}: ${cmd}`);
    } catch {
      /* gone */
    }
  }
  return left;
}

const byId = (s, id) => s.incidents.find((i) => i.id === id);

async function shortCase() {
  const summaryFile = path.join(tmp, 'summary.json');
  const r = await runDemo([BUILD, '--short', '--summary-json', summaryFile]);
  check(r.code === 0, `demo.sh --short exited ${r.code}/${r.signal}, want 0`);
  if (!check(fs.existsSync(summaryFile), 'no summary JSON written')) return;
  const s = JSON.parse(fs.readFileSync(summaryFile, 'utf8'));
  console.log(`summary: ${JSON.stringify(s)}`);

  check(s.duration_s === 90, `duration ${s.duration_s}, want the short scenario's 90 s`);
  check(s.app.calls > 1800 && s.app.calls < 3600, `app made ${s.app.calls} calls, want ~2700 (30/s for 90 s)`);
  check(s.app.exported === s.app.calls, `app exported ${s.app.exported} of ${s.app.calls} spans`);
  check(s.app.exportFailures === 0, `${s.app.exportFailures} export failures`);
  check(s.app.errors > 0, 'the error burst made no failed call');
  check(s.incidents.length === 5, `${s.incidents.length} incidents in the summary, want 5`);

  // The sidecar's per-call checks exist today: they must catch these two, quickly.
  for (const id of ['latency-spike', 'prompt-injection']) {
    const inc = byId(s, id);
    if (!check(inc, `incident ${id} missing from the summary`)) continue;
    check(inc.local_alerts > 0, `${id}: no LOCAL ${inc.expect} alert from the sidecar`);
    check(inc.detected && inc.first_alert_after_s <= 5, `${id}: first alert after ${inc.first_alert_after_s} s, want <= 5 s`);
  }
  // The aggregator's engine: asserted once it raises alerts at all (see the comment at the top).
  if (s.aggregator_alert_lines > 0) {
    for (const inc of s.incidents)
      check(inc.aggregator_alerts > 0, `${inc.id}: the aggregator raised alerts, but none of type ${inc.expect} during this incident`);
  } else {
    console.log('the aggregator logged no "msg":"alert" line: its incident checks are skipped until its engine is wired in');
  }
  check(s.outside.length === 0, `${s.outside.length} alerts outside the incidents: ${JSON.stringify(s.outside.slice(0, 5))}`);

  // What the terminal showed.
  check(/INCIDENT\s+start latency-spike/.test(r.out), 'the latency spike start was not shown');
  check(/INCIDENT\s+end\s+latency-spike/.test(r.out), 'the latency spike end was not shown');
  check(/LOCAL\s+latency_spike\s+chatbot-api \/ claude-sonnet-4/.test(r.out), 'no LOCAL latency_spike line for chatbot-api / claude-sonnet-4');
  check(/LOCAL\s+token_spike\s+chatbot-api \/ gpt-4o/.test(r.out), 'no LOCAL token_spike line for chatbot-api / gpt-4o');
  check(/api\/v1\/anomalies/.test(r.out) && /\/metrics/.test(r.out), 'the header did not name the API and /metrics');
  check(/== Summary: 90 s/.test(r.out), 'no summary printed');
  check(/latency-spike .*caught after/.test(r.out), 'the summary did not say the latency spike was caught');
}

async function interruptCase() {
  // Bad usage and missing programs fail at once, before anything starts.
  let r = await runDemo([BUILD, '--duration', 'soon'], { timeoutMs: 20000 });
  check(r.code === 2 && /duration/.test(r.out), `--duration soon: exit ${r.code}, want 2 naming the duration: ${r.out}`);
  r = await runDemo([BUILD, '--no-such-option'], { timeoutMs: 20000 });
  check(r.code === 2, `--no-such-option: exit ${r.code}, want 2`);
  r = await runDemo([path.join(tmp, 'no-build')], { timeoutMs: 20000 });
  check(r.code === 1 && /make build/.test(r.out), `missing build dir: exit ${r.code}, want 1 saying 'make build': ${r.out}`);
  check(fs.readdirSync(demoTmp).length === 0, `bad usage left ${fs.readdirSync(demoTmp)} in TMPDIR`);

  // SIGTERM once the latency spike has been alerted on.
  const summaryFile = path.join(tmp, 'summary.json');
  let sent = 0;
  r = await runDemo([BUILD, '--short', '--summary-json', summaryFile], {
    onLine: (line, c) => {
      if (!sent && /LOCAL\s+latency_spike/.test(line)) {
        sent = Date.now();
        process.kill(c.pid, 'SIGTERM');
      }
    },
  });
  check(sent > 0, 'no LOCAL latency_spike line to interrupt on');
  check(r.code === 0, `demo.sh after SIGTERM exited ${r.code}/${r.signal}, want 0`);
  check(Date.now() - sent < 30000, `demo.sh took ${(Date.now() - sent) / 1000} s to stop after SIGTERM`);
  check(/stopping \(SIGTERM\)/.test(r.out), 'the app was not told to stop');
  check(/incident end latency-spike \(stopped early\)|INCIDENT\s+end\s+latency-spike/.test(r.out), 'the latency spike was not ended');
  if (check(fs.existsSync(summaryFile), 'no summary after SIGTERM')) {
    const s = JSON.parse(fs.readFileSync(summaryFile, 'utf8'));
    check(s.app.calls > 0 && s.app.exported === s.app.calls, `after SIGTERM the app exported ${s.app.exported} of ${s.app.calls}`);
    check(byId(s, 'latency-spike')?.local_alerts > 0, 'the summary after SIGTERM lost the latency spike alert');
    check(s.outside.length === 0, `${s.outside.length} alerts outside the incidents`);
  }
  check(/== Summary/.test(r.out), 'no summary printed after SIGTERM');
  const left = leftovers();
  check(left.length === 0, `processes still running after the demo: ${left.join('; ')}`);
  check(fs.readdirSync(demoTmp).length === 0, `the demo left ${fs.readdirSync(demoTmp)} in TMPDIR`);
}

try {
  if (CASE === 'short') await shortCase();
  else if (CASE === 'interrupt') await interruptCase();
  else check(false, `unknown case ${CASE}`);
  if (CASE === 'short') {
    const left = leftovers();
    check(left.length === 0, `processes still running after the demo: ${left.join('; ')}`);
    check(fs.readdirSync(demoTmp).length === 0, `the demo left ${fs.readdirSync(demoTmp)} in TMPDIR`);
  }
} catch (e) {
  check(false, e.stack || String(e));
}
if (failures) {
  console.error(`demo_${CASE}: ${failures} check(s) failed`);
  process.exit(1);
}
console.log(`demo_${CASE}: all checks passed`);
process.exit(0);
