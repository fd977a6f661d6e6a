// The configurations deploy/ ships are accepted by the real programs: each one is started with it
// (listen addresses moved to 127.0.0.1 port 0, the spool to a temp dir), must log that it
// listens, and must exit 0 on SIGTERM. The injector runs `serve` with the environment of the
// manifests' Deployment (and a certificate made by openssl), so the names it sets are the
// injector's. Controls: a misspelt key, or a bad value, must be refused with exit status 2
// naming the setting.
//   node configs_test.mjs --root REPO --aggregator BIN --sidecar BIN [--injector BIN --openssl BIN]
import { readFileSync, writeFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawn, execFileSync } from 'node:child_process';
import { parse, stringify } from 'yaml';
import { check, finish, loadDocs } from './lib.mjs';

const args = process.argv.slice(2);
const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
};
const root = opt('--root');
const aggregatorBin = opt('--aggregator');
const sidecarBin = opt('--sidecar');
const injectorBin = opt('--injector');
const openssl = opt('--openssl');
if (!root || !aggregatorBin || !sidecarBin) {
    console.error('usage: configs_test.mjs --root REPO --aggregator BIN --sidecar BIN');
    process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'sentinel-configs-'));

/**
 * Starts a program; resolves {code, stderr} when it exits. When `ready` is given, sends SIGTERM
 * once stderr matches it (or kills it after 15 s, which fails the check).
 */
function runProgram(bin, argv, env, ready) {
    return new Promise((resolve) => {
        const child = spawn(bin, argv, { env: { ...cleanEnv(), ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        let signalled = false;
        const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
        child.stderr.on('data', (d) => {
            stderr += d;
            if (ready && !signalled && ready.test(stderr)) {
                signalled = true;
                child.kill('SIGTERM');
            }
        });
        child.on('exit', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stderr, signalled });
        });
    });
}

/** The environment without SENTINEL_* variables of the caller (they would override the files). */
function cleanEnv() {
    return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SENTINEL_')));
}

const AGG_OVERRIDES = ['--set', 'ingest.endpoint=127.0.0.1:0', '--set', 'http.endpoint=127.0.0.1:0',
    '--set', `state.data_dir=${join(work, 'aggregator-state')}`, '--log-format', 'text'];

async function aggregatorAccepts(label, configText, env = {}) {
    const file = join(work, `${label.replace(/\W+/g, '_')}.yaml`);
    writeFileSync(file, configText);
    const r = await runProgram(aggregatorBin, ['--config', file, ...AGG_OVERRIDES], env, /ingest listening/);
    check(r.signalled && r.code === 0, `${label}: aggregator started and stopped cleanly (exit ${r.code}, signal ${r.signal})\n${r.stderr}`);
}

async function aggregatorRefuses(label, configText, setting) {
    const file = join(work, `${label.replace(/\W+/g, '_')}.yaml`);
    writeFileSync(file, configText);
    const r = await runProgram(aggregatorBin, ['--config', file, ...AGG_OVERRIDES], {}, null);
    check(r.code === 2 && r.stderr.includes(setting), `${label}: refused with exit 2 naming ${setting} (exit ${r.code})\n${r.stderr}`);
}

