// integration.sidecar_overload: the aggregator is down and the sidecar's spool is small
// (spool.max_bytes 2MiB, spool.journal_max_bytes 512KiB, batches of 400 events; each span has a
// random user id, so the spool fills after a few thousand spans). A flood of OTLP/HTTP JSON
// requests (16 at a time, 50 spans each, until 1 s after the first refusal) must end in retryable
// refusals -- HTTP 503 with Retry-After, and for OTLP/gRPC UNAVAILABLE with google.rpc.RetryInfo --
// while /readyz answers 503 and the sidecar's RSS stays under its limits.memory of 48 MiB (release
// builds; sanitizer builds skip the bound).
// The memory limit's refusals: a second sidecar whose refusal threshold is 1 % of limits.memory
// (so always over) answers HTTP 503 + Retry-After and gRPC UNAVAILABLE + RetryInfo, counts them in
// sentinel_sidecar_memory_refused_total, is not ready, and accepts nothing.
// Then the aggregator starts: every span of an accepted request arrives exactly once, no span of a
// refused request arrives at all, the spool empties and /readyz is 200 again.
import path from 'node:path';

import {
  SANITIZED, check, checkExactlyOnce, freePort, randomHex, httpRequest, log, makeSpan, metrics, otlpJson, otlpProto,
  run, sdk, sleep, startAggregator, startSidecar, tempDir, waitEventLog,
} from './lib.mjs';

// The sidecar's limits.memory below; sanitizer builds are several times larger (35 MiB idle), so
// they get a limit that never refuses (and the RSS bound is not checked there).
const RSS_LIMIT_KIB = (SANITIZED ? 1024 : 48) * 1024;
const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

