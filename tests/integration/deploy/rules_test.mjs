// Checks deploy/prometheus/sentinel-rules.yaml with Prometheus' own tools, and the Grafana
// dashboard's queries with Prometheus' parser:
//   1. `promtool check rules` accepts the rules, and refuses a broken control;
//   2. `promtool test rules` runs sentinel-rules.cases.yaml (every alert fires on its input with
//      exactly the expected labels, and stays silent on the inputs that must not fire it), with
//      each expected alert's annotations rendered from the rule; a case with a wrong label fails;
//   3. every metric the rules and the dashboard read is in the docs' metric tables;
//   4. every dashboard query parses (as a recording rule, Grafana's variables substituted).
//   node rules_test.mjs --root REPO --promtool PATH
import { readFileSync, writeFileSync, mkdtempSync, rmSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { parse, stringify } from 'yaml';
import { check, finish, documentedMetrics, metricProblems } from './lib.mjs';

const args = process.argv.slice(2);
const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
};
const root = opt('--root');
const promtool = opt('--promtool');
if (!root || !promtool) {
    console.error('usage: rules_test.mjs --root REPO --promtool PATH');
    process.exit(2);
}
const dir = join(root, 'deploy', 'prometheus');
const work = mkdtempSync(join(tmpdir(), 'sentinel-rules-'));
const run = (...a) => spawnSync(promtool, a, { cwd: work, encoding: 'utf8', timeout: 60000 });

try {
    const rulesText = readFileSync(join(dir, 'sentinel-rules.yaml'), 'utf8');
    copyFileSync(join(dir, 'sentinel-rules.yaml'), join(work, 'sentinel-rules.yaml'));
    const rules = parse(rulesText);
    const alerts = new Map(rules.groups.flatMap((g) => g.rules).filter((r) => r.alert).map((r) => [r.alert, r]));

    // 1. promtool check rules, and a control it must refuse.
    let r = run('check', 'rules', 'sentinel-rules.yaml');
    check(r.status === 0, `promtool check rules: ${r.stdout}${r.stderr}`);
    const m = /SUCCESS: (\d+) rules found/.exec(r.stdout);
    check(m && Number(m[1]) === alerts.size, `promtool found ${m?.[1]} rules, the file has ${alerts.size}`);
    writeFileSync(join(work, 'broken.yaml'), rulesText.replace('deriv(sentinel_sidecar_spool_bytes[10m])', 'deriv(sentinel_sidecar_spool_bytes[10m)'));
    r = run('check', 'rules', 'broken.yaml');
    check(r.status !== 0, 'promtool check rules refuses a broken expression (control)');

    // Every alert has a severity the routing understands and a summary and description.
    for (const [name, a] of alerts) {
        check(['warning', 'critical'].includes(a.labels?.severity), `${name}: severity warning|critical`);
        check(a.annotations?.summary && a.annotations?.description, `${name}: summary and description`);
        check(!/\$value/.test(JSON.stringify(a.annotations)), `${name}: annotations use labels only (rendered by this test)`);
    }

    // 2. promtool test rules with annotations rendered from the rules.
    const cases = parse(readFileSync(join(dir, 'sentinel-rules.cases.yaml'), 'utf8'));
    const render = (tpl, labels) => tpl.replace(/\{\{\s*\$labels\.(\w+)\s*\}\}/g, (_, k) => labels[k] ?? '');
    const tested = new Set();
    let firing = 0;
    for (const t of cases.tests) {
        for (const at of t.alert_rule_test) {
            const rule = alerts.get(at.alertname);
            check(rule, `cases: unknown alert ${at.alertname}`);
            if (!rule) continue;
            tested.add(at.alertname);
            for (const e of at.exp_alerts) {
                firing++;
                e.exp_annotations = Object.fromEntries(Object.entries(rule.annotations).map(([k, v]) => [k, render(v, e.exp_labels)]));
            }
        }
    }
    for (const name of alerts.keys()) check(tested.has(name), `cases: alert ${name} has no test`);
    check(firing >= alerts.size, `cases: ${firing} firing expectations for ${alerts.size} alerts`);
    writeFileSync(join(work, 'cases.yaml'), stringify(cases));
    r = run('test', 'rules', 'cases.yaml');
    check(r.status === 0, `promtool test rules:\n${r.stdout}${r.stderr}`);
    check(/SUCCESS/.test(r.stdout), 'promtool test rules: SUCCESS');

    // The control: the same cases with one expected label changed must fail.
    const wrong = structuredClone(cases);
    const victim = wrong.tests.flatMap((t) => t.alert_rule_test).find((at) => at.exp_alerts.length > 0);
    victim.exp_alerts[0].exp_labels.severity = 'info';
    writeFileSync(join(work, 'wrong.yaml'), stringify(wrong));
    r = run('test', 'rules', 'wrong.yaml');
    check(r.status !== 0 && /FAILED/.test(r.stdout + r.stderr), 'promtool test rules fails a wrong expectation (control)');

    // 3. metric names of the rules.
    const documented = documentedMetrics(root);
    const external = new Set(['up', 'apiserver_admission_webhook_request_total', 'apiserver_admission_webhook_fail_open_count']);
    for (const [name, a] of alerts) {
        for (const p of metricProblems(a.expr, documented, external).problems) check(false, `${name}: ${p}`);
    }

    // 4. dashboard queries through Prometheus' parser.
    const dash = JSON.parse(readFileSync(join(root, 'deploy', 'grafana', 'llm-sentinel-health.json'), 'utf8'));
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    const promql = (e) => e.replaceAll('$__rate_interval', '5m').replaceAll('$__range', '6h').replaceAll('$namespace', '.*');
    const asRules = { groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: promql(e) })) }] };
    writeFileSync(join(work, 'dashboard.yaml'), stringify(asRules));
    r = run('check', 'rules', 'dashboard.yaml');
    check(r.status === 0, `dashboard queries parse: ${r.stdout}${r.stderr}`);
    check(exprs.length >= 20 && exprs.every((e) => !/\$(?!__rate_interval|__range|namespace)\w/.test(e)), 'dashboard: only known variables');
} finally {
    rmSync(work, { recursive: true, force: true });
}
finish('alert rules');
