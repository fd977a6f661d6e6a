// Checks deploy/: the Kubernetes manifests (base, HA overlay, examples), the Helm chart, the
// Grafana dashboard and the Dockerfiles. Every YAML file is parsed strictly by an independent
// YAML 1.2 parser; then the objects' kinds, names and the fields that make them work together
// (selectors, ports, Secrets, webhook settings) are checked.
//   node check_manifests.mjs --root REPO [--kubectl PATH]
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, basename } from 'node:path';
import { execFileSync } from 'node:child_process';
import { parse } from 'yaml';
import {
    check, finish, parseDocs, loadDocs, yamlFiles, indexObjects, selects, podSpec, podTemplate,
    documentedMetrics, metricProblems,
} from './lib.mjs';

const args = process.argv.slice(2);
const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
};
const root = opt('--root');
const kubectl = opt('--kubectl');
if (!root) {
    console.error('usage: check_manifests.mjs --root REPO [--kubectl PATH]');
    process.exit(2);
}
const deploy = join(root, 'deploy');
const NS = 'sentinel-system';
const SYSTEM_NS = ['kube-system', 'kube-public', 'kube-node-lease'];
const CLUSTER_KINDS = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration']);

const get = (idx, kind, name, ns = NS) => idx.get(`${kind}/${CLUSTER_KINDS.has(kind) ? '' : ns}/${name}`);
const containerOf = (w, name) => (podSpec(w)?.containers ?? []).find((c) => c.name === name);
const envOf = (c) => Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]));

// ---------------------------------------------------------------------------------------------
// Properties every workload of LLM-Sentinel keeps: non-root, no privilege escalation, read-only
// root, probes, resources, a ServiceAccount that exists, Services/PDBs/NetworkPolicies that
// select its pods, and target ports that exist.
function checkWiring(idx, where) {
    const objs = [...idx.values()];
    const workloads = objs.filter((o) => ['Deployment', 'StatefulSet'].includes(o.kind));
    for (const w of workloads) {
        const id = `${where}: ${w.kind} ${w.metadata.name}`;
        const tpl = podTemplate(w);
        const spec = podSpec(w);
        check(selects(w.spec.selector?.matchLabels, tpl?.metadata?.labels), `${id}: selector does not match its pod labels`);
        check(spec.securityContext?.runAsNonRoot === true, `${id}: runAsNonRoot`);
        check(spec.securityContext?.seccompProfile?.type === 'RuntimeDefault', `${id}: seccompProfile RuntimeDefault`);
        check(tpl.metadata?.annotations?.['sentinel.llm-devops.io/inject'] === 'false',
            `${id}: LLM-Sentinel's own pods must opt out of injection`);
        const sa = spec.serviceAccountName;
        check(sa && get(idx, 'ServiceAccount', sa, w.metadata.namespace), `${id}: ServiceAccount ${sa} missing`);
        for (const c of spec.containers) {
            check(c.securityContext?.allowPrivilegeEscalation === false, `${id}/${c.name}: allowPrivilegeEscalation false`);
            check(c.securityContext?.readOnlyRootFilesystem === true, `${id}/${c.name}: readOnlyRootFilesystem`);
            check(JSON.stringify(c.securityContext?.capabilities?.drop) === '["ALL"]', `${id}/${c.name}: capabilities drop ALL`);
            check(c.readinessProbe && c.livenessProbe, `${id}/${c.name}: readiness and liveness probes`);
            check(c.resources?.requests?.memory && c.resources?.limits?.memory, `${id}/${c.name}: memory request and limit`);
            const portNames = new Set((c.ports ?? []).map((p) => p.name));
            for (const probe of [c.readinessProbe, c.livenessProbe]) {
                const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
                check(typeof port === 'number' || portNames.has(port), `${id}/${c.name}: probe port ${port} not declared`);
            }
            const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
            for (const vt of w.spec.volumeClaimTemplates ?? []) volumes.add(vt.metadata.name);
            for (const m of c.volumeMounts ?? []) check(volumes.has(m.name), `${id}/${c.name}: mount ${m.name} has no volume`);
        }
        for (const v of spec.volumes ?? []) {
            if (v.configMap) check(get(idx, 'ConfigMap', v.configMap.name, w.metadata.namespace), `${id}: ConfigMap ${v.configMap.name} missing`);
            if (v.persistentVolumeClaim) {
                check(get(idx, 'PersistentVolumeClaim', v.persistentVolumeClaim.claimName, w.metadata.namespace),
                    `${id}: PVC ${v.persistentVolumeClaim.claimName} missing`);
            }
        }
    }
    for (const s of objs.filter((o) => o.kind === 'Service')) {
        const id = `${where}: Service ${s.metadata.name}`;
        const backends = workloads.filter((w) => w.metadata.namespace === s.metadata.namespace &&
            selects(s.spec.selector, podTemplate(w).metadata.labels));
        check(backends.length === 1, `${id}: selects ${backends.length} workloads (want 1)`);
        for (const p of s.spec.ports) {
            check(typeof p.name === 'string' && p.name.length > 0, `${id}: port ${p.port} unnamed`);
            if (backends.length !== 1) continue;
            const ports = podSpec(backends[0]).containers.flatMap((c) => c.ports ?? []);
            check(ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort),
                `${id}: targetPort ${p.targetPort} not a container port`);
        }
    }
    for (const p of objs.filter((o) => o.kind === 'PodDisruptionBudget')) {
        const n = workloads.filter((w) => selects(p.spec.selector.matchLabels, podTemplate(w).metadata.labels)).length;
        check(n === 1, `${where}: PDB ${p.metadata.name} selects ${n} workloads`);
        check((p.spec.minAvailable === undefined) !== (p.spec.maxUnavailable === undefined),
            `${where}: PDB ${p.metadata.name}: exactly one of minAvailable/maxUnavailable`);
    }
    for (const np of objs.filter((o) => o.kind === 'NetworkPolicy')) {
        const n = workloads.filter((w) => selects(np.spec.podSelector.matchLabels, podTemplate(w).metadata.labels)).length;
        check(n === 1, `${where}: NetworkPolicy ${np.metadata.name} selects ${n} workloads`);
    }
    for (const b of objs.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')) {
        check(get(idx, b.roleRef.kind, b.roleRef.name, b.metadata.namespace), `${where}: ${b.metadata.name}: role ${b.roleRef.name} missing`);
        for (const s of b.subjects) check(get(idx, 'ServiceAccount', s.name, s.namespace), `${where}: ${b.metadata.name}: subject ${s.name} missing`);
    }
    for (const sm of objs.filter((o) => o.kind === 'ServiceMonitor')) {
        const svcs = objs.filter((o) => o.kind === 'Service' && selects(sm.spec.selector.matchLabels, o.metadata.labels));
        check(svcs.length === 1, `${where}: ServiceMonitor ${sm.metadata.name} selects ${svcs.length} Services`);
        for (const ep of sm.spec.endpoints) {
            check(svcs.length === 1 && svcs[0].spec.ports.some((p) => p.name === ep.port),
                `${where}: ServiceMonitor ${sm.metadata.name}: port ${ep.port} not on the Service`);
        }
        check(sm.spec.jobLabel === 'app.kubernetes.io/name' && svcs.length === 1 &&
            /^sentinel-(aggregator|injector)$/.test(svcs[0].metadata.labels['app.kubernetes.io/name']),
            `${where}: ServiceMonitor ${sm.metadata.name}: job label must be sentinel-aggregator/sentinel-injector (alert rules select on it)`);
    }
}

