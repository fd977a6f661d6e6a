// integration.sidecar_concurrency: the OTLP receivers' concurrency defaults, which bound what a
// flood holds in memory (docs/sidecar.md, "Memory"), reach the transports and are logged:
//   - default: "OTLP/gRPC listening" says max_streams 6 (otlp.grpc.max_concurrent_streams) and
//     "OTLP/HTTP listening" max_bodies 8 and max_body_bytes 1 MiB (otlp.http.max_concurrent_bodies,
//     otlp.http.max_concurrent_body_bytes);
//   - set to 2, 0 and 0 (no byte or body limit), the log says so;
// and with the defaults 8 gRPC calls and 8 HTTP requests of 64 spans sent at once are all
// answered OK (the calls past the limits wait, nothing is refused) and reach the aggregator.
import path from 'node:path';

import {
  check, httpRequest, log, makeSpan, otlpProto, run, sdk, startAggregator, startSidecar, tempDir,
  waitEventLog,
} from './lib.mjs';

const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const CALLS = 8;
// One ExportTraceServiceRequest holding the spans (a ResourceSpans each: repeated fields of
// concatenated messages concatenate).
const request = (spans) => Buffer.concat(spans.map((s) => otlpProto(s)));
const SPANS = 64;

await run('sidecar_concurrency', async () => {
  const grpc = await sdk('@grpc/grpc-js');
  const dir = tempDir('concurrency-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ eventLog });

  // The limits as the listening lines report them.
  const limits = (sc) => ({
    streams: sc.logs.find((j) => j.msg === 'OTLP/gRPC listening').max_streams,
    bodies: sc.logs.find((j) => j.msg === 'OTLP/HTTP listening').max_bodies,
    bodyBytes: sc.logs.find((j) => j.msg === 'OTLP/HTTP listening').max_body_bytes,
  });

  const set = await startSidecar({
    aggregatorPort: agg.port, spoolDir: path.join(dir, 'set'),
    extra: ['--set', 'otlp.grpc.max_concurrent_streams=2', '--set', 'otlp.http.max_concurrent_bodies=0',
      '--set', 'otlp.http.max_concurrent_body_bytes=0'],
  });
  const got = limits(set);
  check(got.streams === 2 && got.bodies === 0 && got.bodyBytes === 0,
    `with max_concurrent_streams=2, max_concurrent_bodies=0, max_concurrent_body_bytes=0: logged ${JSON.stringify(got)}`);
  await set.kill();

  const sc = await startSidecar({ aggregatorPort: agg.port, spoolDir: path.join(dir, 'default') });
  const def = limits(sc);
  log(`defaults: ${JSON.stringify(def)}`);
  check(def.streams === 6, `default max_streams ${def.streams}, want 6`);
  check(def.bodies === 8, `default max_bodies ${def.bodies}, want 8`);
  check(def.bodyBytes === 1048576, `default max_body_bytes ${def.bodyBytes}, want 1 MiB`);

  // More requests at once than either limit: all answered, none refused.
  const sent = [];
  const requests = [];
  for (let i = 0; i < CALLS; i++) {
    const spans = [];
    for (let k = 0; k < SPANS; k++) spans.push(makeSpan('gpt-4o-mini', 300 + k));
    requests.push({ spans, body: request(spans) });
  }
  const client = new grpc.Client(`127.0.0.1:${sc.grpcPort}`, grpc.credentials.createInsecure());
  const calls = requests.map((r) => new Promise((resolve) =>
    client.makeUnaryRequest(EXPORT, (b) => b, (b) => b, r.body, (e) => resolve(e))));
  const errs = await Promise.all(calls);
  errs.forEach((e, i) => {
    if (check(!e, `gRPC call ${i}: ${e && e.message}`)) sent.push(...requests[i].spans.map((s) => s.spanId));
  });
  client.close();
  const posts = requests.map(() => {
    const spans = [];
    for (let k = 0; k < SPANS; k++) spans.push(makeSpan('gpt-4o', 500 + k));
    return { spans, body: request(spans) };
  });
  const answers = await Promise.all(posts.map((r) => httpRequest(sc.httpPort, 'POST', '/v1/traces', {
    headers: { 'content-type': 'application/x-protobuf' }, body: r.body,
  })));
  answers.forEach((a, i) => {
    if (check(a.status === 200, `HTTP request ${i}: status ${a.status}`)) sent.push(...posts[i].spans.map((s) => s.spanId));
  });

  const lines = await waitEventLog(eventLog,
    (ls) => ls.filter((l) => l.type === 'event').length >= sent.length, 20000);
  const seen = new Set(lines.filter((l) => l.type === 'event').map((l) => l.span_id));
  const missing = sent.filter((id) => !seen.has(id));
  check(missing.length === 0, `${missing.length} of ${sent.length} spans did not reach the aggregator`);
  await sc.kill();
  await agg.kill();
});
