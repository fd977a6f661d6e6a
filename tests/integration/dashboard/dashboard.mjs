// integration.dashboard: the aggregator's dashboard in real headless Chromium (Debian's chromium,
// driven by playwright-core) against a real aggregator fed by a real sidecar over OTLP/HTTP.
//   - with SENTINEL_API_TOKEN set, the page asks for the token on the API's 401 and loads once it
//     is given (kept in sessionStorage: a reload asks nothing and logs no console error at all);
//   - the overview shows every service and model with its health;
//   - a latency spike sent through the sidecar appears in the live stream within 2 s;
//   - a service filter narrows the stream (another service's new anomaly does not show, the
//     filtered service's does);
//   - the overview's detection delay panel shows p50/p95/p99 after the spike, and the alert-sink
//     panel lists the webhook sink (a tiny receiver on loopback, SENTINEL_WEBHOOK_URL) with the
//     alert delivered;
//   - the drill-down chart has the key's recent values from /api/v1/series (more points than
//     anomalies), the anomaly's point and the baseline band (Q1..Q3 around the median), drawn
//     on the canvas;
//   - the alert detail shows value vs baseline, deviation, root cause and trace id;
//   - the history view counts anomalies and ranks services;
//   - an invalid configuration edit shows the API's validation error, a valid one is applied.
//   node dashboard.mjs --chromium /usr/bin/chromium --sidecar BIN --aggregator BIN
//        [--screenshot FILE]   (also writes the overview's screenshot to FILE, the drill-down's
//                               to FILE-drill.png)
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { chromium } from 'playwright-core';

import {
  check, httpRequest, log, makeSpan, opt, otlpJson, run, startAggregator, startSidecar, tempDir,
} from '../sidecar/lib.mjs';

const CHROMIUM = opt('--chromium', '/usr/bin/chromium');
const SHOT = opt('--screenshot');
const TOKEN = 'dash-test-token';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const post = (port, spans, service) =>
  httpRequest(port, 'POST', '/v1/traces', { headers: { 'Content-Type': 'application/json' }, body: otlpJson(spans, service) });