await run('sidecar_overload', async () => {
  const grpc = await sdk('@grpc/grpc-js');
  const dir = tempDir('overload-');
  const eventLog = path.join(dir, 'events.jsonl');
  const aggPort = await freePort();
  const sc = await startSidecar({
    aggregatorPort: aggPort,
    spoolDir: path.join(dir, 'spool'),
    extra: ['--set', 'spool.max_bytes=2MiB', '--set', 'spool.journal_max_bytes=512KiB',
      '--set', 'spool.segment_bytes=256KiB', '--set', 'spool.max_record_bytes=256KiB',
      '--set', 'batch.max_events=400', '--set', `limits.memory=${RSS_LIMIT_KIB}KiB`],
  });

  const ready = async () => (await httpRequest(sc.adminPort, 'GET', '/readyz')).status;
  check((await ready()) === 200, '/readyz before the flood');

  // The flood: until refusals have gone on for 1 s (at most 40 s).
  const accepted = [];
  const refusedIds = [];
  let refusals = 0;
  let firstRefusal = 0;
  const retryAfter = new Set();
  let maxRss = 0;
  let readyDuringRefusals = null;
  let stop = false;
  const deadline = Date.now() + 40000;
  const sampler = setInterval(() => {
    try {
      maxRss = Math.max(maxRss, sc.rssKiB());
    } catch {
      /* exited: checked below */
    }
  }, 100);
  async function worker() {
    while (!stop && Date.now() < deadline) {
      const spans = Array.from({ length: 50 }, (_, k) => makeSpan('gpt-4o', 800 + k, { user: randomHex(31) }));
      const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', {
        headers: { 'Content-Type': 'application/json' },
        body: otlpJson(spans, 'flood-api'),
      });
      if (r.status === 200) accepted.push(...spans.map((s) => s.spanId));
      else if (r.status === 503 || r.status === 429) {
        refusals++;
        refusedIds.push(...spans.map((s) => s.spanId));
        retryAfter.add(r.headers['retry-after']);
        if (!firstRefusal) firstRefusal = Date.now();
        if (Date.now() - firstRefusal > 1000) stop = true;
      } else {
        check(false, `flood: HTTP ${r.status} ${r.body}`);
        stop = true;
      }
    }
  }
  const workers = Array.from({ length: 16 }, worker);
  // While refusing: readiness and the gRPC answer.
  while (!firstRefusal && Date.now() < deadline) await sleep(50);
  await sleep(300);
  readyDuringRefusals = await ready();
  const client = new grpc.Client(`127.0.0.1:${sc.grpcPort}`, grpc.credentials.createInsecure());
  const grpcSpan = makeSpan('gpt-4o', 900);
  const { err } = await new Promise((resolve) =>
    client.makeUnaryRequest(EXPORT, (b) => b, (b) => b, otlpProto(grpcSpan, 'flood-api'), (e, res) => resolve({ err: e, res })),
  );
  client.close();
  await Promise.all(workers);
  clearInterval(sampler);

  const m = await metrics(sc.adminPort);
  log(`flood: ${accepted.length} spans accepted, ${refusals} requests refused (Retry-After ${[...retryAfter]}), ` +
    `spool ${m.sentinel_sidecar_spool_bytes} bytes in ${m.sentinel_sidecar_spool_batches} batches, max RSS ${maxRss} KiB, ` +
    `refused_total ${JSON.stringify(Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('sentinel_sidecar_refused_total'))))}`);
  check(refusals > 0, 'the flood was never refused');
  check(accepted.length > 0, 'nothing was accepted before the spool filled');
  check([...retryAfter].every((v) => Number(v) >= 1), `Retry-After values ${[...retryAfter]}`);
  check(readyDuringRefusals === 503, `/readyz while refusing: ${readyDuringRefusals}, want 503`);
  check(err && (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.RESOURCE_EXHAUSTED),
    `gRPC export while refusing: ${err ? `${err.code} ${err.details}` : 'OK'}, want UNAVAILABLE`);
  if (err) {
    const details = err.metadata.get('grpc-status-details-bin');
    const raw = details.length ? Buffer.from(details[0]).toString('latin1') : '';
    check(raw.includes('type.googleapis.com/google.rpc.RetryInfo'), 'gRPC refusal without google.rpc.RetryInfo');
  }
  check(m.sentinel_sidecar_spool_bytes <= 2 * 1024 * 1024, `spool ${m.sentinel_sidecar_spool_bytes} bytes over 2MiB`);
  check(m.sentinel_sidecar_memory_limit_bytes === RSS_LIMIT_KIB * 1024,
    `sentinel_sidecar_memory_limit_bytes ${m.sentinel_sidecar_memory_limit_bytes}`);
  if (SANITIZED) log('sanitizer build: RSS bound not checked');
  else check(maxRss > 0 && maxRss < RSS_LIMIT_KIB, `sidecar RSS ${maxRss} KiB, limits.memory ${RSS_LIMIT_KIB} KiB`);

  // Over the memory limit: every new request gets a retryable refusal and nothing is taken.
  {
    const mem = await startSidecar({
      aggregatorPort: aggPort,
      spoolDir: path.join(dir, 'spool-mem'),
      extra: ['--set', 'limits.memory=48MiB', '--set', 'limits.memory_refuse_percent=1'],
    });
    let over = 0;
    for (let i = 0; i < 100 && over !== 1; i++) {
      over = (await metrics(mem.adminPort)).sentinel_sidecar_memory_over_limit;
      if (over !== 1) await sleep(50);
    }
    check(over === 1, `sentinel_sidecar_memory_over_limit ${over}, want 1`);
    const hr = await httpRequest(mem.httpPort, 'POST', '/v1/traces', {
      headers: { 'Content-Type': 'application/json' },
      body: otlpJson([makeSpan('gpt-4o', 700)], 'mem-api'),
    });
    check(hr.status === 503 && Number(hr.headers['retry-after']) >= 1,
      `HTTP over the memory limit: ${hr.status} Retry-After ${hr.headers['retry-after']}, want 503 with Retry-After`);
    const memClient = new grpc.Client(`127.0.0.1:${mem.grpcPort}`, grpc.credentials.createInsecure());
    const { err: memErr } = await new Promise((resolve) =>
      memClient.makeUnaryRequest(EXPORT, (b) => b, (b) => b, otlpProto(makeSpan('gpt-4o', 700), 'mem-api'),
        (e, res) => resolve({ err: e, res })),
    );
    memClient.close();
    check(memErr && memErr.code === grpc.status.UNAVAILABLE,
      `gRPC over the memory limit: ${memErr ? `${memErr.code} ${memErr.details}` : 'OK'}, want UNAVAILABLE`);
    if (memErr) {
      const d = memErr.metadata.get('grpc-status-details-bin');
      const raw = d.length ? Buffer.from(d[0]).toString('latin1') : '';
      check(raw.includes('type.googleapis.com/google.rpc.RetryInfo'), 'memory refusal without google.rpc.RetryInfo');
      check(/memory/.test(memErr.details), `gRPC memory refusal message: ${memErr.details}`);
    }
    const mm = await metrics(mem.adminPort);
    check(mm['sentinel_sidecar_memory_refused_total{protocol="grpc"}'] >= 1 &&
      mm['sentinel_sidecar_memory_refused_total{protocol="http"}'] >= 1,
      `memory refusals counted: grpc ${mm['sentinel_sidecar_memory_refused_total{protocol="grpc"}']}, ` +
      `http ${mm['sentinel_sidecar_memory_refused_total{protocol="http"}']}`);
    check((mm.sentinel_sidecar_llm_events_total || 0) === 0, `events taken while over the limit: ${mm.sentinel_sidecar_llm_events_total}`);
    const memReady = (await httpRequest(mem.adminPort, 'GET', '/readyz')).status;
    check(memReady === 503, `/readyz over the memory limit: ${memReady}, want 503`);
    check((await mem.kill('SIGTERM')).code === 0, 'memory-limited sidecar exit status after SIGTERM');
  }

  // The aggregator comes: everything accepted arrives once, nothing refused arrives.
  const agg = await startAggregator({ port: aggPort, eventLog });
  log('aggregator started');
  const want = new Set(accepted);
  await waitEventLog(eventLog, (ls) => ls.filter((l) => l.type === 'event').length >= want.size, 60000);
  log('event log complete');
  await sleep(500);
  const events = (await waitEventLog(eventLog, () => true, 0)).filter((l) => l.type === 'event');
  const count = checkExactlyOnce(events, accepted, refusedIds);
  check(!count.has(grpcSpan.spanId), 'the refused gRPC span reached the aggregator');

  let readyAfter = 0;
  for (let i = 0; i < 50 && readyAfter !== 200; i++) {
    readyAfter = await ready();
    if (readyAfter !== 200) await sleep(100);
  }
  check(readyAfter === 200, `/readyz after the aggregator caught up: ${readyAfter}`);
  const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', {
    headers: { 'Content-Type': 'application/json' },
    body: otlpJson([makeSpan('gpt-4o', 900)], 'flood-api'),
  });
  check(r.status === 200, `a request after recovery: HTTP ${r.status}`);
  check((await sc.kill('SIGTERM')).code === 0, 'sidecar exit status after SIGTERM');
  check((await agg.kill('SIGTERM')).code === 0, 'aggregator exit status after SIGTERM');
});
