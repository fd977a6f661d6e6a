// Drives `sentinel-injector serve` over HTTPS with real AdmissionReview requests and applies every
// JSON Patch it answers with fast-json-patch (an independent RFC 6902 implementation), then
// checks the resulting Pods. Also runs `sentinel-injector inject` over the example manifests:
// idempotency, and the offline result equals the webhook's patch applied by fast-json-patch.
//
// usage: node check.mjs --injector PATH --data DIR [--examples DIR]
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import jsonpatch from 'fast-json-patch';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const injector = args.injector;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sentinel-injector-'));
let failures = 0;
let checks = 0;
const SIDECAR = 'sentinel-sidecar';

function check(name, fn) {
  checks++;
  try {
    fn();
  } catch (e) {
    failures++;
    console.error(`FAIL ${name}: ${e.message}`);
  }
}

function openssl(...a) {
  execFileSync('openssl', a, { cwd: work, stdio: ['ignore', 'ignore', 'pipe'] });
}

// A throwaway CA and a server certificate for 127.0.0.1.
openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2',
  '-subj', '/CN=sentinel-test-ca');
openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'tls.key', '-out', 'tls.csr', '-subj', '/CN=sentinel-injector');
fs.writeFileSync(path.join(work, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
openssl('x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'tls.crt',
  '-days', '2', '-extfile', 'ext.cnf');
const ca = fs.readFileSync(path.join(work, 'ca.crt'));

// Starts serve; resolves with its port from the "listening" log line.
function startServer() {
  const child = spawn(injector, ['serve'], {
    env: {
      ...process.env,
      SENTINEL_INJECTOR_ENDPOINT: '127.0.0.1:0',
      SENTINEL_TLS_CERT: path.join(work, 'tls.crt'),
      SENTINEL_TLS_KEY: path.join(work, 'tls.key'),
      SENTINEL_KUBERNETES_VERSION: '1.29.3',
      SENTINEL_INJECT_NAMESPACES: 'team-ai',
      SENTINEL_INJECTOR_MAX_BODY_BYTES: '256KiB',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${log}`)), 10000);
    child.stderr.on('data', (d) => {
      log += d;
      for (const line of log.split('\n')) {
        try {
          const o = JSON.parse(line);
          if (o.msg === 'listening') {
            clearTimeout(timer);
            resolve({ child, port: o.port, logs: () => log });
          }
        } catch { /* partial line */ }
      }
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${log}`)));
  });
}

