// integration.aggregator_read_chunks: the aggregator's grpc.tcp_read_chunks reaches gRPC core,
// and ingest.window caps the Ingest service's socket reads. gRPC 1.51's tcp_read_chunks
// experiment (on in gRPC) sizes every read's buffers by the largest recent burst -- megabytes
// under load, whatever the read-size cap says; the aggregator turns it off by default
// (GRPC_EXPERIMENTS=-tcp_read_chunks), as the sidecar does. gRPC's tcp tracer (GRPC_TRACE=tcp,
// on the aggregator only; gRPC's own log lines come as the aggregator's JSON lines with msg
// "grpc" at debug) logs "alloc_slices ... max_chunk=N"
// for every read buffer on the capped path only, so, with a real sidecar shipping one batch of
// SPANS events to a fresh aggregator per mode:
//   - default: "ingest listening" says grpc_experiments "-tcp_read_chunks" and the batch is read
//     in buffers of at most DEFAULT_WINDOW (the default ingest.window), no larger cap;
//   - ingest.window=128KiB: max_chunk=131072, not the default's, nothing larger;
//   - grpc.tcp_read_chunks=true: GRPC_EXPERIMENTS untouched, no capped reads at all;
//   - GRPC_EXPERIMENTS=tcp_read_chunks in the environment comes after the aggregator's entry and
//     wins: no capped reads;
// and every span of every mode's batch reaches that aggregator's event log.
import path from 'node:path';

import {
  check, grpcReadCaps, httpRequest, log, makeSpan, otlpProto, run, startAggregator, startSidecar, tempDir,
  waitEventLog,
} from '../sidecar/lib.mjs';

const SPANS = 2000; // one sidecar batch (batch.max_events), larger than any window tried here
const DEFAULT_WINDOW = 65536; // ingest.window's default (64 KiB)

await run('aggregator_read_chunks', async () => {
  delete process.env.GRPC_EXPERIMENTS; // the test decides
  const dir = tempDir('agg-chunks-');
  // gRPC's tcp trace at INFO (no data dumps), for the aggregator alone.
  const traceEnv = { GRPC_TRACE: 'tcp', GRPC_VERBOSITY: 'INFO' };

  // Starts an aggregator and a sidecar shipping to it, exports SPANS spans over OTLP/HTTP,
  // waits until all are in the aggregator's event log, returns the "ingest listening" line's
  // experiments and the read caps gRPC traced, stops both.
  async function mode(label, { extra = [], env = {} } = {}) {
    const eventLog = path.join(dir, `${label}.jsonl`);
    const agg = await startAggregator({
      eventLog, extra: ['--set', 'log.level=debug', ...extra], env: { ...traceEnv, ...env },
    });
    const sc = await startSidecar({ aggregatorPort: agg.port, spoolDir: path.join(dir, label) });
    const spans = [];
    for (let i = 0; i < SPANS; i++) spans.push(makeSpan('gpt-4o-mini', 300 + (i % 50)));
    // ExportTraceServiceRequest.resource_spans is repeated: the messages concatenate.
    const body = Buffer.concat(spans.map((s) => otlpProto(s)));
    const res = await httpRequest(sc.httpPort, 'POST', '/v1/traces', {
      headers: { 'Content-Type': 'application/x-protobuf' }, body,
    });
    check(res.status === 200, `${label}: OTLP/HTTP export of ${body.length} bytes: ${res.status}`);
    const lines = await waitEventLog(eventLog,
      (ls) => ls.filter((l) => l.type === 'event').length >= SPANS, 30000);
    const got = new Set(lines.filter((l) => l.type === 'event').map((l) => l.span_id));
    const missing = spans.filter((s) => !got.has(s.spanId)).length;
    check(missing === 0, `${label}: ${missing} of ${SPANS} spans did not reach the aggregator`);
    await sc.kill();
    await agg.kill();
    // gRPC's lines come through the aggregator's own logger (JSON, msg "grpc"): a raw line
    // on stderr would not count, so a lost routing fails the checks below too.
    const seen = { experiments: agg.listening.grpc_experiments, caps: grpcReadCaps(agg.logs) };
    log(`${label}: GRPC_EXPERIMENTS "${seen.experiments}", read caps [${seen.caps.join(', ')}]`);
    return seen;
  }

  const def = await mode('default');
  check(def.experiments === '-tcp_read_chunks', `default GRPC_EXPERIMENTS "${def.experiments}"`);
  check(def.caps.includes(DEFAULT_WINDOW),
    `default: no read capped at ${DEFAULT_WINDOW} (caps ${def.caps})`);
  check(!def.caps.some((c) => c > DEFAULT_WINDOW), `default: read caps ${def.caps}`);

  const wide = await mode('window', { extra: ['--set', 'ingest.window=128KiB'] });
  check(wide.caps.includes(131072), `ingest.window=128KiB: no read capped at 128 KiB (${wide.caps})`);
  check(!wide.caps.includes(DEFAULT_WINDOW), `ingest.window=128KiB: reads still capped at the default`);
  check(!wide.caps.some((c) => c > 131072), `ingest.window=128KiB: read caps ${wide.caps}`);

  const on = await mode('setting', { extra: ['--set', 'grpc.tcp_read_chunks=true'] });
  check(on.experiments === '', `grpc.tcp_read_chunks=true: GRPC_EXPERIMENTS "${on.experiments}"`);
  check(on.caps.length === 0, `grpc.tcp_read_chunks=true: capped reads ${on.caps}`);

  const env = await mode('environment', { env: { GRPC_EXPERIMENTS: 'tcp_read_chunks' } });
  check(env.experiments === '-tcp_read_chunks,tcp_read_chunks',
    `environment: GRPC_EXPERIMENTS "${env.experiments}"`);
  check(env.caps.length === 0, `environment's tcp_read_chunks: capped reads ${env.caps}`);
});
