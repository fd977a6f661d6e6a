// integration.sidecar_poll_strategy: grpc.poll_strategy reaches gRPC core. gRPC's epoll1 engine
// reads every connection through one process-wide epoll set, which any thread waiting in a
// completion queue polls (the shippers' threads too, which then hand OTLP requests over to the
// receiver's thread); the poll engine has no epoll set of its own. So:
//   - default (poll): the started log says "poll", and the sidecar holds fewer epoll instances
//     than with grpc.poll_strategy=epoll1 (gRPC's own: 2 with gRPC 1.51);
//   - grpc.poll_strategy=epoll1: the log says "epoll1";
//   - GRPC_POLL_STRATEGY=epoll1 in the environment wins over the default setting;
// and in each mode an OTLP/gRPC export is answered OK and its span reaches the aggregator.
import fs from 'node:fs';
import path from 'node:path';

import {
  check, log, makeSpan, otlpProto, run, sdk, startAggregator, startSidecar, tempDir, waitEventLog,
} from './lib.mjs';

const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

// The epoll instances a process holds (anon_inode:[eventpoll] among its open files).
function epollFds(pid) {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[eventpoll]') n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

await run('sidecar_poll_strategy', async () => {
  delete process.env.GRPC_POLL_STRATEGY; // the test decides
  const grpc = await sdk('@grpc/grpc-js');
  const dir = tempDir('poll-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ eventLog });
  const sent = [];

  // Starts a sidecar, exports one span over gRPC, returns what was seen, stops it.
  async function mode(label, opts) {
    const sc = await startSidecar({ aggregatorPort: agg.port, spoolDir: path.join(dir, label), ...opts });
    const client = new grpc.Client(`127.0.0.1:${sc.grpcPort}`, grpc.credentials.createInsecure());
    const s = makeSpan('gpt-4o-mini', 400);
    const err = await new Promise((resolve) =>
      client.makeUnaryRequest(EXPORT, (b) => b, (b) => b, otlpProto(s), (e) => resolve(e)),
    );
    if (check(!err, `${label}: gRPC export: ${err && err.message}`)) sent.push(s.spanId);
    const seen = { strategy: sc.started.grpc_poll_strategy, epolls: epollFds(sc.pid) };
    log(`${label}: grpc_poll_strategy ${seen.strategy}, ${seen.epolls} epoll instances`);
    client.close();
    await sc.kill();
    return seen;
  }

  const def = await mode('default', {});
  const epoll = await mode('setting', { extra: ['--set', 'grpc.poll_strategy=epoll1'] });
  const env = await mode('environment', { env: { GRPC_POLL_STRATEGY: 'epoll1' } });
  check(def.strategy === 'poll', `default grpc_poll_strategy ${def.strategy}, want poll`);
  check(epoll.strategy === 'epoll1', `with grpc.poll_strategy=epoll1: ${epoll.strategy}`);
  check(env.strategy === 'epoll1', `with GRPC_POLL_STRATEGY=epoll1 in the environment: ${env.strategy}`);
  check(epoll.epolls > def.epolls,
    `epoll instances: ${def.epolls} with poll, ${epoll.epolls} with epoll1 (want more: gRPC's)`);
  check(env.epolls === epoll.epolls, `epoll instances with the environment's epoll1: ${env.epolls}`);

  const lines = await waitEventLog(eventLog, (ls) => ls.filter((l) => l.type === 'event').length >= sent.length, 10000);
  const got = new Set(lines.filter((l) => l.type === 'event').map((l) => l.span_id));
  for (const id of sent) check(got.has(id), `span ${id} did not reach the aggregator`);
  await agg.kill();
});