function request(port, method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method, path: urlPath, ca, servername: 'localhost',
      headers: { ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

let uidSeq = 0;
function review(pod, namespace, extra = {}) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `uid-${++uidSeq}-${Math.random().toString(16).slice(2)}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      namespace,
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object: pod,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      ...extra,
    },
  };
}

const INJECT = 'sentinel.llm-devops.io/inject';
const pods = {
  simple: { metadata: { name: 'simple', annotations: { [INJECT]: 'true' } },
    spec: { containers: [{ name: 'app', image: 'app:1' }] } },
  several: { metadata: { name: 'several', labels: { [INJECT]: 'true', app: 'x' }, annotations: { keep: 'me' } },
    spec: { containers: [
      { name: 'api', image: 'api:1', env: [{ name: 'A', value: '1' }] },
      { name: 'worker', image: 'w:1', env: [{ name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://collector:4317' }] },
      { name: 'cache', image: 'redis:7' }],
      volumes: [{ name: 'data', emptyDir: {} }] } },
  withInit: { metadata: { generateName: 'job-', annotations: { [INJECT]: 'true', 'kubectl.kubernetes.io/default-container': 'main' } },
    spec: { initContainers: [{ name: 'migrate', image: 'm:1' }, { name: 'seed', image: 's:1' }],
      containers: [{ name: 'side', image: 's:1' }, { name: 'main', image: 'm:2' }] } },
  bare: { metadata: { generateName: 'bare-' }, spec: { containers: [{ name: 'only', image: 'o:1' }] } },
  escaped: { metadata: { name: 'escaped', annotations: { [INJECT]: 'true', 'a/b~c': 'slash and tilde' } },
    spec: { containers: [{ name: 'app', image: 'app:1', env: [{ name: 'OTEL_EXPORTER_OTLP_PROTOCOL', value: 'http/protobuf' }] }] } },
  overrides: { metadata: { name: 'overrides', annotations: { [INJECT]: 'true',
    'sentinel.llm-devops.io/image': 'registry.example.com/sidecar:test',
    'sentinel.llm-devops.io/memory-request': '64Mi', 'sentinel.llm-devops.io/cpu-limit': 'lots',
    'sentinel.llm-devops.io/latency-critical-ms': '1500', 'sentinel.llm-devops.io/aggregator': 'no port',
    'sentinel.llm-devops.io/otel-containers': 'b' } },
    spec: { containers: [{ name: 'a', image: 'a' }, { name: 'b', image: 'b' }] } },
  optedOut: { metadata: { name: 'out', annotations: { [INJECT]: 'false' } }, spec: { containers: [{ name: 'a', image: 'a' }] } },
  hostNet: { metadata: { name: 'hn', annotations: { [INJECT]: 'true' } }, spec: { hostNetwork: true, containers: [{ name: 'a', image: 'a' }] } },
  notOpted: { metadata: { name: 'plain' }, spec: { containers: [{ name: 'a', image: 'a' }] } },
};

const cases = [
  { name: 'simple', pod: pods.simple, ns: 'apps', inject: true },
  { name: 'several containers, existing env and endpoint', pod: pods.several, ns: 'apps', inject: true },
  { name: 'existing init containers, default-container kept', pod: pods.withInit, ns: 'apps', inject: true },
  { name: 'no labels or annotations, generateName, namespace path', pod: pods.bare, ns: 'apps', inject: true, path: '/mutate/namespace' },
  { name: 'no labels or annotations, configured namespace', pod: pods.bare, ns: 'team-ai', inject: true },
  { name: 'keys needing RFC 6901 escapes', pod: pods.escaped, ns: 'apps', inject: true },
  { name: 'overrides, bad ones warned', pod: pods.overrides, ns: 'apps', inject: true, warnings: 2 },
  { name: 'dry run', pod: pods.simple, ns: 'apps', inject: true, extra: { dryRun: true } },
  { name: 'a Job\'s pod (run to completion) with native sidecars', ns: 'apps', inject: true,
    pod: { metadata: { generateName: 'backfill-', annotations: { [INJECT]: 'true' } },
      spec: { restartPolicy: 'Never', containers: [{ name: 'job', image: 'j:1' }] } } },
  { name: 'opted out', pod: pods.optedOut, ns: 'apps', inject: false, reason: 'opted_out', path: '/mutate/namespace' },
  { name: 'system namespace', pod: pods.simple, ns: 'kube-system', inject: false, reason: 'system_namespace' },
  { name: 'hostNetwork', pod: pods.hostNet, ns: 'apps', inject: false, reason: 'host_network' },
  { name: 'not opted in', pod: pods.notOpted, ns: 'apps', inject: false, reason: 'not_opted_in' },
  { name: 'update is left alone', pod: pods.simple, ns: 'apps', inject: false, reason: 'not_pod_create', extra: { operation: 'UPDATE' } },
];

function allContainers(pod) {
  return [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
}

// What every injected pod must look like, compared with the pod before.
function checkInjected(before, after, native, annotations) {
  const sidecars = allContainers(after).filter((c) => c.name === SIDECAR);
  assert.equal(sidecars.length, 1, 'one sidecar');
  const sc = sidecars[0];
  if (native) {
    assert.equal(after.spec.initContainers[0].name, SIDECAR, 'native sidecar first among init containers');
    assert.equal(sc.restartPolicy, 'Always');
    assert.equal(sc.startupProbe.httpGet.path, '/healthz');
    assert.equal(sc.startupProbe.httpGet.port, 8081);
    assert.deepEqual(after.spec.initContainers.slice(1), before.spec.initContainers ?? [], 'other init containers untouched');
    assert.equal(after.spec.containers.length, before.spec.containers.length);
  }
  const env = Object.fromEntries(sc.env.map((e) => [e.name, e.value ?? e.valueFrom]));
  assert.equal(env.SENTINEL_MODE, 'sidecar');
  assert.match(env.SENTINEL_AGGREGATOR, /^[^:]+:\d+$/);
  assert.deepEqual(env.POD_NAME, { fieldRef: { fieldPath: 'metadata.name' } });
  assert.ok(sc.volumeMounts.some((m) => m.name === 'sentinel-spool' && m.mountPath === '/var/lib/sentinel/spool'));
  assert.equal(after.spec.volumes.filter((v) => v.name === 'sentinel-spool').length, 1);
  assert.ok(after.spec.volumes.find((v) => v.name === 'sentinel-spool').emptyDir);
  for (const v of before.spec.volumes ?? []) assert.ok(after.spec.volumes.some((w) => w.name === v.name), `volume ${v.name} kept`);
  const only = before.metadata.annotations?.['sentinel.llm-devops.io/otel-containers'];
  for (const c of before.spec.containers) {
    const a = after.spec.containers.find((x) => x.name === c.name);
    const had = (n) => (c.env ?? []).find((e) => e.name === n);
    const targeted = !only || only.split(',').map((s) => s.trim()).includes(c.name);
    for (const [n, want] of [['OTEL_EXPORTER_OTLP_ENDPOINT', 'http://localhost:4317'], ['OTEL_EXPORTER_OTLP_PROTOCOL', 'grpc']]) {
      const got = (a.env ?? []).filter((e) => e.name === n);
      if (had(n)) assert.deepEqual(got, [had(n)], `${c.name}: the user's ${n} kept, once`);
      else if (targeted) assert.deepEqual(got, [{ name: n, value: want }], `${c.name}: ${n} set`);
      else assert.equal(got.length, 0, `${c.name}: not named in otel-containers`);
    }
    for (const e of c.env ?? []) assert.ok(a.env.some((x) => x.name === e.name), `${c.name}: env ${e.name} kept`);
  }
  for (const c of before.spec.initContainers ?? []) {
    assert.deepEqual(after.spec.initContainers.find((x) => x.name === c.name), c, `init container ${c.name} untouched`);
  }
  const ann = after.metadata.annotations;
  for (const [k, v] of Object.entries(before.metadata.annotations ?? {})) assert.equal(ann[k], v, `annotation ${k} kept`);
  for (const [k, v] of Object.entries(before.metadata.labels ?? {})) assert.equal(after.metadata.labels[k], v, `label ${k} kept`);
  const status = JSON.parse(ann['sentinel.llm-devops.io/status']);
  assert.deepEqual(status.containers, [SIDECAR]);
  assert.equal(status.version, '0.1.0');
  assert.equal(after.metadata.labels['sentinel.llm-devops.io/injected'], 'true');
  assert.equal(ann['kubectl.kubernetes.io/default-container'],
    before.metadata.annotations?.['kubectl.kubernetes.io/default-container'] ?? before.spec.containers[0].name);
  if (annotations) annotations(sc, after);
}