await run('dashboard', async () => {
  const dir = tempDir('dash-');
  // A webhook receiver on loopback: the aggregator's one alert sink. Its first answer is a 503
  // (a failed attempt the sink panel shows with its reason), then it takes every alert.
  const hooks = [];
  let refused = 0;
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (refused++ === 0) { res.writeHead(503, { 'Content-Type': 'text/plain' }); res.end('warming up'); return; }
      hooks.push(body);
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  process.env.SENTINEL_WEBHOOK_URL = `http://127.0.0.1:${receiver.address().port}/hook`;
  const agg = await startAggregator({
    eventLog: path.join(dir, 'events.jsonl'),
    extra: ['--set', `http.api_token=${TOKEN}`, '--set', 'delivery.backoff.initial=200ms'],
  });
  delete process.env.SENTINEL_WEBHOOK_URL;
  const apiLine = await agg.waitLog((j) => j.msg === 'REST API listening', 15000, 'REST API listening');
  const apiPort = apiLine.port;
  const sc = await startSidecar({ aggregatorPort: agg.port, spoolDir: path.join(dir, 'spool') });
  const base = `http://127.0.0.1:${apiPort}`;
  const apiGet = async (p) => {
    const r = await httpRequest(apiPort, 'GET', p, { headers: { Authorization: `Bearer ${TOKEN}` } });
    return { status: r.status, body: JSON.parse(r.body.toString() || 'null') };
  };

  // Baselines: normal calls for two services through the real sidecar.
  const services = [['dash-api', 'gpt-4o'], ['other-api', 'gpt-4o-mini']];
  for (let i = 0; i < 40; i++) {
    for (const [svc, model] of services) {
      const r = await post(sc.httpPort, [makeSpan(model, 950 + ((i * 37) % 100), { inputTokens: 500 + (i % 7), outputTokens: 200 + (i % 5) })], svc);
      check(r.status === 200, `baseline call: HTTP ${r.status}`);
    }
  }
  // Wait until the aggregator holds both baselines.
  for (let t0 = Date.now(); ; await sleep(200)) {
    const b = await apiGet('/api/v1/baselines?metric=latency_ms');
    if ((b.body?.baselines || []).filter((x) => x.samples >= 30).length === 2) break;
    if (Date.now() - t0 > 15000) throw new Error(`baselines not ready: ${JSON.stringify(b.body)}`);
  }

  // A fresh profile in the test's temp dir (removed at exit with everything else).
  const userData = fs.mkdtempSync(path.join(dir, 'chromium-'));
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
  });
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    const external = [];
    page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith(`ws://127.0.0.1:${apiPort}`) && !r.url().startsWith('data:')) external.push(r.url()); });

    // --- the token: asked on 401, then kept for the session ---
    await page.goto(`${base}/`);
    await page.waitForSelector('#token-form:not([hidden])', { timeout: 10000 });
    await page.fill('#token-input', TOKEN);
    await page.click('#token-form button');
    await page.waitForFunction(() => document.body.dataset.ready === 'overview', null, { timeout: 10000 });
    const early = errors.filter((e) => !/status of 401/.test(e));
    check(early.length === 0, `console errors besides the 401s before the token: ${JSON.stringify(early)}`);
    errors.length = 0;
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'overview', null, { timeout: 10000 });
    await page.waitForFunction(() => window.__sentinel.wsOpen, null, { timeout: 5000 });
    check(await page.evaluate(() => document.querySelector('#token-form').hidden), 'the token form is shown after a reload');
    check(await page.evaluate(() => typeof window.uPlot === 'function'), 'uPlot is not loaded');

    // --- overview: health per service and model ---
    const rows = await page.$$eval('#health tbody tr[data-service]', (trs) => trs.map((t) => `${t.dataset.service}/${t.dataset.model}`));
    check(rows.includes('dash-api/gpt-4o') && rows.includes('other-api/gpt-4o-mini'), `health rows ${JSON.stringify(rows)}`);

    // --- a spike through the sidecar reaches the live stream within 2 s ---
    const spike = makeSpan('gpt-4o', 20000);
    const r = await post(sc.httpPort, [spike], 'dash-api');
    check(r.status === 200, `spike: HTTP ${r.status}`);
    const t0 = Date.now();
    await page.waitForSelector('#stream li[data-service="dash-api"][data-type="latency_spike"]', { timeout: 10000 });
    const took = Date.now() - t0;
    log(`the spike appeared in the live stream after ${took} ms`);
    check(took <= 2000, `the spike took ${took} ms to reach the live stream (limit 2000)`);
    const liveText = await page.textContent('#stream li[data-service="dash-api"][data-type="latency_spike"]');
    check(/latency_spike/.test(liveText) && /20000/.test(liveText), `stream row: ${liveText}`);
    check(await page.evaluate(() => window.__sentinel.received) >= 1, 'no alert arrived over the WebSocket');
    await page.waitForFunction(() => Number(document.querySelector('#firing-total')?.textContent) >= 1, null, { timeout: 5000 })
      .catch(() => check(false, 'the firing count did not go up'));
    // The health table follows the live alerts.
    await page.waitForFunction(() => {
      const td = document.querySelector('#health tr[data-service="dash-api"] .health');
      return td && Number(td.textContent) < 100;
    }, null, { timeout: 5000 }).catch(() => check(false, 'the service health did not follow the alert'));

    // --- detection delay and sink health on the overview ---
    await page.waitForFunction(() => {
      const v = (q) => document.querySelector(`#delay-${q}`)?.dataset.value;
      return ['p50', 'p95', 'p99'].every((q) => v(q) !== '' && Number.isFinite(Number(v(q)))) && Number(v('count')) >= 1;
    }, null, { timeout: 10000 }).catch(() => check(false, 'the detection delay panel shows no numbers'));
    const delay = await page.evaluate(() => ['p50', 'p95', 'p99', 'count'].map((q) => Number(document.querySelector(`#delay-${q}`).dataset.value)));
    const sumDelay = (await apiGet('/api/v1/statistics/summary')).body.detection_delay_seconds;
    log(`detection delay on the page ${JSON.stringify(delay)}; summary ${JSON.stringify(sumDelay)}`);
    check(delay[0] >= 0 && delay[0] <= delay[1] && delay[1] <= delay[2] && delay[2] < 10, `delay percentiles ${JSON.stringify(delay)}`);
    check(/\d/.test(await page.textContent('#delay-p50 .n')), 'the p50 card shows no number');
    for (let t = Date.now(); hooks.length === 0 && Date.now() - t < 10000;) await sleep(100);
    check(hooks.length >= 1 && JSON.parse(hooks[0]).alert_id, `the webhook received ${hooks.length} alerts`);
    await page.waitForFunction(() => Number(document.querySelector('#sinks tr[data-sink="webhook"] td.delivered')?.textContent) >= 1, null, { timeout: 10000 })
      .catch(() => check(false, 'the sink panel does not show the webhook with a delivery'));
    const sinkCells = await page.$$eval('#sinks tr[data-sink="webhook"] td', (tds) => tds.map((t) => t.textContent.trim()));
    log(`sink panel: ${JSON.stringify(sinkCells)}`);
    // name, delivered, failed, dead-lettered, queued, breaker, last error
    check(Number(sinkCells[2]) >= 1 && Number(sinkCells[3]) === 0 && sinkCells[5] === 'closed', `the webhook's row: ${JSON.stringify(sinkCells)}`);
    check(/503/.test(sinkCells[6]), `the webhook's last error: ${sinkCells[6]}`);
    const sumSinks = (await apiGet('/api/v1/statistics/summary')).body.sinks;
    check(sumSinks.length === 1 && sumSinks[0].name === 'webhook' && sumSinks[0].failed >= 1 && /503/.test(sumSinks[0].last_error), `summary sinks ${JSON.stringify(sumSinks)}`);

    // --- a filter narrows the stream ---
    await page.selectOption('#f-service', 'other-api');
    await sleep(300); // the new subscription reaches the aggregator
    const hidden = await page.$$eval('#stream li[data-service]', (lis) => lis.map((l) => l.dataset.service));
    check(hidden.every((s) => s === 'other-api'), `after the filter the stream shows ${JSON.stringify(hidden)}`);
    const before = await page.evaluate(() => window.__sentinel.received);
    // A token spike on dash-api (filtered out) and then a latency spike on other-api.
    await post(sc.httpPort, [makeSpan('gpt-4o', 1000, { inputTokens: 400000, outputTokens: 200 })], 'dash-api');
    for (let t = Date.now(); Date.now() - t < 10000; await sleep(200)) {
      const a = await apiGet('/api/v1/anomalies?service=dash-api&anomaly_type=token_spike');
      if ((a.body?.anomalies || []).length) break;
    }
    const tokenAlerts = await apiGet('/api/v1/anomalies?service=dash-api&anomaly_type=token_spike');
    check((tokenAlerts.body?.anomalies || []).length >= 1, `the token spike raised no alert: ${JSON.stringify(tokenAlerts.body)}`);
    await post(sc.httpPort, [makeSpan('gpt-4o-mini', 25000)], 'other-api');
    await page.waitForSelector('#stream li[data-service="other-api"]', { timeout: 10000 });
    const shown = await page.$$eval('#stream li[data-service]', (lis) => lis.map((l) => l.dataset.service));
    check(shown.length >= 1 && shown.every((s) => s === 'other-api'), `filtered stream shows ${JSON.stringify(shown)}`);
    const received = await page.evaluate(() => window.__sentinel.stream.filter((a) => a.service_name === 'dash-api' && a.anomaly_type === 'token_spike').length);
    check(received === 0, 'the filtered-out alert was sent to the page');
    check(await page.evaluate(() => window.__sentinel.received) > before, 'nothing arrived after the filter');
    await page.selectOption('#f-service', '');
    await page.waitForSelector('#stream li[data-service="dash-api"]', { timeout: 5000 });
    if (SHOT) {
      await sleep(1500); // the health table's refresh
      await page.screenshot({ path: SHOT, fullPage: false });
      log(`screenshot: ${SHOT}`);
    }
    check(errors.length === 0, `console errors after the token was given: ${JSON.stringify(errors)}`);

    // --- drill-down: points and the baseline band ---
    await page.goto(`${base}/#drill/dash-api/gpt-4o`);
    await page.waitForFunction(() => document.body.dataset.ready?.startsWith('drill') && window.__sentinel.charts.latency_ms, null, { timeout: 10000 });
    const chart = await page.evaluate(() => {
      const u = window.__sentinel.charts.latency_ms;
      const c = document.querySelector('.chart[data-metric="latency_ms"] canvas');
      const g = c.getContext('2d');
      const px = g.getImageData(0, 0, c.width, c.height).data;
      let red = 0, band = 0;
      for (let i = 0; i < px.length; i += 4) {
        const [r0, g0, b0, a0] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
        if (a0 > 200 && r0 > 150 && g0 < 80 && b0 < 80) red++;
        if (a0 > 20 && b0 > r0 + 30 && b0 > g0) band++;
      }
      return { values: u.data[1].filter((v) => v != null), points: u.data[2].filter((v) => v != null), q1: u.data[3][0], median: u.data[4][0], q3: u.data[5][0], bands: (u.bands || []).length, w: c.width, h: c.height, red, band };
    });
    const series = (await apiGet('/api/v1/series?service=dash-api&model=gpt-4o&metric=latency_ms&limit=300')).body;
    const bl = (await apiGet('/api/v1/baselines?service=dash-api&model=gpt-4o&metric=latency_ms')).body.baselines[0];
    log(`drill-down chart: ${JSON.stringify({ ...chart, values: chart.values.length })}; baseline ${JSON.stringify({ q1: bl.q1, median: bl.median, q3: bl.q3 })}; series ${series.count} points`);
    // The recent values: every latency the aggregator applied for the key (40 normal calls, the
    // spike, the token spike's call), many more than the anomalies, the spike among them.
    check(chart.values.length > chart.points.length && chart.values.length >= 40, `${chart.values.length} recent values vs ${chart.points.length} anomalies`);
    check(chart.values.length === series.count && series.points.length === series.count, `chart ${chart.values.length} vs /api/v1/series ${series.count}`);
    check(chart.values.some((v) => Math.abs(v - 20000) < 1e-6) && chart.values.filter((v) => v >= 950 && v < 1050).length >= 40, 'the recent values lack the calls sent');
    check(Math.abs(series.baseline.median - bl.median) / bl.median < 0.05, `series baseline ${series.baseline.median} vs ${bl.median}`);
    check(chart.points.some((v) => Math.abs(v - 20000) < 1e-6), `chart points ${JSON.stringify(chart.points)}`);
    check(chart.bands === 1 && chart.q1 <= chart.median && chart.median <= chart.q3 && chart.q3 > chart.q1, `band ${chart.q1}..${chart.q3} around ${chart.median}`);
    check(Math.abs(chart.median - bl.median) / bl.median < 0.05 && chart.q1 > 900 && chart.q3 < 1100, `band vs /api/v1/baselines: ${chart.median} vs ${bl.median}`);
    check(chart.w > 300 && chart.h > 100 && chart.red > 20 && chart.band > 200, `canvas ${chart.w}x${chart.h}, ${chart.red} point pixels, ${chart.band} band pixels`);
    if (SHOT) await page.screenshot({ path: SHOT.replace(/\.png$/, '-drill.png'), fullPage: false });

    // --- alert detail ---
    const id = (await apiGet('/api/v1/anomalies?service=dash-api&anomaly_type=latency_spike')).body.anomalies[0].alert_id;
    await page.click(`#drill-anomalies a[href="#alert/${id}"]`);
    await page.waitForSelector('#alert-detail', { timeout: 5000 });
    const detail = await page.textContent('#alert-detail');
    check(/20000/.test(detail) && /vs/.test(detail) && /σ/.test(detail), `detail: ${detail}`);
    check(detail.includes(spike.traceId), `the detail lacks the trace id ${spike.traceId}`);
    check(/root cause\s*\S+/.test(detail) && !/root cause–/.test(detail), 'the detail lacks a root cause');

    // --- history ---
    await page.goto(`${base}/#history`);
    await page.waitForFunction(() => document.body.dataset.ready === 'history', null, { timeout: 10000 });
    const top = await page.$$eval('#top-services td', (tds) => tds.map((t) => t.textContent));
    check(top.includes('dash-api') && top.includes('other-api'), `top services ${JSON.stringify(top)}`);
    await page.selectOption('#hist-form select[name="anomaly_type"]', 'token_spike');
    await page.click('#hist-form button');
    await page.waitForFunction(() => !document.querySelector('#top-services').textContent.includes('other-api'), null, { timeout: 5000 })
      .catch(() => check(false, 'the history filter did not narrow the top services'));

    // --- configuration: an invalid edit shows the API's error; a valid one applies ---
    await page.goto(`${base}/#config`);
    await page.waitForFunction(() => document.body.dataset.ready === 'config', null, { timeout: 10000 });
    const key = 'engine.detect.zscore.threshold';
    check(await page.$(`#cfg-table input[name="${key}"]`) !== null, `no input for ${key}`);
    await page.fill(`#cfg-table input[name="${key}"]`, '-2');
    await page.click('#cfg-save');
    await page.waitForSelector('#cfg-result.error', { timeout: 5000 });
    const msg = await page.textContent('#cfg-result');
    check(/zscore\.threshold/.test(msg), `config error shown: ${msg}`);
    const cfgAfter = (await apiGet('/api/v1/config')).body;
    check(cfgAfter.engine.detect.zscore.threshold === 3, `the refused value was applied: ${cfgAfter.engine.detect.zscore.threshold}`);
    await page.fill(`#cfg-table input[name="${key}"]`, '3.5');
    await page.click('#cfg-save');
    await page.waitForSelector('#cfg-result.ok', { timeout: 5000 });
    check((await apiGet('/api/v1/config')).body.engine.detect.zscore.threshold === 3.5, 'the valid edit was not applied');

    // The refused edit's 400 is the only thing Chromium reports (as a failed resource load).
    const late = errors.filter((e) => !/status of 400/.test(e));
    check(late.length === 0, `console errors: ${JSON.stringify(late)}`);
    check(external.length === 0, `requests outside the aggregator: ${JSON.stringify(external)}`);
  } finally {
    await ctx.close();
  }
  check((await sc.kill('SIGTERM')).code === 0, 'sidecar exit status after SIGTERM');
  check((await agg.kill('SIGTERM')).code === 0, 'aggregator exit status after SIGTERM');
  receiver.close();
});