// The webhook's settings the task and the contract fix, in any rendering.
function checkWebhook(mwc, where, injectorSvc, namespace) {
    check(mwc.webhooks?.length === 2, `${where}: two webhooks (namespace opt-in, pod opt-in)`);
    let nsWebhook = false;
    let podWebhook = false;
    for (const w of mwc.webhooks ?? []) {
        const id = `${where}: webhook ${w.name}`;
        check(/^[a-z0-9-]+(\.[a-z0-9-]+){2,}$/.test(w.name), `${id}: fully qualified name`);
        check(JSON.stringify(w.admissionReviewVersions) === '["v1"]', `${id}: admissionReviewVersions ["v1"]`);
        check(w.sideEffects === 'None', `${id}: sideEffects None`);
        check(w.reinvocationPolicy === 'IfNeeded', `${id}: reinvocationPolicy IfNeeded`);
        if (w.failurePolicy !== 'TEMPLATE') check(w.failurePolicy === 'Ignore', `${id}: failurePolicy Ignore`);
        if (w.timeoutSeconds !== 'TEMPLATE') check(w.timeoutSeconds >= 1 && w.timeoutSeconds <= 10, `${id}: timeoutSeconds 1..10`);
        const svc = w.clientConfig?.service;
        if (injectorSvc) {
            check(svc?.name === injectorSvc.metadata.name && svc?.namespace === namespace, `${id}: service ${svc?.name}`);
            check(injectorSvc.spec.ports.some((p) => p.port === svc?.port), `${id}: port ${svc?.port} not on the Service`);
        }
        const rule = w.rules?.[0];
        check(w.rules?.length === 1 && JSON.stringify(rule.operations) === '["CREATE"]' &&
            JSON.stringify(rule.resources) === '["pods"]' && JSON.stringify(rule.apiGroups) === '[""]',
            `${id}: rule: CREATE pods`);
        const nsExpr = w.namespaceSelector?.matchExpressions ?? [];
        const excluded = nsExpr.find((e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn');
        if (excluded && excluded.values !== 'TEMPLATE') {
            for (const n of SYSTEM_NS) check(excluded.values.includes(n), `${id}: excludes namespace ${n}`);
        } else {
            check(excluded !== undefined, `${id}: excludes system namespaces`);
        }
        const inject = nsExpr.find((e) => e.key === 'sentinel.llm-devops.io/inject');
        const optOut = w.objectSelector?.matchExpressions?.find((e) => e.key === 'sentinel.llm-devops.io/inject');
        const podLabel = w.objectSelector?.matchLabels?.['sentinel.llm-devops.io/inject'] === 'true';
        check(podLabel || (optOut?.operator === 'NotIn' && JSON.stringify(optOut.values) === '["false"]'),
            `${id}: pods labelled inject=false are not sent`);
        if (inject?.operator === 'In' && JSON.stringify(inject.values) === '["enabled"]') {
            nsWebhook = true;
            check(svc?.path === '/mutate/namespace', `${id}: enabled namespaces go to /mutate/namespace (inject unless opted out)`);
            check(!podLabel, `${id}: every pod of an enabled namespace is sent`);
        } else {
            podWebhook = true;
            check(svc?.path === '/mutate', `${id}: other namespaces go to /mutate (pods opt in themselves)`);
            check(inject?.operator === 'NotIn' && inject.values.includes('enabled') && inject.values.includes('disabled'),
                `${id}: skips enabled namespaces (no double call) and disabled ones`);
        }
    }
    check(nsWebhook, `${where}: a webhook selects namespaces labelled sentinel.llm-devops.io/inject=enabled`);
    check(podWebhook, `${where}: a webhook sends the pods of other namespaces to /mutate`);
}

// ---------------------------------------------------------------------------------------------
// deploy/kubernetes/base: the plain manifests.
function checkBase() {
    const dir = join(deploy, 'kubernetes', 'base');
    const kust = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'));
    const files = yamlFiles(dir).map((f) => basename(f)).filter((f) => f !== 'kustomization.yaml');
    check(JSON.stringify([...kust.resources].sort()) === JSON.stringify(files),
        `base/kustomization.yaml lists ${kust.resources} but the folder holds ${files}`);
    const objs = [];
    for (const f of files) {
        for (const o of loadDocs(join(dir, f))) {
            check(o.apiVersion && o.kind && o.metadata?.name, `base/${f}: object without apiVersion/kind/name`);
            check(CLUSTER_KINDS.has(o.kind) ? !o.metadata.namespace : o.metadata.namespace === NS,
                `base/${f}: ${o.kind} ${o.metadata.name}: namespace`);
            check(o.metadata.labels?.['app.kubernetes.io/part-of'] === 'llm-sentinel', `base/${f}: ${o.kind} ${o.metadata.name}: part-of label`);
            objs.push(o);
        }
    }
    const idx = indexObjects(objs);
    const want = [
        ['Namespace', NS], ['ServiceAccount', 'sentinel-aggregator'], ['ServiceAccount', 'sentinel-injector'],
        ['ConfigMap', 'sentinel-aggregator'], ['PersistentVolumeClaim', 'sentinel-aggregator-data'],
        ['Deployment', 'sentinel-aggregator'], ['Service', 'sentinel-aggregator'], ['PodDisruptionBudget', 'sentinel-aggregator'],
        ['Deployment', 'sentinel-injector'], ['Service', 'sentinel-injector'], ['PodDisruptionBudget', 'sentinel-injector'],
        ['MutatingWebhookConfiguration', 'sentinel-injector'], ['Issuer', 'sentinel-selfsigned'], ['Issuer', 'sentinel-ca'],
        ['Certificate', 'sentinel-injector-ca'], ['Certificate', 'sentinel-injector'],
        ['NetworkPolicy', 'sentinel-aggregator'], ['NetworkPolicy', 'sentinel-injector'],
        ['ServiceMonitor', 'sentinel-aggregator'], ['ServiceMonitor', 'sentinel-injector'], ['PodMonitor', 'sentinel-sidecar'],
    ];
    for (const [k, n] of want) check(get(idx, k, n), `base: ${k} ${n} missing`);
    check(idx.size === want.length, `base: ${idx.size} objects, expected exactly ${want.length}`);
    checkWiring(idx, 'base');

    const ns = get(idx, 'Namespace', NS);
    check(ns?.metadata.labels['pod-security.kubernetes.io/enforce'] === 'restricted', 'base: namespace enforces restricted');
    check(ns?.metadata.labels['sentinel.llm-devops.io/inject'] === 'disabled', 'base: own namespace never injected');

    // Aggregator: ports of the contract, the ConfigMap mounted where --config reads it.
    const agg = get(idx, 'Deployment', 'sentinel-aggregator');
    const ac = containerOf(agg, 'sentinel-aggregator');
    const ports = Object.fromEntries((ac?.ports ?? []).map((p) => [p.name, p.containerPort]));
    check(ports.ingest === 9090 && ports.http === 8080, 'base: aggregator ports 9090 ingest, 8080 http');
    check(agg?.spec.replicas === 1 && agg?.spec.strategy?.type === 'Recreate', 'base: embedded aggregator: 1 replica, Recreate');
    const cfgArg = ac?.args?.[ac.args.indexOf('--config') + 1];
    const cfgMount = ac?.volumeMounts?.find((m) => m.name === 'config')?.mountPath;
    const cm = get(idx, 'ConfigMap', 'sentinel-aggregator');
    check(cfgArg && cfgMount && cfgArg === `${cfgMount}/aggregator.yaml` && cm?.data?.['aggregator.yaml'],
        `base: --config ${cfgArg} is the ConfigMap's key under ${cfgMount}`);
    const cfg = parseDocs(cm?.data?.['aggregator.yaml'] ?? '', 'base: ConfigMap aggregator.yaml')[0];
    check(cfg?.ingest?.endpoint === '0.0.0.0:9090', 'base: config ingest.endpoint 0.0.0.0:9090');
    const aenv = envOf(ac);
    check(aenv.SENTINEL_INGEST_ENDPOINT === '0.0.0.0:9090' && aenv.SENTINEL_HTTP_ENDPOINT === '0.0.0.0:8080' &&
        aenv.SENTINEL_DATA_DIR === '/var/lib/sentinel', 'base: aggregator env of the contract');
    check(ac?.volumeMounts?.some((m) => m.mountPath === aenv.SENTINEL_DATA_DIR), 'base: data dir is a volume');
    const aggSvc = get(idx, 'Service', 'sentinel-aggregator');
    check(aggSvc?.spec.ports.find((p) => p.port === 9090)?.appProtocol === 'grpc', 'base: ingest port declared gRPC (meshes)');

    // Injector: 2 replicas, env of the contract, the Secret cert-manager writes.
    const inj = get(idx, 'Deployment', 'sentinel-injector');
    const ic = containerOf(inj, 'sentinel-injector');
    const ienv = envOf(ic);
    check(inj?.spec.replicas === 2, 'base: injector has 2 replicas');
    check(JSON.stringify(ic?.args) === '["serve"]', 'base: injector runs serve');
    check(ienv.SENTINEL_INJECTOR_ENDPOINT === '0.0.0.0:8443', 'base: SENTINEL_INJECTOR_ENDPOINT');
    check(podTemplate(inj)?.metadata.labels['sidecar.istio.io/inject'] === 'false', 'base: injector pods stay out of Istio');
    const tlsMount = ic?.volumeMounts?.find((m) => m.name === 'tls')?.mountPath;
    check(ienv.SENTINEL_TLS_CERT === `${tlsMount}/tls.crt` && ienv.SENTINEL_TLS_KEY === `${tlsMount}/tls.key`,
        'base: SENTINEL_TLS_CERT/KEY point into the mounted Secret');
    check(ienv.SENTINEL_SIDECAR_AGGREGATOR === `${get(idx, 'Service', 'sentinel-aggregator')?.metadata.name}.${NS}.svc:9090`,
        'base: sidecars ship to the aggregator Service');
    check(ienv.SENTINEL_SIDECAR_MODE === 'auto' && ienv.SENTINEL_KUBERNETES_VERSION === '',
        'base: sidecar mode auto, regular until the cluster version is set');
    check(podSpec(inj)?.automountServiceAccountToken === false && podSpec(agg)?.automountServiceAccountToken === false,
        'base: no API token in the pods');
    check(ic?.readinessProbe?.httpGet?.scheme === 'HTTPS' && ic?.readinessProbe?.httpGet?.path === '/healthz', 'base: injector probes HTTPS /healthz');
    const secretName = podSpec(inj)?.volumes?.find((v) => v.name === 'tls')?.secret?.secretName;
    const cert = get(idx, 'Certificate', 'sentinel-injector');
    check(cert?.spec.secretName === secretName, `base: Certificate writes the Secret the injector mounts (${secretName})`);
    const injSvc = get(idx, 'Service', 'sentinel-injector');
    check(cert?.spec.dnsNames?.includes(`${injSvc?.metadata.name}.${NS}.svc`), 'base: certificate names the Service');
    check(cert?.spec.issuerRef?.name === 'sentinel-ca' && get(idx, 'Issuer', 'sentinel-ca')?.spec.ca?.secretName ===
        get(idx, 'Certificate', 'sentinel-injector-ca')?.spec.secretName, 'base: CA chain of Issuers');
    const mwc = get(idx, 'MutatingWebhookConfiguration', 'sentinel-injector');
    check(mwc?.metadata.annotations?.['cert-manager.io/inject-ca-from'] === `${NS}/${cert?.metadata.name}`,
        'base: caBundle injected by cert-manager from the injector Certificate');
    checkWebhook(mwc ?? {}, 'base', injSvc, NS);

    // NetworkPolicy: sidecars -> 9090 from every namespace; Prometheus -> 8080; 8443 open.
    const npA = get(idx, 'NetworkPolicy', 'sentinel-aggregator');
    const rule9090 = npA?.spec.ingress.find((r) => r.ports.some((p) => p.port === 9090));
    check(rule9090?.from?.some((f) => f.namespaceSelector && Object.keys(f.namespaceSelector).length === 0),
        'base: 9090 open to pods of every namespace');
    const rule8080 = npA?.spec.ingress.find((r) => r.ports.some((p) => p.port === 8080));
    check(rule8080?.from?.some((f) => f.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'monitoring'),
        'base: 8080 from the monitoring namespace');
    const npI = get(idx, 'NetworkPolicy', 'sentinel-injector');
    check(npI?.spec.ingress.some((r) => !r.from && r.ports.some((p) => p.port === 8443)), 'base: 8443 reachable by the API server');

    // Sidecars: PodMonitor keeps the sentinel-sidecar container's port 8081, job sentinel-sidecar.
    const pm = get(idx, 'PodMonitor', 'sentinel-sidecar');
    const rl = pm?.spec.podMetricsEndpoints?.[0]?.relabelings ?? [];
    check(rl.some((r) => r.action === 'keep' && r.regex === 'sentinel-sidecar') &&
        rl.some((r) => r.action === 'keep' && r.regex === '8081') &&
        rl.some((r) => r.targetLabel === 'job' && r.replacement === 'sentinel-sidecar') &&
        pm?.spec.namespaceSelector?.any === true, 'base: PodMonitor scrapes every sidecar on 8081 as job sentinel-sidecar');
    return idx;
}

// deploy/kubernetes/ha: rendered by kustomize when kubectl is here, else its files parsed.
function checkHa(base) {
    const dir = join(deploy, 'kubernetes', 'ha');
    for (const f of yamlFiles(dir)) loadDocs(f);
    if (!kubectl) {
        console.log('ha: kubectl not found: overlay files parsed, not rendered');
        return;
    }
    const out = execFileSync(kubectl, ['kustomize', dir], { encoding: 'utf8', timeout: 60000 });
    const idx = indexObjects(parseDocs(out, 'kubectl kustomize ha'));
    checkWiring(idx, 'ha');
    check(!get(idx, 'PersistentVolumeClaim', 'sentinel-aggregator-data'), 'ha: no aggregator PVC');
    const agg = get(idx, 'Deployment', 'sentinel-aggregator');
    const env = envOf(containerOf(agg, 'sentinel-aggregator'));
    const redisSvc = get(idx, 'Service', 'sentinel-redis');
    check(redisSvc && env.SENTINEL_REDIS_URL === `redis://${redisSvc.metadata.name}.${NS}.svc:${redisSvc.spec.ports[0].port}/0`,
        `ha: SENTINEL_REDIS_URL ${env.SENTINEL_REDIS_URL} names the Redis Service`);
    check(env.SENTINEL_INGEST_ENDPOINT === '0.0.0.0:9090', 'ha: the base env is kept');
    check(agg?.spec.strategy?.type === 'RollingUpdate' && agg?.spec.replicas >= 2, 'ha: rolling, 2+ replicas');
    check(podSpec(agg)?.volumes?.find((v) => v.name === 'data')?.emptyDir && !podSpec(agg)?.volumes?.find((v) => v.name === 'data')?.persistentVolumeClaim,
        'ha: data volume is an emptyDir');
    const hpa = get(idx, 'HorizontalPodAutoscaler', 'sentinel-aggregator');
    check(hpa?.spec.scaleTargetRef?.kind === 'Deployment' && hpa?.spec.scaleTargetRef?.name === 'sentinel-aggregator' &&
        hpa?.spec.minReplicas >= 2, 'ha: HPA scales the aggregator, at least 2');
    const pdb = get(idx, 'PodDisruptionBudget', 'sentinel-aggregator');
    check(pdb?.spec.minAvailable === 1 && pdb?.spec.maxUnavailable === undefined, 'ha: PDB minAvailable 1');
    check(get(idx, 'StatefulSet', 'sentinel-redis') && get(idx, 'NetworkPolicy', 'sentinel-redis'), 'ha: Redis and its NetworkPolicy');
    const npR = get(idx, 'NetworkPolicy', 'sentinel-redis');
    check(npR?.spec.ingress.every((r) => r.from.every((f) => f.podSelector?.matchLabels?.['app.kubernetes.io/name'] === 'sentinel-aggregator')),
        'ha: only the aggregator reaches Redis');
    check(idx.size === base.size + 5 - 1, `ha: ${idx.size} objects = base + Redis (4) + HPA - PVC`);
}

function checkExamples() {
    const dir = join(deploy, 'kubernetes', 'examples');
    const all = yamlFiles(dir).flatMap((f) => loadDocs(f).map((o) => ({ f: basename(f), o })));
    const by = (kind) => all.filter((x) => x.o.kind === kind).map((x) => x.o);
    const ns = by('Namespace')[0];
    check(ns?.metadata.labels?.['sentinel.llm-devops.io/inject'] === 'enabled', 'examples: namespace labelled inject=enabled');
    for (const w of [...by('Deployment'), ...by('CronJob')]) {
        const t = podTemplate(w);
        check(t?.metadata?.labels?.['sentinel.llm-devops.io/inject'] === 'true' &&
            t?.metadata?.annotations?.['sentinel.llm-devops.io/inject'] === 'true', `examples: ${w.kind} ${w.metadata.name} opts in (label and annotation)`);
        for (const c of podSpec(w).containers) {
            check(!envOf(c).OTEL_EXPORTER_OTLP_ENDPOINT, `examples: ${w.metadata.name}/${c.name} leaves OTLP endpoint to the injector`);
            check(envOf(c).OTEL_SERVICE_NAME, `examples: ${w.metadata.name}/${c.name} names its service`);
        }
    }
    check(by('Deployment').length === 1 && by('CronJob').length === 1, 'examples: an app Deployment and a CronJob');
    const np = by('NetworkPolicy')[0];
    const eg = np?.spec.egress?.find((r) => r.ports.some((p) => p.port === 9090));
    check(eg?.to?.[0]?.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === NS &&
        eg?.to?.[0]?.podSelector?.matchLabels?.['app.kubernetes.io/name'] === 'sentinel-aggregator', 'examples: egress to the aggregator 9090');
    check(np?.spec.ingress?.some((r) => r.ports.some((p) => p.port === 8081)), 'examples: Prometheus -> sidecar 8081');
}

// ---------------------------------------------------------------------------------------------
// The Helm chart, without helm: templates reference only values that exist, every value is used,
// control blocks balance, and every template is YAML once the template lines are removed and
// inline expressions replaced by a placeholder.
function valuePaths(obj, prefix = '') {
    const out = [];
    for (const [k, v] of Object.entries(obj)) {
        const p = prefix ? `${prefix}.${k}` : k;
        if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) out.push(...valuePaths(v, p));
        else out.push(p);
    }
    return out;
}
function hasPath(obj, path) {
    let cur = obj;
    for (const k of path.split('.')) {
        if (!cur || typeof cur !== 'object' || !(k in cur)) return false;
        cur = cur[k];
    }
    return true;
}
export function stripTemplate(text) {
    return text
        .split('\n')
        .filter((l) => !/^\s*\{\{-?[\s\S]*?-?\}\}\s*$/.test(l) || /^\s*[\w./-]+\s*:/.test(l))
        .map((l) => l.replace(/"\{\{[^}]*\}\}([^"]*)"/g, '"TEMPLATE$1"').replace(/\{\{-?[^}]*-?\}\}/g, 'TEMPLATE'))
        .join('\n');
}
function checkChart(baseIdx) {
    const dir = join(deploy, 'helm', 'llm-sentinel');
    const chart = parse(readFileSync(join(dir, 'Chart.yaml'), 'utf8'));
    check(chart.apiVersion === 'v2' && chart.name === 'llm-sentinel' && /^\d+\.\d+\.\d+/.test(chart.version) && chart.appVersion,
        'chart: Chart.yaml apiVersion v2, name, version, appVersion');
    const values = loadDocs(join(dir, 'values.yaml'))[0];
    const tdir = join(dir, 'templates');
    const files = readdirSync(tdir).sort();
    const texts = Object.fromEntries(files.map((f) => [f, readFileSync(join(tdir, f), 'utf8')]));
    const defined = new Set([...texts['_helpers.tpl'].matchAll(/define "([^"]+)"/g)].map((m) => m[1]));
    const used = new Set();
    for (const [f, t] of Object.entries(texts)) {
        for (const m of t.matchAll(/\.Values\.([A-Za-z0-9_.]+)/g)) {
            const p = m[1].replace(/\.$/, '');
            used.add(p);
            check(hasPath(values, p), `chart: ${f}: .Values.${p} is not in values.yaml`);
        }
        for (const m of t.matchAll(/include "([^"]+)"/g)) check(defined.has(m[1]), `chart: ${f}: include "${m[1]}" not defined`);
        const opens = (t.match(/\{\{-?\s*(if|with|range|define)\b/g) ?? []).length;
        const ends = (t.match(/\{\{-?\s*end\s*-?\}\}/g) ?? []).length;
        check(opens === ends, `chart: ${f}: ${opens} blocks opened, ${ends} closed`);
    }
    for (const p of valuePaths(values)) {
        check([...used].some((u) => p === u || p.startsWith(`${u}.`)), `chart: value ${p} is used by no template`);
    }
    const kinds = {};
    for (const f of files.filter((x) => x.endsWith('.yaml'))) {
        const objs = parseDocs(stripTemplate(texts[f]), `chart: ${f} (template lines removed)`);
        for (const o of objs) {
            check(o.apiVersion && o.kind && o.metadata?.name, `chart: ${f}: object without apiVersion/kind/name`);
            kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
            if (o.kind === 'MutatingWebhookConfiguration') checkWebhook(o, `chart: ${f}`, null, null);
            if (o.kind === 'Deployment' && o.metadata.labels?.['app.kubernetes.io/name'] === 'sentinel-injector') {
                const names = (c) => Object.keys(envOf(c)).sort().join(',');
                const base = containerOf(get(baseIdx, 'Deployment', 'sentinel-injector'), 'sentinel-injector');
                check(names(containerOf(o, 'sentinel-injector')) === names(base), 'chart: injector env names as in the plain manifests');
            }
            if (o.kind === 'Deployment' && o.metadata.labels?.['app.kubernetes.io/name'] === 'sentinel-aggregator') {
                const ports = containerOf(o, 'sentinel-aggregator')?.ports?.map((p) => p.containerPort).sort();
                check(JSON.stringify(ports) === '[8080,9090]', 'chart: aggregator ports 8080, 9090');
            }
        }
    }
    const want = {
        ConfigMap: 1, PersistentVolumeClaim: 1, Deployment: 2, Service: 3, PodDisruptionBudget: 2,
        HorizontalPodAutoscaler: 1, StatefulSet: 1, ServiceAccount: 3,
        MutatingWebhookConfiguration: 1, Secret: 1, Certificate: 2, Issuer: 2, NetworkPolicy: 3,
        ServiceMonitor: 2, PodMonitor: 1,
    };
    check(JSON.stringify(Object.entries(kinds).sort()) === JSON.stringify(Object.entries(want).sort()),
        `chart: objects by kind ${JSON.stringify(kinds)}`);
    const wh = texts['webhook.yaml'];
    check(/genCA /.test(wh) && /genSignedCert /.test(wh) && /lookup "v1" "Secret"/.test(wh), 'chart: generated certificates, kept across upgrades');
    check(/cert-manager.io\/inject-ca-from: \{\{ \.Release\.Namespace \}\}\/\{\{ \$name \}\}/.test(wh), 'chart: cert-manager injects the caBundle');
    check(/caBundle: \{\{ \$caBundle \}\}/.test(wh), 'chart: generated CA written to caBundle');
    check(values.injector.failurePolicy === 'Ignore' && values.injector.nativeSidecar === 'auto' && values.injector.replicas === 2 &&
        values.redis.enabled === false && values.aggregator.replicas === 1, 'chart: defaults (fail open, auto, 2 injectors, embedded)');
    check(/fail "aggregator: several replicas/.test(texts['aggregator.yaml']), 'chart: refuses several aggregators without Redis');
    // Values comments: every value is documented by a comment above it or above its section.
    const vlines = readFileSync(join(dir, 'values.yaml'), 'utf8').split('\n');
    const undocumented = [];
    for (let i = 0; i < vlines.length; i++) {
        const m = vlines[i].match(/^(\s*)([A-Za-z]\w*):/);
        if (!m || m[1].length > 0) continue; // top-level sections must have a comment
        if (!/^\s*#/.test(vlines[i - 1] ?? '') && !/^\s*#/.test(vlines[i - 2] ?? '')) undocumented.push(m[2]);
    }
    check(undocumented.length === 0, `chart: top-level values without a comment: ${undocumented}`);
}

// ---------------------------------------------------------------------------------------------
function checkDashboard() {
    const file = join(deploy, 'grafana', 'llm-sentinel-health.json');
    let dash;
    try {
        dash = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
        check(false, `grafana: ${e.message}`);
        return;
    }
    check(dash.uid && dash.title && Array.isArray(dash.panels), 'grafana: uid, title, panels');
    const ds = dash.templating?.list?.find((v) => v.type === 'datasource' && v.query === 'prometheus');
    check(ds, 'grafana: a Prometheus datasource variable');
    const documented = documentedMetrics(root);
    check(documented.size >= 20, `grafana: ${documented.size} documented metric names found`);
    const external = new Set(['up', 'apiserver_admission_webhook_request_total', 'apiserver_admission_webhook_fail_open_count']);
    const seen = new Set();
    const ids = new Set();
    let targets = 0;
    for (const p of dash.panels) {
        check(!ids.has(p.id), `grafana: duplicate panel id ${p.id}`);
        ids.add(p.id);
        if (p.type === 'row') continue;
        check(p.datasource?.uid === `\${${ds?.name}}`, `grafana: panel ${p.title} uses the datasource variable`);
        for (const t of p.targets ?? []) {
            targets++;
            const { names, problems } = metricProblems(t.expr, documented, external);
            for (const pr of problems) check(false, `grafana: ${p.title}: ${pr}`);
            for (const n of names) seen.add(n);
        }
    }
    check(targets >= 20, `grafana: ${targets} queries`);
    for (const n of ['sentinel_sidecar_otlp_requests_total', 'sentinel_sidecar_refused_total', 'sentinel_sidecar_spool_bytes',
        'sentinel_sidecar_batches_shipped_total', 'sentinel_sidecar_llm_events_total', 'sentinel_aggregator_events_ingested_total',
        'sentinel_anomalies_detected_total', 'sentinel_detection_duration_seconds_bucket', 'sentinel_alerts_delivered_total']) {
        check(seen.has(n), `grafana: no panel shows ${n}`);
    }
    // The checker itself: an undocumented name, and a counter passed off as a histogram, are caught.
    check(metricProblems('rate(sentinel_sidecar_made_up_total[5m])', documented, external).problems.length === 1,
        'grafana: the name check catches an undocumented metric');
    check(metricProblems('rate(sentinel_sidecar_llm_events_total_bucket[5m])', documented, external).problems.length === 1,
        'grafana: the name check catches _bucket of a non-histogram');
}

function checkDockerfiles() {
    const dir = join(deploy, 'docker');
    const want = {
        sidecar: { ports: [4317, 4318, 8081], dir: 'sidecar' },
        aggregator: { ports: [8080, 9090], dir: 'aggregator' },
        injector: { ports: [8443], dir: 'injector' },
    };
    for (const [prog, w] of Object.entries(want)) {
        const file = join(dir, `${prog}.Dockerfile`);
        check(existsSync(file), `docker: ${prog}.Dockerfile missing`);
        if (!existsSync(file)) continue;
        const lines = readFileSync(file, 'utf8').replace(/\\\n/g, ' ').split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
        const froms = lines.filter((l) => /^FROM /i.test(l));
        check(froms.length === 2 && /^FROM debian:12 AS build$/.test(froms[0]) && /^FROM debian:12-slim( AS \w+)?$/.test(froms[1]),
            `docker: ${prog}: two stages, debian:12 AS build then debian:12-slim`);
        const runtimeStart = lines.indexOf(froms[1]);
        const build = lines.slice(0, runtimeStart).join('\n');
        const runtime = lines.slice(runtimeStart);
        check(/install-deps\.sh --build-only/.test(build), `docker: ${prog}: builder uses install-deps.sh --build-only`);
        check(new RegExp(`--target sentinel-${prog}\\b`).test(build) && build.includes(`/build/${w.dir}/sentinel-${prog}`),
            `docker: ${prog}: builds and copies sentinel-${prog}`);
        check(/-DSENTINEL_BUILD_TESTS=OFF/.test(build), `docker: ${prog}: tests not built in the image`);
        const apt = runtime.find((l) => /apt-get install/.test(l)) ?? '';
        check(apt && !/-dev\b/.test(apt) && /--no-install-recommends/.test(apt) && /rm -rf \/var\/lib\/apt\/lists/.test(apt),
            `docker: ${prog}: runtime installs no -dev package, no recommends, cleans apt lists`);
        const users = runtime.filter((l) => /^USER /.test(l));
        check(users.length === 1 && /^USER 65532(:65532)?$/.test(users[0]), `docker: ${prog}: USER 65532 (numeric, non-root)`);
        check(runtime.indexOf(users[0]) > runtime.findIndex((l) => /apt-get install/.test(l)), `docker: ${prog}: USER after the installs`);
        const expose = runtime.filter((l) => /^EXPOSE /.test(l)).flatMap((l) => l.split(/\s+/).slice(1).map(Number)).sort();
        check(JSON.stringify(expose) === JSON.stringify(w.ports), `docker: ${prog}: EXPOSE ${expose} (want ${w.ports})`);
        const ep = runtime.find((l) => /^ENTRYPOINT /.test(l));
        let epArgs;
        try {
            epArgs = JSON.parse(ep.replace(/^ENTRYPOINT /, ''));
        } catch {
            epArgs = null;
        }
        check(Array.isArray(epArgs) && epArgs[0] === `/usr/local/bin/sentinel-${prog}`, `docker: ${prog}: exec-form ENTRYPOINT (no shell)`);
        check(runtime.some((l) => new RegExp(`^COPY --from=build .*sentinel-${prog}`).test(l)), `docker: ${prog}: binary copied from the builder`);
        check(!lines.some((l) => /^ADD /.test(l)), `docker: ${prog}: no ADD`);
    }
    const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['.git', 'build', 'build-*', '**/node_modules']) check(ignore.includes(p), `docker: .dockerignore excludes ${p}`);
}

// ---------------------------------------------------------------------------------------------
const baseIdx = checkBase();
checkHa(baseIdx);
checkExamples();
checkChart(baseIdx);
checkDashboard();
checkDockerfiles();
finish('deploy manifests');
