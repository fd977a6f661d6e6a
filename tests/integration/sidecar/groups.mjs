// integration.sidecar_groups: event groups (Batch.groups) and their negotiation, through the real
// sidecar and the real aggregator, with a gRPC proxy in between that can play an aggregator
// older than groups: it hides IngestResponse.features and refuses the *_GROUPS compressions with
// INVALID_ARGUMENT ("unknown compression"), as such an aggregator does.
//
//   1. old: the sidecar has not heard FEATURE_GROUPS, so it seals flat events only (compression
//      NONE or ZSTD); every event arrives once with its own resource strings.
//   2. new: the proxy passes the features through; after the first answer the sidecar seals
//      groups (ZSTD_GROUPS); every event still arrives once, with its resource's strings
//      (two resources per request, so two groups per request).
//   3. downgrade: the proxy turns old again. The next batch, sealed with groups, is refused;
//      the sidecar converts it to flat events and resends it: nothing is lost or doubled, and it
//      seals flat from then on.
//   4. split: a second sidecar (otlp.max_message_bytes 64 KiB, uncompressed batches so the proxy
//      can read them) seals one grouped batch of events with long resource strings: under the
//      limit with groups, far over it flat. Refused by the old aggregator, it is split into
//      several flat requests under the limit ("<id>/part" with sequence (S << 20) | k, then the
//      batch's own id with its sequence S): every event arrives exactly once.
//   5. restart mid-split: a third sidecar's grouped batch is split the same way; the proxy applies
//      its first part and keeps refusing the next (retryably); the sidecar is killed (-9), the
//      aggregator "upgraded" (groups passed through) and the sidecar restarted on its spool: it
//      sends the same parts again (the first one a duplicate) instead of the batch whole, which
//      would apply the first part's events a second time.
import { spawnSync } from 'node:child_process';
import {
  SIDECAR, check, httpRequest, log, makeSpan, readEventLog, run, sdk, sleep, startAggregator, startSidecar,
  tempDir, waitEventLog, checkExactlyOnce, pbFields,
} from './lib.mjs';

const METHOD = '/sentinel.v1.Aggregator/Ingest';
const same = (b) => b;


// Resources of the test: every request carries spans of both.
const RESOURCES = [
  { service: 'checkout', region: 'eu-west-1', version: '2.0.1', pod: 'checkout-7d9f-abcde' },
  { service: 'search', region: 'us-east-2', version: '0.9.0', pod: 'search-55c4-xyz12' },
  // The longest strings an event keeps (service 127 bytes, the others 63): phase 4.
  { service: 'L'.repeat(127), region: 'r'.repeat(63), version: 'v'.repeat(63), pod: 'p'.repeat(63) },
];

// spansByResource[i] are spans of RESOURCES[res[i]].
function requestJson(spansByResource, res = spansByResource.map((_, r) => r)) {
  const kv = (key, v) => ({ key, value: { stringValue: v } });
  return JSON.stringify({
    resourceSpans: spansByResource.map((spans, i) => ({
      resource: {
        attributes: [kv('service.name', RESOURCES[res[i]].service), kv('cloud.region', RESOURCES[res[i]].region),
          kv('service.version', RESOURCES[res[i]].version), kv('k8s.pod.name', RESOURCES[res[i]].pod)],
      },
      scopeSpans: [{
        scope: { name: 'groups-it' },
        spans: spans.map((s) => ({
          traceId: s.traceId,
          spanId: s.spanId,
          name: `chat ${s.model}`,
          kind: 3,
          startTimeUnixNano: s.startNs.toString(),
          endTimeUnixNano: (s.startNs + BigInt(Math.round(s.latencyMs * 1e6))).toString(),
          attributes: [kv('gen_ai.operation.name', 'chat'), kv('gen_ai.provider.name', 'openai'),
            kv('gen_ai.request.model', s.model)],
        })),
      }],
    })),
  });
}

