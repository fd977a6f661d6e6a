// integration.sidecar_export_stages: the Export latency path's stage histogram and inline decode.
//   - sentinel_sidecar_export_stage_seconds counts every trace export answered through the loop
//     once in each stage (the gRPC transport's grpc_* stages and the pipeline's decode,
//     loop_wait, loop_ahead, journal), small and large requests alike;
//   - otlp.grpc.inline_decode (default 64 KiB): small requests are decoded on gRPC's
//     completion-queue thread, so the handler thread is not woken for them (its voluntary
//     context switches do not move); a request over the limit still goes to it; with
//     otlp.grpc.inline_decode=0 every request wakes it;
//   - in both modes every span reaches the aggregator exactly once.
import fs from 'node:fs';
import path from 'node:path';

import {
  check, checkExactlyOnce, log, makeSpan, metrics, otlpProto, run, sdk, sleep, startAggregator,
  startSidecar, tempDir, waitEventLog, SLOW,
} from './lib.mjs';

const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const SMALL = 5;
const LARGE = 2;
const LARGE_SPANS = 400; // about 100 KB: over the 64 KiB inline limit
const STAGES = ['grpc_read', 'grpc_queue', 'grpc_handle', 'grpc_send', 'grpc_total', 'decode',
  'loop_wait', 'loop_ahead', 'journal'];

// The sidecar's thread named `name`: its state letter (R, S, ...) and voluntary context
// switches; null when there is none.
function thread(pid, name) {
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== name) continue;
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      return {
        state: /State:\s+(\S)/.exec(status)[1],
        switches: Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)[1]),
      };
    } catch {
      /* gone meanwhile */
    }
  }
  return null;
}

// Voluntary context switches of the sidecar's thread `name` once it sleeps: an answer reaches
// the client before the thread that sent it has gone back to sleep (its last switch still to
// come), and a thread started at the sidecar's start may not have slept yet at all. Asleep: in
// state S with the same count twice in a row (nothing else wakes it while no request is sent).
// -1 when there is no such thread or it does not sleep within the deadline.
async function switchesAsleep(pid, name) {
  const deadline = Date.now() + 10000 * SLOW;
  let last = null;
  while (Date.now() < deadline) {
    const t = thread(pid, name);
    if (t !== null && t.state === 'S' && last !== null && last.state === 'S' && t.switches === last.switches) return t.switches;
    last = t;
    await sleep(20);
  }
  return -1;
}

// The sidecar's metrics once every stage's count is at least `want` (or the deadline passed): a
// request's grpc_* stages are observed when gRPC completes its answer, which may come after the
// client has the answer.
async function stageMetrics(adminPort, want) {
  const deadline = Date.now() + 10000 * SLOW;
  for (;;) {
    const m = await metrics(adminPort);
    const low = STAGES.some((st) => !(m[`sentinel_sidecar_export_stage_seconds_count{stage="${st}"}`] >= want));
    if (!low || Date.now() > deadline) return m;
    await sleep(20);
  }
}

await run('sidecar_export_stages', async () => {
  const grpc = await sdk('@grpc/grpc-js');
  const dir = tempDir('stages-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ eventLog });
  const sent = [];

  async function mode(label, extra) {
    const sc = await startSidecar({ aggregatorPort: agg.port, spoolDir: path.join(dir, label), extra });
    const client = new grpc.Client(`127.0.0.1:${sc.grpcPort}`, grpc.credentials.createInsecure());
    const exp = (buf) => new Promise((resolve) =>
      client.makeUnaryRequest(EXPORT, (b) => b, (b) => b, buf, (e) => resolve(e)));
    // The handler thread's wake-ups by one export: counted from its sleep before the request to
    // its sleep after it (it takes requests inline only while it sleeps, and the answer may
    // reach us before it has gone back to sleep).
    async function wakes(what, body) {
      const idle = await switchesAsleep(sc.pid, 'sn-grpc-handler');
      const err = await exp(body);
      const after = await switchesAsleep(sc.pid, 'sn-grpc-handler');
      check(idle >= 0 && after >= 0, `${label}: the handler thread does not sleep around ${what}`);
      check(!err, `${label}: ${what}: ${err && err.message}`);
      return after - idle;
    }
    const first = makeSpan('gpt-4o-mini', 300);
    check(!(await exp(otlpProto(first))), `${label}: first export refused`);
    sent.push(first.spanId);
    let small = 0;
    for (let i = 0; i < SMALL; i++) {
      const s = makeSpan('gpt-4o-mini', 300 + i);
      small += await wakes(`small export ${i}`, otlpProto(s));
      sent.push(s.spanId);
    }
    let large = 0;
    for (let i = 0; i < LARGE; i++) {
      const spans = Array.from({ length: LARGE_SPANS }, (_, k) => makeSpan('gpt-4o', 500 + k));
      const body = Buffer.concat(spans.map((s) => otlpProto(s)));
      check(body.length > 64 * 1024, `large request is ${body.length} bytes`);
      large += await wakes(`large export ${i}`, body);
      sent.push(...spans.map((s) => s.spanId));
    }
    const total = 1 + SMALL + LARGE;
    const m = await stageMetrics(sc.adminPort, total);
    for (const st of STAGES) {
      const n = m[`sentinel_sidecar_export_stage_seconds_count{stage="${st}"}`];
      check(n === total, `${label}: stage ${st} counted ${n} requests, want ${total}`);
    }
    log(`${label}: handler thread switches: ${small} for ${SMALL} small, ${large} for ${LARGE} large requests`);
    client.close();
    check((await sc.kill()).code === 0, `${label}: sidecar exit status after SIGTERM`);
    return { small, large };
  }

  const inl = await mode('inline', []);
  const off = await mode('handler', ['--set', 'otlp.grpc.inline_decode=0']);
  check(inl.small === 0, `inline decode: the handler thread was woken ${inl.small} times by small requests`);
  check(inl.large >= LARGE, `inline decode: large requests woke the handler thread ${inl.large} times`);
  check(off.small >= SMALL, `inline_decode=0: small requests woke the handler thread ${off.small} times`);

  const lines = await waitEventLog(eventLog, (ls) => ls.filter((l) => l.type === 'event').length >= sent.length, 20000);
  checkExactlyOnce(lines.filter((l) => l.type === 'event'), sent);
  await agg.kill();
});