async function main() {
    // The aggregator: systemd sample, the manifests' ConfigMap (with the Deployment's env), the
    // chart's default aggregator.config.
    const systemdCfg = readFileSync(join(root, 'deploy/systemd/aggregator.yaml'), 'utf8');
    await aggregatorAccepts('deploy/systemd/aggregator.yaml', systemdCfg);

    const base = join(root, 'deploy/kubernetes/base');
    const cm = loadDocs(join(base, 'aggregator-config.yaml')).find((o) => o.kind === 'ConfigMap');
    const dep = loadDocs(join(base, 'aggregator.yaml')).find((o) => o.kind === 'Deployment');
    const env = Object.fromEntries(dep.spec.template.spec.containers[0].env.map((e) => [e.name, e.value]));
    env.SENTINEL_DATA_DIR = join(work, 'data'); // not read yet by the aggregator; a writable place when it is
    await aggregatorAccepts('base ConfigMap sentinel-aggregator + Deployment env', cm.data['aggregator.yaml'], env);

    const values = parse(readFileSync(join(root, 'deploy/helm/llm-sentinel/values.yaml'), 'utf8'));
    const chartCfg = stringify(values.aggregator.config);
    await aggregatorAccepts('chart values aggregator.config', chartCfg);

    // Controls: a misspelt key and a bad value are refused, naming the setting.
    await aggregatorRefuses('control: misspelt key', systemdCfg.replace('  max_calls:', '  max_call:'), 'ingest.max_call');
    await aggregatorRefuses('control: bad value', chartCfg.replace(/apply_timeout: .*/, 'apply_timeout: soon'), 'ingest.apply_timeout');

    // The sidecar on a VM: deploy/systemd/sidecar.yaml.
    const sidecarCfg = readFileSync(join(root, 'deploy/systemd/sidecar.yaml'), 'utf8');
    const sfile = join(work, 'sidecar.yaml');
    writeFileSync(sfile, sidecarCfg);
    const sidecarArgs = ['--config', sfile, '--spool-dir', join(work, 'spool'), '--log-format', 'text',
        '--set', 'otlp.grpc_endpoint=127.0.0.1:0', '--set', 'otlp.http_endpoint=127.0.0.1:0',
        '--set', 'admin.endpoint=127.0.0.1:0', '--set', 'aggregator.endpoint=127.0.0.1:9'];
    let r = await runProgram(sidecarBin, sidecarArgs, {}, /sentinel-sidecar started/);
    check(r.signalled && r.code === 0, `deploy/systemd/sidecar.yaml: sidecar started and stopped cleanly (exit ${r.code})\n${r.stderr}`);
    const parsed = parse(sidecarCfg);
    check(parsed.otlp.grpc_endpoint === '127.0.0.1:4317' && parsed.otlp.http_endpoint === '127.0.0.1:4318',
        'deploy/systemd/sidecar.yaml: OTLP only on localhost');
    writeFileSync(sfile, sidecarCfg.replace(/max_bytes: .*/, 'max_bytes: 1KiB'));
    r = await runProgram(sidecarBin, sidecarArgs, {}, null);
    check(r.code === 2 && r.stderr.includes('spool.max_bytes'), `control: sidecar refuses spool.max_bytes 1KiB with exit 2 (exit ${r.code})`);

    if (injectorBin && openssl && existsSync(injectorBin)) await injector();
    else console.log('injector: not built or no openssl, skipped');
}

// sentinel-injector serve with the base Deployment's env (TLS files from openssl); then the
// same with a bad sidecar mode, which must be refused naming sidecar.mode.
async function injector() {
    const key = join(work, 'tls.key');
    const crt = join(work, 'tls.crt');
    execFileSync(openssl, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', key, '-out', crt, '-days', '1', '-subj', '/CN=sentinel-injector.sentinel-system.svc',
        '-addext', 'subjectAltName=DNS:sentinel-injector.sentinel-system.svc'], { stdio: 'ignore' });
    const dep = loadDocs(join(root, 'deploy/kubernetes/base/injector.yaml')).find((o) => o.kind === 'Deployment');
    const c = dep.spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.map((e) => [e.name, e.value]));
    check(env.SENTINEL_TLS_CERT && env.SENTINEL_TLS_KEY, 'injector: the Deployment sets the TLS files');
    env.SENTINEL_TLS_CERT = crt;
    env.SENTINEL_TLS_KEY = key;
    const argv = [...c.args, '--set', 'injector.endpoint=127.0.0.1:0', '--log-format', 'text'];
    let r = await runProgram(injectorBin, argv, env, /listening/);
    check(r.signalled && r.code === 0, `base injector Deployment env: injector served and stopped cleanly (exit ${r.code})\n${r.stderr}`);
    check(r.stderr.includes(`sidecar_image=${env.SENTINEL_SIDECAR_IMAGE}`) && r.stderr.includes('sidecar_mode=regular'),
        `injector: took the manifest's sidecar image ${env.SENTINEL_SIDECAR_IMAGE}, regular mode without a cluster version`);
    r = await runProgram(injectorBin, argv, { ...env, SENTINEL_KUBERNETES_VERSION: '1.30' }, /listening/);
    check(r.code === 0 && r.stderr.includes('sidecar_mode=native'), 'injector: auto mode is native for Kubernetes 1.30');
    r = await runProgram(injectorBin, argv, { ...env, SENTINEL_SIDECAR_MODE: 'sometimes' }, null);
    check(r.code === 2 && r.stderr.includes('sidecar.mode'), `control: injector refuses SENTINEL_SIDECAR_MODE=sometimes (exit ${r.code})\n${r.stderr}`);
}

try {
    await main();
} finally {
    rmSync(work, { recursive: true, force: true });
}
finish('deploy configs');
