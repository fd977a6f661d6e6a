// integration.live_feed: the aggregator's live feed GET /ws/realtime (aggregator/live.c on the real
// REST API server, through tests/integration/dashboard/live_harness.c) with the `ws` npm client:
// handshake refusals, subscription filters (query and message), heartbeats (JSON and ping),
// idle and auth timeouts, the token (query, header, first message), a slow client dropped after
// its bounded backlog while a fast one keeps everything and publishing never blocks, and the
// close on shutdown.
//   node live.mjs --harness path/to/live_harness
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import readline from 'node:readline';

import WebSocket from 'ws';

const HARNESS = process.argv[process.argv.indexOf('--harness') + 1];
const SLOW = process.env.SENTINEL_TEST_SANITIZED === '1' ? 3 : 1;
let failures = 0;
let passes = 0;
const check = (cond, msg) => { if (cond) passes++; else { failures++; console.error(`FAIL: ${msg}`); } return cond; };
const log = (m) => console.log(`[live] ${m}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the harness

async function harness(args = []) {
  const p = spawn(HARNESS, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  let waiter = null;
  readline.createInterface({ input: p.stdout }).on('line', (l) => {
    lines.push(JSON.parse(l));
    if (waiter) { const w = waiter; waiter = null; w(); }
  });
  const next = async (ms = 20000 * SLOW) => {
    const t0 = Date.now();
    while (!lines.length) {
      if (Date.now() - t0 > ms) throw new Error('harness did not answer');
      await new Promise((r) => { waiter = r; setTimeout(r, 100); });
    }
    return lines.shift();
  };
  const exited = new Promise((r) => p.on('exit', (code) => r(code)));
  const { port } = await next();
  const cmd = async (c) => { p.stdin.write(`${c}\n`); return next(); };
  return {
    port, cmd, exited,
    publish: (change, svc, model, sev, n = 1, pad = 10) => cmd(`publish ${change} ${svc} ${model} ${sev} ${n} ${pad}`),
    stats: () => cmd('stats'),
    quit: async () => {
      p.stdin.write('quit\n');
      const bye = await next();
      const code = await exited; // sanitizer builds: a leak or error report exits non-zero
      check(code === 0 && bye.bye === true, `harness exit status ${code}`);
      return { bye, code };
    },
  };
}

// A ws client that records every message; resolves once open.
function client(port, query = '', opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/realtime${query}`, opts);
    ws.msgs = [];
    ws.pings = 0;
    ws.closed = null;
    ws.on('message', (d) => ws.msgs.push(JSON.parse(d.toString())));
    ws.on('ping', () => ws.pings++);
    ws.closedP = new Promise((r) => ws.on('close', (code, reason) => { ws.closed = { code, reason: reason.toString() }; r(ws.closed); }));
    ws.on('open', () => resolve(ws));
    ws.on('unexpected-response', (req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    ws.on('error', (e) => reject(e));
  });
}

async function until(pred, ms, what) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms * SLOW) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const alertsOf = (ws) => ws.msgs.filter((m) => m.type === 'alert');

// A raw upgrade request; resolves {status, headers, body}.
function rawGet(port, path, headers, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('upgrade', (res, sock) => { sock.destroy(); resolve({ status: 101, headers: res.headers }); });
    req.on('error', reject);
    req.end();
  });
}

const WSH = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };

// ---------------------------------------------------------------- cases

