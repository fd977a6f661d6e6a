// integration.sidecar_read_chunks: grpc.tcp_read_chunks reaches gRPC core, and otlp.grpc.window
// caps the receiver's socket reads. gRPC 1.51's tcp_read_chunks experiment (on in gRPC) sizes
// every read's buffers by the largest recent burst -- megabytes under a flood, whatever the
// read-size cap says; the sidecar turns it off by default (GRPC_EXPERIMENTS=-tcp_read_chunks).
// gRPC's tcp tracer (GRPC_TRACE=tcp) logs "alloc_slices ... max_chunk=N" for every read buffer
// on the capped path only, so:
//   - default: the started log says "-tcp_read_chunks", a 400 KB export is read in buffers of
//     at most 64 KiB (max_chunk=65536, the default window) and answered OK;
//   - otlp.grpc.window=128KiB: max_chunk=131072;
//   - grpc.tcp_read_chunks=true: GRPC_EXPERIMENTS untouched, no capped reads at all;
//   - GRPC_EXPERIMENTS=tcp_read_chunks in the environment comes after the sidecar's entry and
//     wins: no capped reads;
// and every span of every export reaches the aggregator.
import path from 'node:path';

import {
  check, grpcReadCaps, log, makeSpan, otlpProto, run, sdk, startAggregator, startSidecar, tempDir,
  waitEventLog,
} from './lib.mjs';

const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const SPANS = 2000; // about 400 KB: several reads of any size

await run('sidecar_read_chunks', async () => {
  delete process.env.GRPC_EXPERIMENTS; // the test decides
  const grpc = await sdk('@grpc/grpc-js');
  const dir = tempDir('chunks-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ eventLog });
  const sent = [];
  // gRPC's tcp trace at INFO (no data dumps), passed on by the sidecar at debug level.
  const traceEnv = { GRPC_TRACE: 'tcp', GRPC_VERBOSITY: 'INFO' };

  // Starts a sidecar, exports SPANS spans in one request over gRPC, returns the started log's
  // experiments and the read caps gRPC traced, stops it.
  async function mode(label, { extra = [], env = {} } = {}) {
    const sc = await startSidecar({
      aggregatorPort: agg.port,
      spoolDir: path.join(dir, label),
      extra: ['--set', 'log.level=debug', ...extra],
      env: { ...traceEnv, ...env },
    });
    const spans = [];
    for (let i = 0; i < SPANS; i++) spans.push(makeSpan('gpt-4o-mini', 300 + (i % 50)));
    // ExportTraceServiceRequest.resource_spans is repeated: the messages concatenate.
    const body = Buffer.concat(spans.map((s) => otlpProto(s)));
    const client = new grpc.Client(`127.0.0.1:${sc.grpcPort}`, grpc.credentials.createInsecure());
    const err = await new Promise((resolve) =>
      client.makeUnaryRequest(EXPORT, (b) => b, (b) => b, body, (e) => resolve(e)),
    );
    if (check(!err, `${label}: gRPC export of ${body.length} bytes: ${err && err.message}`)) {
      for (const s of spans) sent.push(s.spanId);
    }
    client.close();
    const seen = { experiments: sc.started.grpc_experiments, caps: grpcReadCaps(sc.logs) };
    log(`${label}: GRPC_EXPERIMENTS "${seen.experiments}", read caps [${seen.caps.join(', ')}]`);
    await sc.kill();
    return seen;
  }

  const def = await mode('default');
  check(def.experiments === '-tcp_read_chunks', `default GRPC_EXPERIMENTS "${def.experiments}"`);
  check(def.caps.includes(65536), `default: no read capped at 64 KiB (caps ${def.caps})`);
  // The shippers' channels have gRPC's own cap (4 MiB); the receiver's is the window.
  check(!def.caps.some((c) => c > 65536 && c < 4194304), `default: read caps ${def.caps}`);

  const wide = await mode('window', { extra: ['--set', 'otlp.grpc.window=128KiB'] });
  check(wide.caps.includes(131072), `otlp.grpc.window=128KiB: no read capped at 128 KiB (${wide.caps})`);
  check(!wide.caps.includes(65536), `otlp.grpc.window=128KiB: reads still capped at 64 KiB`);

  const on = await mode('setting', { extra: ['--set', 'grpc.tcp_read_chunks=true'] });
  check(on.experiments === '', `grpc.tcp_read_chunks=true: GRPC_EXPERIMENTS "${on.experiments}"`);
  check(on.caps.length === 0, `grpc.tcp_read_chunks=true: capped reads ${on.caps}`);

  const env = await mode('environment', { env: { GRPC_EXPERIMENTS: 'tcp_read_chunks' } });
  check(env.experiments === '-tcp_read_chunks,tcp_read_chunks',
    `environment: GRPC_EXPERIMENTS "${env.experiments}"`);
  check(env.caps.length === 0, `environment's tcp_read_chunks: capped reads ${env.caps}`);

  const lines = await waitEventLog(eventLog,
    (ls) => ls.filter((l) => l.type === 'event').length >= sent.length, 30000);
  const got = new Set(lines.filter((l) => l.type === 'event').map((l) => l.span_id));
  const missing = sent.filter((id) => !got.has(id)).length;
  check(missing === 0, `${missing} of ${sent.length} spans did not reach the aggregator`);
  await agg.kill();
});