async function mutate(port, c, pod, urlPath = c.path ?? '/mutate') {
  const rv = review(pod, c.ns, c.extra);
  const res = await request(port, 'POST', urlPath, JSON.stringify(rv));
  assert.equal(res.status, 200, `HTTP ${res.status}: ${res.body}`);
  assert.match(res.headers['content-type'], /^application\/json/);
  const out = JSON.parse(res.body);
  assert.equal(out.apiVersion, 'admission.k8s.io/v1');
  assert.equal(out.kind, 'AdmissionReview');
  assert.equal(out.response.uid, rv.request.uid, 'uid echoed');
  assert.equal(out.response.allowed, true, 'always allowed');
  return out.response;
}

function applyPatch(pod, resp) {
  assert.equal(resp.patchType, 'JSONPatch');
  const patch = JSON.parse(Buffer.from(resp.patch, 'base64').toString('utf8'));
  assert.ok(Array.isArray(patch) && patch.length > 0);
  // validateOperation = true: fast-json-patch refuses operations whose parents do not exist.
  return jsonpatch.applyPatch(jsonpatch.deepClone(pod), patch, true, false).newDocument;
}

const server = await startServer();
const port = server.port;
let injectedCount = 0;
const skipped = {};
for (const c of cases) {
  let resp;
  try {
    resp = await mutate(port, c, c.pod);
  } catch (e) {
    check(c.name, () => { throw e; });
    continue;
  }
  check(c.name, () => {
    if (!c.inject) {
      assert.equal(resp.patch, undefined, 'no patch');
      assert.equal(resp.patchType, undefined);
      if (c.reason !== 'not_pod_create') skipped[c.reason] = (skipped[c.reason] ?? 0) + 1;
      return;
    }
    injectedCount++;
    const after = applyPatch(c.pod, resp);
    checkInjected(c.pod, after, true, (sc) => {
      if (c.pod === pods.overrides) {
        assert.equal(sc.image, 'registry.example.com/sidecar:test');
        assert.equal(sc.resources.requests.memory, '64Mi');
        assert.equal(sc.resources.limits.cpu, '500m', 'bad cpu-limit ignored');
        assert.ok(sc.env.some((e) => e.name === 'SENTINEL_LOCAL_THRESHOLDS_LATENCY_MS_UPPER_CRITICAL' && e.value === '1500'));
        assert.equal(sc.env.find((e) => e.name === 'SENTINEL_AGGREGATOR').value, 'sentinel-aggregator.sentinel-system.svc:9090');
      }
    });
    assert.equal((resp.warnings ?? []).length, c.warnings ?? 0, `warnings: ${JSON.stringify(resp.warnings)}`);
    c.after = after;
  });
  // A second pass over the injected pod (reinvocationPolicy: IfNeeded) changes nothing.
  if (c.after) {
    const again = await mutate(port, c, c.after);
    check(`${c.name}: second pass`, () => assert.equal(again.patch, undefined, 'no patch the second time'));
    skipped.already_injected = (skipped.already_injected ?? 0) + 1;
  }
}

