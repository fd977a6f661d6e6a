// integration.sidecar_valgrind: the sidecar and the aggregator each run under valgrind
// (--leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99, suppressions for
// third-party frames, if ever needed, with --supp FILE) through a short run: LLM spans over OTLP/HTTP
// JSON, OTLP/HTTP protobuf and OTLP/gRPC, a malformed request, a local alert, delivery to the
// aggregator, then SIGTERM. Both must exit 0: a clean shutdown with no definite leak and no
// invalid memory access. Registered in non-sanitizer builds only.
//
//   node leaks.mjs --valgrind PATH --supp FILE --sidecar BIN --aggregator BIN --otel-js DIR
import fs from 'node:fs';
import path from 'node:path';

import {
  check, httpRequest, log, makeSpan, opt, otlpJson, otlpProto, run, sdk, sleep, startAggregator,
  startSidecar, tempDir, waitEventLog,
} from './lib.mjs';

const VALGRIND = opt('--valgrind', 'valgrind');
const SUPP = opt('--supp');
const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

await run('sidecar_valgrind', async () => {
  const grpc = await sdk('@grpc/grpc-js');
  const dir = tempDir('vg-');
  const eventLog = path.join(dir, 'events.jsonl');
  const vg = (name) => [VALGRIND, '--leak-check=full', '--errors-for-leak-kinds=definite', '--error-exitcode=99',
    '--track-fds=no', `--log-file=${path.join(dir, `${name}.valgrind.log`)}`, ...(SUPP ? [`--suppressions=${SUPP}`] : [])];

  const agg = await startAggregator({ eventLog, prefix: vg('aggregator'), waitMs: 120000 });
  // valgrind's own memory is in the process's resident set: no memory limit there.
  const sc = await startSidecar({
    aggregatorPort: agg.port, spoolDir: path.join(dir, 'spool'), prefix: vg('sidecar'), waitMs: 120000,
    extra: ['--set', 'limits.memory=0'],
  });
  log('both started under valgrind');

  const sent = [];
  for (let i = 0; i < 12; i++) {
    const s = makeSpan('gpt-4o', 1000 + (i % 3) * 10);
    const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/json' }, body: otlpJson([s]), timeout: 60000 });
    if (check(r.status === 200, `JSON request ${i}: HTTP ${r.status}`)) sent.push(s.spanId);
  }
  const spike = makeSpan('gpt-4o', 30000);
  const rp = await httpRequest(sc.httpPort, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/x-protobuf' }, body: otlpProto(spike), timeout: 60000 });
  if (check(rp.status === 200, `protobuf request: HTTP ${rp.status}`)) sent.push(spike.spanId);
  const bad = await httpRequest(sc.httpPort, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/json' }, body: '{"resourceSpans":[', timeout: 60000 });
  check(bad.status === 400, `malformed request: HTTP ${bad.status}`);
  const client = new grpc.Client(`127.0.0.1:${sc.grpcPort}`, grpc.credentials.createInsecure());
  const gs = makeSpan('gpt-4o', 1005);
  const { err } = await new Promise((resolve) =>
    client.makeUnaryRequest(EXPORT, (b) => b, (b) => b, otlpProto(gs), { deadline: Date.now() + 60000 }, (e) => resolve({ err: e })),
  );
  client.close();
  if (check(!err, `gRPC export: ${err && err.message}`)) sent.push(gs.spanId);

  const lines = await waitEventLog(eventLog, (ls) => ls.filter((l) => l.type === 'event').length >= sent.length, 60000);
  check(lines.filter((l) => l.type === 'event').length === sent.length, `${lines.filter((l) => l.type === 'event').length} events, ${sent.length} sent`);
  check(lines.some((l) => l.type === 'alert'), 'the local alert did not reach the aggregator');
  await sleep(200);

  const vgReport = (name) => {
    const f = fs.readdirSync(dir).find((x) => x.startsWith(`${name}.valgrind.log`));
    return f ? fs.readFileSync(path.join(dir, f), 'utf8') : '(no valgrind log)';
  };
  for (const [name, p] of [['sidecar', sc], ['aggregator', agg]]) {
    const st = await p.kill('SIGTERM', 120000);
    const report = vgReport(name);
    const summary = (report.match(/definitely lost: .*/) || ['definitely lost: (no summary)'])[0];
    const errors = (report.match(/ERROR SUMMARY: .*/) || ['ERROR SUMMARY: (none)'])[0];
    log(`${name}: exit ${st.code}/${st.signal}; ${summary}; ${errors}`);
    if (!check(st.code === 0, `${name} under valgrind: exit ${st.code}/${st.signal}, want 0`)) console.error(report.split('\n').slice(-120).join('\n'));
  }
});
