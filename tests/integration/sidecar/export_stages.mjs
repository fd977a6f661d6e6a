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
  check, checkExactlyOnce, log, makeSpan, metrics, otlpProto, run, sdk, startAggregator,
  startSidecar, tempDir, waitEventLog,
} from './lib.mjs';

const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const SMALL = 5;
const LARGE = 2;
const LARGE_SPANS = 400; // about 100 KB: over the 64 KiB inline limit
const STAGES = ['grpc_read', 'grpc_queue', 'grpc_handle', 'grpc_send', 'grpc_total', 'decode',
  'loop_wait', 'loop_ahead', 'journal'];

// Voluntary context switches of the sidecar's thread named `name` (-1 when there is none).
function switches(pid, name) {
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== name) continue;
      const m = /voluntary_ctxt_switches:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
      return Number(m[1]);
    } catch {
      /* gone meanwhile */
    }
  }
  return -1;
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
    // One request first: the handler thread has started and sleeps before the count.
    const first = makeSpan('gpt-4o-mini', 300);
    check(!(await exp(otlpProto(first))), `${label}: first export refused`);
    sent.push(first.spanId);
    const before = switches(sc.pid, 'sn-grpc-handler');
    for (let i = 0; i < SMALL; i++) {
      const s = makeSpan('gpt-4o-mini', 300 + i);
      const err = await exp(otlpProto(s));
      if (check(!err, `${label}: small export ${i}: ${err && err.message}`)) sent.push(s.spanId);
    }
    const afterSmall = switches(sc.pid, 'sn-grpc-handler');
    for (let i = 0; i < LARGE; i++) {
      const spans = Array.from({ length: LARGE_SPANS }, (_, k) => makeSpan('gpt-4o', 500 + k));
      const body = Buffer.concat(spans.map((s) => otlpProto(s)));
      check(body.length > 64 * 1024, `large request is ${body.length} bytes`);
      const err = await exp(body);
      if (check(!err, `${label}: large export ${i}: ${err && err.message}`)) sent.push(...spans.map((s) => s.spanId));
    }
    const afterLarge = switches(sc.pid, 'sn-grpc-handler');
    const m = await metrics(sc.adminPort);
    const total = 1 + SMALL + LARGE;
    for (const st of STAGES) {
      const n = m[`sentinel_sidecar_export_stage_seconds_count{stage="${st}"}`];
      check(n === total, `${label}: stage ${st} counted ${n} requests, want ${total}`);
    }
    log(`${label}: handler thread switches: ${afterSmall - before} for ${SMALL} small, ` +
      `${afterLarge - afterSmall} for ${LARGE} large requests`);
    client.close();
    await sc.kill();
    return { small: afterSmall - before, large: afterLarge - afterSmall };
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