// Bodies the webhook cannot answer as a review, and requests it refuses.
const bad = [
  ['garbage body', 'POST', '/mutate', 'not json', {}, 400],
  ['v1beta1 review', 'POST', '/mutate', JSON.stringify({ ...review(pods.simple, 'apps'), apiVersion: 'admission.k8s.io/v1beta1' }), {}, 400],
  ['no uid', 'POST', '/mutate', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), {}, 400],
  ['wrong content type', 'POST', '/mutate', JSON.stringify(review(pods.simple, 'apps')), { 'Content-Type': 'text/plain' }, 415],
  ['GET /mutate', 'GET', '/mutate', undefined, {}, 405],
  ['too large', 'POST', '/mutate', JSON.stringify(review({ ...pods.simple, metadata: { ...pods.simple.metadata, annotations: { big: 'x'.repeat(300 * 1024) } } }, 'apps')), {}, 413],
  ['unknown path', 'GET', '/nope', undefined, {}, 404],
];
for (const [name, method, p, body, headers, want] of bad) {
  const res = await request(port, method, p, body, headers);
  check(name, () => {
    assert.equal(res.status, want, res.body);
    if (p === '/mutate') {
      const st = JSON.parse(res.body);
      assert.equal(st.kind, 'Status');
      assert.equal(st.code, want);
      assert.ok(st.message.length > 0);
    }
    if (want === 405) assert.equal(res.headers.allow, 'POST');
  });
}

