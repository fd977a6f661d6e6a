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
import {
  check, httpRequest, log, makeSpan, readEventLog, run, sdk, sleep, startAggregator, startSidecar,
  tempDir, waitEventLog, checkExactlyOnce, pbFields,
} from './lib.mjs';

const METHOD = '/sentinel.v1.Aggregator/Ingest';
const same = (b) => b;


// Resources of the test: every request carries spans of both.
const RESOURCES = [
  { service: 'checkout', region: 'eu-west-1', version: '2.0.1', pod: 'checkout-7d9f-abcde' },
  { service: 'search', region: 'us-east-2', version: '0.9.0', pod: 'search-55c4-xyz12' },
];

function requestJson(spansByResource) {
  const kv = (key, v) => ({ key, value: { stringValue: v } });
  return JSON.stringify({
    resourceSpans: spansByResource.map((spans, r) => ({
      resource: {
        attributes: [kv('service.name', RESOURCES[r].service), kv('cloud.region', RESOURCES[r].region),
          kv('service.version', RESOURCES[r].version), kv('k8s.pod.name', RESOURCES[r].pod)],
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
  const proxy = { old: true, seen: [], refusedGrouped: 0 };
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
      proxy.seen.push({ old: proxy.old, compression });
      if (proxy.old && compression >= 2) {
        proxy.refusedGrouped++;
        cb({ code: grpc.status.INVALID_ARGUMENT, details: `unknown compression ${compression}` });
        return;
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