async function handshake() {
  const h = await harness();
  let r = await rawGet(h.port, '/ws/realtime', {});
  check(r.status === 426 && /websocket/i.test(r.body), `plain GET: ${r.status} ${r.body}`);
  r = await rawGet(h.port, '/ws/realtime', { ...WSH, 'Sec-WebSocket-Version': '8' });
  check(r.status === 426 && r.headers['sec-websocket-version'] === '13', `version 8: ${r.status}`);
  r = await rawGet(h.port, '/ws/realtime', WSH, 'POST');
  check(r.status === 405 && r.headers.allow === 'GET', `POST: ${r.status} allow ${r.headers.allow}`);
  r = await rawGet(h.port, '/ws/realtime', { ...WSH, 'Sec-WebSocket-Key': 'short' });
  check(r.status === 400, `bad key: ${r.status}`);
  r = await rawGet(h.port, '/ws/realtime?colour=red', WSH);
  check(r.status === 400 && /unknown parameter/.test(r.body), `unknown parameter: ${r.status} ${r.body}`);
  r = await rawGet(h.port, '/ws/realtime?severity=huge', WSH);
  check(r.status === 400 && /severity/.test(r.body), `bad severity: ${r.status} ${r.body}`);
  // RFC 6455 section 1.3's own example key and answer.
  r = await rawGet(h.port, '/ws/realtime', WSH);
  check(r.status === 101 && r.headers['sec-websocket-accept'] === 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', `accept: ${r.status} ${r.headers['sec-websocket-accept']}`);
  const s = await h.stats();
  check(s.refused === 6, `refused ${s.refused}, want 6`);
  const { code } = await h.quit();
  check(code === 0, `harness exit ${code}`);
}

async function filters() {
  const h = await harness();
  const all = await client(h.port);
  const bySub = await client(h.port);
  const byQuery = await client(h.port, '?model=m2');
  await until(() => [all, bySub, byQuery].every((c) => c.msgs.some((m) => m.type === 'hello')), 5000, 'hello');
  const hello = all.msgs[0];
  check(hello.type === 'hello' && hello.auth === 'ok' && hello.heartbeat_ms === 15000, `hello ${JSON.stringify(hello)}`);
  bySub.send(JSON.stringify({ type: 'subscribe', service: 'svc-b', severity: ['critical'] }));
  await until(() => bySub.msgs.some((m) => m.type === 'subscribed'), 5000, 'subscribed');
  const sub = bySub.msgs.find((m) => m.type === 'subscribed');
  check(JSON.stringify(sub.filter) === JSON.stringify({ service: ['svc-b'], model: [], severity: ['critical'] }), `filter ${JSON.stringify(sub.filter)}`);

  await h.publish('fired', 'svc-a', 'm1', 'high');
  await h.publish('fired', 'svc-b', 'm1', 'critical');
  await h.publish('fired', 'svc-b', 'm2', 'high');
  await h.publish('resolved', 'svc-b', 'm1', 'low');
  await until(() => alertsOf(all).length === 4, 5000, '4 alerts on the unfiltered client');
  await sleep(200);
  const a = alertsOf(all);
  check(a.map((m) => `${m.change}:${m.alert.service_name}/${m.alert.model}/${m.alert.severity}`).join(',') ===
    'fired:svc-a/m1/high,fired:svc-b/m1/critical,fired:svc-b/m2/high,resolved:svc-b/m1/low', `unfiltered order ${JSON.stringify(a.map((m) => m.alert.service_name))}`);
  check(a[3].alert.status === 'resolved' && a[0].alert.status === 'firing', 'statuses');
  check(a[0].alert.details.metric === 'latency_ms' && a[0].alert.details.value === 12000 && /^[0-9a-f-]{36}$/.test(a[0].alert.alert_id), `alert body ${JSON.stringify(a[0].alert)}`);
  const b = alertsOf(bySub);
  check(b.length === 1 && b[0].alert.service_name === 'svc-b' && b[0].alert.severity === 'critical', `subscribed client got ${JSON.stringify(b.map((m) => m.alert.service_name + '/' + m.alert.severity))}`);
  const q = alertsOf(byQuery);
  check(q.length === 1 && q[0].alert.model === 'm2', `query-filtered client got ${q.length}`);

  // A new subscription replaces the filter; a bad one is answered and changes nothing.
  bySub.send(JSON.stringify({ type: 'subscribe', service: ['svc-b'], severity: 'low' }));
  bySub.send(JSON.stringify({ type: 'subscribe', severity: 'catastrophic' }));
  bySub.send(JSON.stringify({ type: 'hello' }));
  await until(() => bySub.msgs.filter((m) => m.type === 'error').length === 2, 5000, 'two errors');
  const errs = bySub.msgs.filter((m) => m.type === 'error').map((m) => m.error);
  check(/severity/.test(errs[0]) && /unknown message type/.test(errs[1]), `errors ${JSON.stringify(errs)}`);
  await h.publish('fired', 'svc-b', 'm1', 'critical');
  await h.publish('fired', 'svc-b', 'm9', 'low');
  await until(() => alertsOf(all).length === 6, 5000, '6 alerts');
  await sleep(200);
  const b2 = alertsOf(bySub);
  check(b2.length === 2 && b2[1].alert.model === 'm9' && b2[1].alert.severity === 'low', `after resubscribe: ${JSON.stringify(b2.map((m) => m.alert.model))}`);
  check(bySub.readyState === WebSocket.OPEN, 'a bad message closed the client');
  // Binary frames are refused with a close 1003.
  byQuery.send(Buffer.from([1, 2, 3]));
  const c = await byQuery.closedP;
  check(c.code === 1003, `binary frame: close ${c.code}`);
  // A message over 4 KiB is refused by wslay with 1009.
  const big = await client(h.port);
  big.send(JSON.stringify({ type: 'subscribe', service: 'x'.repeat(5000) }));
  const bc = await big.closedP;
  check(bc.code === 1009, `oversized message: close ${bc.code}`);
  await sleep(100);
  const s = await h.stats();
  check(s.closed.protocol === 1 && s.closed.peer === 1 && s.clients === 2, `stats ${JSON.stringify(s)}`);
  const closing = [all.closedP, bySub.closedP];
  const { code } = await h.quit();
  check(code === 0, `harness exit ${code}`);
  const [c1] = await Promise.all(closing);
  check(c1.code === 1001, `shutdown close code ${c1.code}, want 1001`);
}

async function heartbeats() {
  const h = await harness(['--heartbeat-ms', '300']);
  const ws = await client(h.port);
  await sleep(1300 * SLOW);
  const beats = ws.msgs.filter((m) => m.type === 'heartbeat');
  check(beats.length >= 3, `${beats.length} heartbeats in 1.3 s at 300 ms`);
  check(beats.every((m) => !Number.isNaN(Date.parse(m.time))), `heartbeat time ${beats[0]?.time}`);
  check(ws.pings >= 3, `${ws.pings} pings`);
  check(ws.readyState === WebSocket.OPEN, 'a client answering pings stays open');
  // A client that sends nothing back (no pong) is closed as idle after 3 heartbeats.
  const sock = net.connect(h.port, '127.0.0.1');
  await new Promise((r) => sock.on('connect', r));
  sock.write(`GET /ws/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
  const t0 = Date.now();
  await new Promise((r) => { sock.on('close', r); sock.on('error', r); sock.resume(); });
  const took = Date.now() - t0;
  check(took >= 800 && took < 3000 * SLOW, `idle client closed after ${took} ms, want ~900-1200`);
  const s = await h.stats();
  check(s.closed.idle === 1 && s.clients === 1, `stats ${JSON.stringify(s)}`);
  await h.quit();
}

async function token() {
  const h = await harness(['--token', 's3cret', '--auth-ms', '600']);
  await rawGet(h.port, '/ws/realtime?token=wrong', WSH).then((r) => check(r.status === 401, `wrong query token: ${r.status}`));
  await rawGet(h.port, '/ws/realtime', { ...WSH, Authorization: 'Bearer nope' }).then((r) => check(r.status === 401, `wrong bearer: ${r.status}`));
  const byQuery = await client(h.port, '?token=s3cret');
  const byHeader = await client(h.port, '', { headers: { Authorization: 'Bearer s3cret' } });
  const byMsg = await client(h.port);
  const wrongMsg = await client(h.port);
  const silent = await client(h.port);
  await until(() => [byQuery, byHeader, byMsg, wrongMsg, silent].every((c) => c.msgs.length >= 1), 5000, 'hellos');
  check(byQuery.msgs[0].auth === 'ok' && byHeader.msgs[0].auth === 'ok' && byMsg.msgs[0].auth === 'required', 'hello auth fields');
  await h.publish('fired', 'svc', 'm', 'high');
  await until(() => alertsOf(byQuery).length === 1 && alertsOf(byHeader).length === 1, 5000, 'alerts to authed clients');
  await sleep(150);
  check(alertsOf(byMsg).length === 0, 'a client without the token got an alert');
  byMsg.send(JSON.stringify({ type: 'subscribe', token: 's3cret' }));
  wrongMsg.send(JSON.stringify({ type: 'subscribe', token: 'guess' }));
  await until(() => byMsg.msgs.some((m) => m.type === 'subscribed'), 5000, 'subscribed with token');
  const wc = await wrongMsg.closedP;
  check(wc.code === 1008 && wrongMsg.msgs.some((m) => m.type === 'error' && m.error === 'invalid token'), `wrong token in message: ${JSON.stringify(wc)} ${JSON.stringify(wrongMsg.msgs)}`);
  await h.publish('fired', 'svc', 'm', 'high');
  await until(() => alertsOf(byMsg).length === 1, 5000, 'alert after the token message');
  const sc = await silent.closedP;
  check(sc.code === 1006 || sc.code === 1008, `silent client close ${sc.code}`);
  const s = await h.stats();
  check(s.closed.auth === 2 && s.clients === 3, `stats ${JSON.stringify(s)}`);
  await h.quit();
}

async function slowClient() {
  const h = await harness(['--backlog-msgs', '1024', '--backlog-bytes', String(1 << 20)]);
  const fast = await client(h.port);
  const slow = await client(h.port);
  await until(() => fast.msgs.length && slow.msgs.length, 5000, 'hellos');
  slow._socket.pause(); // stops reading: the kernel buffers fill, then the hub's backlog
  let maxUs = 0;
  let sent = 0;
  let dropped = false;
  const ROUND = 500;
  for (let round = 0; round < 200 && !dropped; round++) {
    const r = await h.publish('updated', 'svc', 'm', 'high', ROUND, 250);
    sent += ROUND;
    maxUs = Math.max(maxUs, r.max_us);
    await until(() => alertsOf(fast).length === sent, 20000, `fast client to get ${sent}`);
    dropped = (await h.stats()).closed.slow > 0;
  }
  log(`slow client dropped after ${sent} messages; longest publish ${maxUs} us`);
  check(dropped, `the slow client was never dropped (${sent} messages)`);
  check(sent > 1024, `dropped after only ${sent} messages`);
  check(maxUs < 250000 * SLOW, `a publish took ${maxUs} us (blocked on a client?)`);
  const s = await h.stats();
  check(s.closed.slow === 1 && s.clients === 1, `stats ${JSON.stringify(s)}`);
  check(alertsOf(fast).length === sent && fast.readyState === WebSocket.OPEN, 'the fast client missed messages or was closed');
  slow._socket.resume();
  const c = await slow.closedP;
  check(alertsOf(slow).length < sent, `slow client got ${alertsOf(slow).length} of ${sent}`);
  log(`slow client closed with ${c.code} after ${alertsOf(slow).length} messages`);
  // The feed goes on for a new client.
  const again = await client(h.port);
  // Its hello first: the feed registers a client when it greets it, after the upgrade.
  await until(() => again.msgs.length >= 1, 5000, "the new client's hello");
  await h.publish('fired', 'svc', 'm', 'critical');
  await until(() => alertsOf(again).length === 1, 5000, 'an alert to a new client');
  await h.quit();
}

// ---------------------------------------------------------------- main

const cases = { handshake, filters, heartbeats, token, slowClient };
for (const [name, fn] of Object.entries(cases)) {
  const t0 = Date.now();
  try {
    await fn();
    log(`${name}: done in ${Date.now() - t0} ms`);
  } catch (e) {
    failures++;
    console.error(`FAIL: ${name}: ${e.stack || e}`);
  }
}
console.log(`${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