await run('sidecar_groups', async () => {
  const grpc = await sdk('@grpc/grpc-js');
  const dir = tempDir('groups');
  const eventLog = `${dir}/events.jsonl`;
  const agg = await startAggregator({ eventLog });

  // The proxy: forwards each Ingest call's bytes to the aggregator and its answer back.
  // partsFor/partsLeft: flat Ingest calls of sidecar partsFor (its parts and its own batches)
  // forwarded before the proxy refuses the next ones with UNAVAILABLE (phase 5).
  const proxy = { old: true, seen: [], refusedGrouped: 0, partsFor: null, partsLeft: 0 };
  const client = new grpc.Client(`127.0.0.1:${agg.port}`, grpc.credentials.createInsecure());
  const server = new grpc.Server();
  server.addService({
    Ingest: {
      path: METHOD, requestStream: false, responseStream: false,
      requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same,
    },
  }, {
    Ingest: (call, cb) => {
      const req = call.request;
      const c = pbFields(req).find((f) => f.field === 1);
      const compression = c ? Number(c.value) : 0;
      let id = '';
      let seq = null;
      if (compression === 0 || compression === 2) { // uncompressed: the Batch's sidecar_id, sequence
        const pl = pbFields(req).find((f) => f.field === 3);
        const fields = pl ? pbFields(pl.value) : [];
        const idf = fields.find((f) => f.field === 1);
        if (idf) id = idf.value.toString();
        const sf = fields.find((f) => f.field === 2);
        if (sf) seq = BigInt(sf.value);
      }
      proxy.seen.push({ old: proxy.old, compression, id, seq, bytes: req.length });
      if (proxy.old && compression >= 2) {
        proxy.refusedGrouped++;
        cb({ code: grpc.status.INVALID_ARGUMENT, details: `unknown compression ${compression}` });
        return;
      }
      if (proxy.partsFor !== null && compression === 0 && (id === proxy.partsFor || id === `${proxy.partsFor}/part`)) {
        if (proxy.partsLeft === 0) {
          cb({ code: grpc.status.UNAVAILABLE, details: 'held back by the test' });
          return;
        }
        proxy.partsLeft--;
      }
      const old = proxy.old;
      client.makeUnaryRequest(METHOD, same, same, req, (err, resp) => {
        if (err) return cb(err);
        // An old aggregator's answer has no features field.
        if (old) resp = Buffer.concat(pbFields(resp).filter((f) => f.field !== 5).map((f) => resp.subarray(f.start, f.end)));
        cb(null, resp);
      });
    },
  });
  const proxyPort = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));

  const sidecar = await startSidecar({ aggregatorPort: proxyPort, spoolDir: `${dir}/spool` });
  const sent = new Map(); // span id -> resource index
  let batchNo = 0;
  // One request of 2 x 4 spans; waits until all of them are in the event log.
  async function sendAndWait(what) {
    batchNo++;
    const spans = RESOURCES.map((_, r) => Array.from({ length: 4 }, () => makeSpan(r ? 'gpt-4o' : 'gpt-4o-mini', 800 + r)));
    spans.forEach((ss, r) => ss.forEach((s) => sent.set(s.spanId, r)));
    const res = await httpRequest(sidecar.httpPort, 'POST', '/v1/traces',
      { headers: { 'Content-Type': 'application/json' }, body: requestJson(spans) });
    check(res.status === 200, `${what}: request ${batchNo} answered ${res.status}`);
    const ids = spans.flat().map((s) => s.spanId);
    const lines = await waitEventLog(eventLog, (ls) => {
      const have = new Set(ls.filter((l) => l.type === 'event').map((l) => l.span_id));
      return ids.every((id) => have.has(id));
    }, 15000);
    const have = new Set(lines.filter((l) => l.type === 'event').map((l) => l.span_id));
    check(ids.every((id) => have.has(id)), `${what}: request ${batchNo}'s events arrived`);
  }

  // 1. An old aggregator: flat batches only.
  for (let i = 0; i < 3; i++) await sendAndWait('old aggregator');
  const phase1 = proxy.seen.length;
  check(proxy.seen.every((s) => s.compression <= 1), `old aggregator: flat batches only (${JSON.stringify(proxy.seen)})`);
  check(proxy.refusedGrouped === 0, 'old aggregator: nothing refused');

  // 2. A new aggregator: groups after its first answer.
  proxy.old = false;
  for (let i = 0; i < 4; i++) await sendAndWait('new aggregator');
  const phase2 = proxy.seen.slice(phase1);
  const grouped = phase2.filter((s) => s.compression === 3).length;
  check(grouped >= 2, `new aggregator: batches with groups (ZSTD_GROUPS) after it announced them: ${JSON.stringify(phase2)}`);
  log(`new aggregator: ${grouped} of ${phase2.length} calls carried groups`);

  // 3. Downgrade: the grouped batch is refused, converted and resent flat; flat from then on.
  proxy.old = true;
  const before = proxy.seen.length;
  for (let i = 0; i < 2; i++) await sendAndWait('downgrade');
  const phase3 = proxy.seen.slice(before);
  check(proxy.refusedGrouped >= 1, `downgrade: the grouped batch was refused (${JSON.stringify(phase3)})`);
  const afterRefusal = phase3.slice(phase3.findIndex((s) => s.compression >= 2) + 1);
  check(afterRefusal.length > 0 && afterRefusal.every((s) => s.compression <= 1),
    `downgrade: flat batches after the refusal (${JSON.stringify(phase3)})`);
  check(sidecar.logs.some((j) => j.msg === 'the aggregator refused a batch with event groups; resending it as flat events'),
    'downgrade: the sidecar said it resent the batch flat');

  // Parts are cut at up to 64 KiB: a record limit under that could refuse a part (and lose its
  // events), so the sidecar does not start with one.
  const under = spawnSync(SIDECAR, ['--spool-dir', `${dir}/spool-under`, '--set', 'spool.max_record_bytes=32KiB'],
    { encoding: 'utf8', timeout: 20000 });
  check(under.status === 2 && /spool\.max_record_bytes: at least 64KiB/.test(under.stderr + under.stdout),
    `spool.max_record_bytes=32KiB refused at start (status ${under.status}: ${under.stderr}${under.stdout})`);

  // 4. Split: one grouped batch whose flat copy is over the 64 KiB limit.
  const small = await startSidecar({
    aggregatorPort: proxyPort, spoolDir: `${dir}/spool2`,
    extra: ['--set', 'otlp.max_message_bytes=65536', '--set', 'batch.zstd_level=0',
      '--set', 'batch.flush_interval=3s', '--set', 'batch.max_events=1000'],
  });
  proxy.old = false;
  const learn = [makeSpan('gpt-4o', 700)];
  learn.forEach((s) => sent.set(s.spanId, 0));
  let res = await httpRequest(small.httpPort, 'POST', '/v1/traces',
    { headers: { 'Content-Type': 'application/json' }, body: requestJson([learn]) });
  check(res.status === 200, `split: first request answered ${res.status}`);
  await waitEventLog(eventLog, (ls) => ls.some((l) => l.type === 'event' && l.span_id === learn[0].spanId), 15000);
  await small.waitLog((j) => j.msg === 'the aggregator reads event groups: sealing batches with groups', 10000, 'groups');
  proxy.old = true;
  const splitFrom = proxy.seen.length;
  const bigIds = [];
  for (let i = 0; i < 3; i++) { // 3 x 80 events in one batch (the flush interval is 3 s)
    const spans = Array.from({ length: 80 }, () => makeSpan('gpt-4o', 900));
    spans.forEach((s) => { sent.set(s.spanId, 2); bigIds.push(s.spanId); });
    const body = requestJson([spans], [2]);
    check(body.length < 65536, `split: request ${i} of ${body.length} bytes fits the OTLP limit`);
    res = await httpRequest(small.httpPort, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/json' }, body });
    check(res.status === 200, `split: request ${i} answered ${res.status}`);
  }
  const got = await waitEventLog(eventLog, (ls) => {
    const have = new Set(ls.filter((l) => l.type === 'event').map((l) => l.span_id));
    return bigIds.every((id) => have.has(id));
  }, 20000);
  const haveBig = new Set(got.filter((l) => l.type === 'event').map((l) => l.span_id));
  check(bigIds.every((id) => haveBig.has(id)), 'split: every event of the big batch arrived');
  // The flush timer may seal the events as more than one batch: some batch went as several parts.
  const resent = small.logs.filter((j) => j.msg === 'the aggregator refused a batch with event groups; resending it as flat events')
    .reduce((a, j) => (a && a.requests >= j.requests ? a : j), null);
  check(resent && resent.requests >= 2, `split: the flat copy went as several requests (${JSON.stringify(resent)})`);
  const calls = proxy.seen.slice(splitFrom);
  const shown = JSON.stringify(calls.map(({ id, seq, bytes, compression }) => ({ id, seq: String(seq), bytes, compression })));
  const parts = calls.filter((c) => c.compression === 0 && c.id.startsWith(`${small.sidecarId}/part`));
  check(parts.length >= 1 && parts.every((c) => c.bytes <= 65536 && c.id === `${small.sidecarId}/part`),
    `split: parts under "<id>/part", each at most 64 KiB: ${shown}`);
  const lasts = calls.filter((c) => c.compression === 0 && c.id === small.sidecarId);
  check(lasts.length >= 1, 'split: the last part under the batch\'s own id');
  // Each part's sequence is (S << 20) | k, k = 1.. in sending order, S the last part's sequence.
  const bySeq = parts.every((c) => lasts.some((l) => l.seq === c.seq >> 20n) && (c.seq & 0xfffffn) >= 1n);
  const rising = parts.every((c, i) => i === 0 || c.seq > parts[i - 1].seq);
  check(bySeq && rising, `split: part sequences (S << 20) | k, rising: ${shown}`);
  check(calls.some((c) => c.compression === 2), 'split: the grouped batch was refused first');
  log(`split: ${resent ? resent.requests : 0} flat requests for one grouped batch of ${bigIds.length} events`);

  // 5. Restart mid-split with the aggregator upgraded meanwhile.
  const splitArgs = ['--set', 'otlp.max_message_bytes=65536', '--set', 'batch.zstd_level=0',
    '--set', 'batch.flush_interval=3s', '--set', 'batch.max_events=1000'];
  const third = await startSidecar({ aggregatorPort: proxyPort, spoolDir: `${dir}/spool3`, extra: splitArgs });
  proxy.old = false;
  const learn3 = [makeSpan('gpt-4o', 700)];
  learn3.forEach((s) => sent.set(s.spanId, 0));
  res = await httpRequest(third.httpPort, 'POST', '/v1/traces',
    { headers: { 'Content-Type': 'application/json' }, body: requestJson([learn3]) });
  check(res.status === 200, `restart mid-split: first request answered ${res.status}`);
  await third.waitLog((j) => j.msg === 'the aggregator reads event groups: sealing batches with groups', 10000, 'groups');
  await waitEventLog(eventLog, (ls) => ls.some((l) => l.type === 'event' && l.span_id === learn3[0].spanId), 15000);
  proxy.old = true;
  proxy.partsFor = third.sidecarId;
  proxy.partsLeft = 1;
  const midIds = [];
  for (let i = 0; i < 3; i++) {
    const spans = Array.from({ length: 80 }, () => makeSpan('gpt-4o', 900));
    spans.forEach((s) => { sent.set(s.spanId, 2); midIds.push(s.spanId); });
    res = await httpRequest(third.httpPort, 'POST', '/v1/traces',
      { headers: { 'Content-Type': 'application/json' }, body: requestJson([spans], [2]) });
    check(res.status === 200, `restart mid-split: request ${i} answered ${res.status}`);
  }
  // The first part is applied: some of the batch's events are in the aggregator, not all.
  const partial = await waitEventLog(eventLog, (ls) => ls.some((l) => l.type === 'event' && midIds.includes(l.span_id)), 20000);
  const applied = partial.filter((l) => l.type === 'event' && midIds.includes(l.span_id)).length;
  check(applied > 0 && applied < midIds.length, `restart mid-split: the first part applied ${applied} of ${midIds.length} events`);
  await third.kill('SIGKILL');
  proxy.old = false; // upgraded: groups would now be accepted whole
  proxy.partsFor = null;
  const upgradedFrom = proxy.seen.length;
  const third2 = await startSidecar({ aggregatorPort: proxyPort, spoolDir: `${dir}/spool3`, extra: splitArgs });
  const got5 = await waitEventLog(eventLog, (ls) => {
    const have = new Set(ls.filter((l) => l.type === 'event').map((l) => l.span_id));
    return midIds.every((id) => have.has(id));
  }, 20000);
  const have5 = new Set(got5.filter((l) => l.type === 'event').map((l) => l.span_id));
  check(midIds.every((id) => have5.has(id)), 'restart mid-split: every event of the batch arrived');
  check(third2.logs.some((j) => j.msg === 'resuming a batch that was being sent in parts before the restart' && j.requests >= 2),
    'restart mid-split: the restarted sidecar resumed the parts');
  const after = proxy.seen.slice(upgradedFrom);
  check(after.some((c) => c.id === `${third.sidecarId}/part`),
    `restart mid-split: the parts were sent again, not the batch whole: ${JSON.stringify(after.map(({ id, compression }) => ({ id, compression })))}`);

  // Every acknowledged span exactly once, each with its own resource's strings.
  await sleep(500);
  const events = readEventLog(eventLog).filter((l) => l.type === 'event');
  checkExactlyOnce(events, [...sent.keys()]);
  let wrong = 0;
  for (const e of events) {
    const r = RESOURCES[sent.get(e.span_id)];
    if (!r || e.service !== r.service || e.region !== r.region || e.service_version !== r.version || e.pod !== r.pod) wrong++;
  }
  check(wrong === 0, `${wrong} events with another resource's strings`);
  log(`${events.length} events, ${proxy.seen.length} Ingest calls, ${proxy.refusedGrouped} refused`);
  server.forceShutdown();
  client.close();
});