const health = await request(port, 'GET', '/healthz');
check('healthz', () => { assert.equal(health.status, 200); assert.equal(health.body, 'ok\n'); });
const metrics = await request(port, 'GET', '/metrics');
check('metrics', () => {
  assert.equal(metrics.status, 200);
  const value = (series) => {
    const line = metrics.body.split('\n').find((l) => l.startsWith(series + ' '));
    assert.ok(line, `no ${series}`);
    return Number(line.split(' ')[1]);
  };
  assert.equal(value('sentinel_injector_injected_total{mode="native"}'), injectedCount);
  for (const [reason, n] of Object.entries(skipped)) assert.equal(value(`sentinel_injector_skipped_total{reason="${reason}"}`), n, reason);
  assert.equal(value('sentinel_injector_skipped_total{reason="not_pod_create"}'), 1);
  assert.equal(value('sentinel_injector_failed_total{reason="parse"}'), 1);
  assert.equal(value('sentinel_injector_failed_total{reason="not_a_review"}'), 1);
  assert.equal(value('sentinel_injector_failed_total{reason="media_type"}'), 1);
  assert.equal(value('sentinel_injector_failed_total{reason="too_large"}'), 1);
  assert.equal(value('sentinel_injector_override_warnings_total'), 2);
  const answered = injectedCount + Object.values(skipped).reduce((a, b) => a + b, 0) + 1;
  assert.equal(value('sentinel_injector_admission_duration_seconds_count'), answered);
  assert.ok(value('sentinel_injector_tls_certificate_expiry_timestamp_seconds') > Date.now() / 1000);
});

// Offline inject over the example manifests: idempotent, and for JSON manifests equal to the
// webhook's patch applied by fast-json-patch to the same pod template.
const dirs = [args.data, args.examples].filter((d) => d && fs.existsSync(d));
const files = dirs.flatMap((d) => fs.readdirSync(d).filter((f) => /\.(ya?ml|json)$/.test(f)).map((f) => path.join(d, f)));
const offlineEnv = { ...process.env, SENTINEL_KUBERNETES_VERSION: '1.29.3' };
const TEMPLATES = { Pod: [], Deployment: ['spec', 'template'], StatefulSet: ['spec', 'template'], DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'], Job: ['spec', 'template'], CronJob: ['spec', 'jobTemplate', 'spec', 'template'] };
for (const f of files) {
  const run = (input, fmt) => spawnSync(injector, ['inject', '-f', '-', ...(fmt ? ['--output-format', fmt] : [])],
    { input, env: offlineEnv, encoding: 'utf8' });
  const src = fs.readFileSync(f, 'utf8');
  const once = run(src);
  const twice = run(once.stdout ?? '');
  const asJson = run(src, 'json');
  check(`inject ${path.basename(f)}`, () => {
    assert.equal(once.status, 0, once.stderr);
    assert.equal(twice.status, 0, twice.stderr);
    assert.equal(twice.stdout, once.stdout, 'inject twice == inject once');
    assert.equal(asJson.status, 0, asJson.stderr);
    const docs = asJson.stdout.trim() === '' ? [] : JSON.parse(`[${asJson.stdout.replace(/}\n{/g, '},{')}]`);
    assert.ok(docs.length > 0);
    for (const d of docs) {
      const p = TEMPLATES[d.kind];
      if (!p) continue;
      const t = p.reduce((o, k) => o?.[k], d);
      const n = allContainers(t).filter((c) => c.name === SIDECAR).length;
      assert.ok(n <= 1, `${d.kind} ${d.metadata?.name}: at most one sidecar`);
    }
  });
  if (f.endsWith('.json')) {
    const doc = JSON.parse(src);
    const p = TEMPLATES[doc.kind];
    if (!p) continue;
    const tmpl = p.reduce((o, k) => o?.[k], doc);
    const resp = await mutate(port, { ns: doc.metadata?.namespace ?? 'default', path: '/mutate/namespace' }, tmpl);
    check(`inject ${path.basename(f)} == webhook + fast-json-patch`, () => {
      const viaWebhook = applyPatch(tmpl, resp);
      const offline = JSON.parse(once.stdout);
      assert.deepEqual(p.reduce((o, k) => o?.[k], offline), viaWebhook);
      checkInjected(tmpl, viaWebhook, true);
    });
  }
}
check('some manifests were read', () => assert.ok(files.length >= 3, files.join(',')));

// SIGTERM: a clean exit.
const exited = new Promise((resolve) => server.child.on('exit', (code, sig) => resolve({ code, sig })));
server.child.kill('SIGTERM');
const { code } = await exited;
check('SIGTERM exits 0', () => assert.equal(code, 0, server.logs()));

fs.rmSync(work, { recursive: true, force: true });
console.log(`${checks - failures}/${checks} checks passed`);
process.exit(failures === 0 ? 0 : 1);
