// integration.sidecar_malformed: malformed OTLP against the running sidecar. Each bad request is
// refused with the status the OTLP specification names and a message a person can act on:
//   HTTP: truncated protobuf, a wrong wire type, a huge length prefix, bad JSON, a corrupt gzip
//         body -> 400 with a google.rpc.Status body in the request's encoding; an unknown
//         Content-Type -> 415;
//   gRPC: truncated protobuf, a wrong wire type, a huge length prefix -> INVALID_ARGUMENT.
// After every bad request a good one on the same transport still succeeds, and in the end exactly
// the good requests' events reach the aggregator (a malformed request never affects others).
import path from 'node:path';
import zlib from 'node:zlib';

import {
  check, httpRequest, log, makeSpan, metrics, otlpJson, otlpProto, pb, run, sdk, startAggregator,
  startSidecar, statusMessage, tempDir, waitEventLog,
} from './lib.mjs';

const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

await run('sidecar_malformed', async () => {
  const grpc = await sdk('@grpc/grpc-js');
  const dir = tempDir('bad-');
  const eventLog = path.join(dir, 'events.jsonl');
  const agg = await startAggregator({ eventLog });
  const sc = await startSidecar({ aggregatorPort: agg.port, spoolDir: path.join(dir, 'spool') });
  const good = []; // span ids of accepted requests

  const client = new grpc.Client(`127.0.0.1:${sc.grpcPort}`, grpc.credentials.createInsecure());
  const grpcCall = (body) =>
    new Promise((resolve) =>
      client.makeUnaryRequest(EXPORT, (b) => b, (b) => b, body, (err, res) => resolve({ err, res })),
    );

  async function goodHttp(label) {
    const s = makeSpan('gpt-4o-mini', 500);
    const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', {
      headers: { 'Content-Type': 'application/x-protobuf' },
      body: otlpProto(s),
    });
    if (check(r.status === 200, `good HTTP request after ${label}: HTTP ${r.status} ${r.body}`)) good.push(s.spanId);
  }
  async function goodGrpc(label) {
    const s = makeSpan('gpt-4o-mini', 500);
    const { err } = await grpcCall(otlpProto(s));
    if (check(!err, `good gRPC request after ${label}: ${err && err.message}`)) good.push(s.spanId);
  }

  const valid = otlpProto(makeSpan('gpt-4o', 1000));
  const badProto = {
    'truncated protobuf': valid.subarray(0, valid.length - 7),
    'wrong wire type': Buffer.concat([pb.uint(1, 5)]), // resource_spans as a varint
    'huge length prefix': Buffer.concat([pb.tag(1, 2), pb.varint(2n ** 40n), Buffer.from('abc')]),
  };

  // --- HTTP, protobuf ---
  for (const [label, body] of Object.entries(badProto)) {
    const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', {
      headers: { 'Content-Type': 'application/x-protobuf' },
      body,
    });
    const st = statusMessage(r.body);
    log(`HTTP protobuf ${label}: ${r.status} ${r.headers['content-type']} code=${st.code} "${st.message}"`);
    check(r.status === 400, `HTTP ${label}: status ${r.status}, want 400`);
    check((r.headers['content-type'] || '').startsWith('application/x-protobuf'), `HTTP ${label}: content-type ${r.headers['content-type']}`);
    check(st.code === 3 && st.message && st.message.length > 5, `HTTP ${label}: google.rpc.Status ${JSON.stringify(st)}`);
    await goodHttp(label);
  }

  // --- HTTP, JSON ---
  for (const [label, body] of Object.entries({
    'bad JSON': '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":',
    'JSON of the wrong shape': '{"resourceSpans":{"scopeSpans":7}}',
  })) {
    const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/json' }, body });
    let j = null;
    try {
      j = JSON.parse(r.body.toString());
    } catch {
      /* checked below */
    }
    log(`HTTP JSON ${label}: ${r.status} ${r.body}`);
    check(r.status === 400, `HTTP ${label}: status ${r.status}, want 400`);
    check((r.headers['content-type'] || '').startsWith('application/json'), `HTTP ${label}: content-type ${r.headers['content-type']}`);
    check(j && j.code === 3 && typeof j.message === 'string' && j.message.length > 5, `HTTP ${label}: body ${r.body}`);
    await goodHttp(label);
  }

  // --- HTTP, JSON with one span of an invalid trace id: partial success, that span rejected ---
  {
    const bad = makeSpan('gpt-4o', 10);
    const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', {
      headers: { 'Content-Type': 'application/json' },
      body: otlpJson([{ ...bad, traceId: 'zz' }]),
    });
    log(`HTTP JSON bad trace id: ${r.status} ${r.body}`);
    const j = JSON.parse(r.body.toString());
    check(r.status === 200 && j.partialSuccess && String(j.partialSuccess.rejectedSpans) === '1' && /trace id/.test(j.partialSuccess.errorMessage),
      `HTTP JSON bad trace id: ${r.status} ${r.body}, want 200 partialSuccess rejectedSpans 1`);
    await goodHttp('bad trace id');
  }

  // --- HTTP, a corrupt gzip body, and one that is fine but holds a truncated request ---
  for (const [label, body, want] of [
    ['corrupt gzip', Buffer.from('\x1f\x8b\x08\x00garbage-not-deflate', 'binary'), 400],
    ['gzip of a truncated request', zlib.gzipSync(badProto['truncated protobuf']), 400],
  ]) {
    const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', {
      headers: { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'gzip' },
      body,
    });
    const st = statusMessage(r.body);
    log(`HTTP ${label}: ${r.status} "${st.message}"`);
    check(r.status === want, `HTTP ${label}: status ${r.status}, want ${want}`);
    check(st.message && st.message.length > 5, `HTTP ${label}: no message`);
    await goodHttp(label);
  }

  // --- HTTP, an unknown Content-Type ---
  {
    const r = await httpRequest(sc.httpPort, 'POST', '/v1/traces', { headers: { 'Content-Type': 'text/plain' }, body: 'hello' });
    log(`HTTP text/plain: ${r.status} ${r.body.toString().trim()}`);
    check(r.status === 415, `HTTP text/plain: status ${r.status}, want 415`);
    check(/application\/x-protobuf|application\/json/.test(r.body.toString()), `415 body does not name the accepted types: ${r.body}`);
    await goodHttp('text/plain');
  }

  // --- gRPC ---
  for (const [label, body] of Object.entries(badProto)) {
    const { err } = await grpcCall(body);
    log(`gRPC ${label}: ${err ? `${err.code} ${err.details}` : 'OK'}`);
    check(err && err.code === grpc.status.INVALID_ARGUMENT, `gRPC ${label}: ${err ? err.code : 'OK'}, want INVALID_ARGUMENT`);
    check(err && err.details && err.details.length > 5, `gRPC ${label}: no message`);
    await goodGrpc(label);
  }
  client.close();

  // Exactly the good requests' events reached the aggregator, once each.
  const lines = await waitEventLog(eventLog, (ls) => ls.filter((l) => l.type === 'event').length >= good.length, 10000);
  await new Promise((r) => setTimeout(r, 500));
  const events = lines.filter((l) => l.type === 'event');
  check(events.length === good.length, `${events.length} events in the event log, ${good.length} good requests`);
  for (const id of good) check(events.filter((e) => e.span_id === id).length === 1, `good span ${id} not logged exactly once`);

  const m = await metrics(sc.adminPort);
  const inv = (p) => m[`sentinel_sidecar_otlp_requests_total{signal="traces",protocol="${p}",outcome="invalid"}`];
  // The corrupt gzip body and the 415 are refused by the transport before the pipeline sees them.
  check(inv('http') === 6, `HTTP invalid requests counted: ${inv('http')}, want 6`);
  check(inv('grpc') === 3, `gRPC invalid requests counted: ${inv('grpc')}, want 3`);
  check((await sc.kill('SIGTERM')).code === 0, 'sidecar exit status after SIGTERM');
  check((await agg.kill('SIGTERM')).code === 0, 'aggregator exit status after SIGTERM');
});
