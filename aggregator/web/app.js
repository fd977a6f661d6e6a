// The LLM-Sentinel dashboard (docs/dashboard.md): plain ES module, no framework. Views are
// picked by the URL hash: #overview, #drill/<service>/<model>, #alert/<id>, #history, #config.
// Data comes from the aggregator's REST API (/api/v1/...) and its live feed (/ws/realtime).

const TOKEN_KEY = 'sentinel.token';
const SEVERITIES = ['critical', 'high', 'medium', 'low'];
const HEALTH_WEIGHT = { critical: 40, high: 20, medium: 10, low: 5 }; // as the API's service health
const STREAM_MAX = 500; // rows kept in the live stream
const HOUR_S = 3600;
const SERIES_LIMIT = 300; // recent values per chart (the aggregator keeps 300 per key)

// State the tests and a curious operator can look at.
const state = {
  stream: [],               // alerts of the last hour, newest first (live feed + initial load)
  filter: { service: '', model: '', severity: '' },
  charts: {},               // drill-down uPlot instances by metric
  ws: null,
  wsOpen: false,
  lastHeartbeat: null,
  received: 0,
};
window.__sentinel = state;

const $ = (sel, root = document) => root.querySelector(sel);
const view = () => $('#view');

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
const fmtNum = (v) => (typeof v === 'number' && Number.isFinite(v) ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4).replace(/\.?0+$/, '')) : '–');
// A delay in seconds, in ms below one second.
const fmtDelay = (v) => (typeof v === 'number' && Number.isFinite(v) ? (v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 1 : 0)} ms` : `${v.toFixed(2)} s`) : '–');
const fmtTime = (s) => (s ? new Date(s).toLocaleString() : '–');
const sevBadge = (s) => `<span class="sev ${esc(s)}">${esc(s)}</span>`;
const pairHref = (svc, model) => `#drill/${encodeURIComponent(svc)}/${encodeURIComponent(model)}`;

// ---------------------------------------------------------------- API with the token

class AuthError extends Error {}

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const tok = sessionStorage.getItem(TOKEN_KEY);
  if (tok) headers.Authorization = `Bearer ${tok}`;
  const r = await fetch(path, { ...opts, headers });
  let body = null;
  const text = await r.text();
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: text }; }
  if (r.status === 401) {
    askToken(tok ? 'The token was refused.' : '');
    throw new AuthError('token required');
  }
  return { status: r.status, ok: r.ok, body };
}

function askToken(msg) {
  const f = $('#token-form');
  f.hidden = false;
  $('#token-error').textContent = msg || '';
}

$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('#token-input').value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  $('#token-form').hidden = true;
  connectLive(true);
  route();
});

// ---------------------------------------------------------------- the live feed

let reconnectTimer = null;

function liveStatus() {
  const el = $('#live-status');
  el.className = `status ${state.wsOpen ? 'on' : 'off'}`;
  el.textContent = state.wsOpen ? `live: on${state.lastHeartbeat ? ' · ♥ ' + new Date(state.lastHeartbeat).toLocaleTimeString() : ''}` : 'live: reconnecting';
}

function subscribeMessage() {
  const m = { type: 'subscribe' };
  const tok = sessionStorage.getItem(TOKEN_KEY);
  if (tok) m.token = tok;
  if (state.filter.service) m.service = state.filter.service;
  if (state.filter.model) m.model = state.filter.model;
  if (state.filter.severity) m.severity = state.filter.severity;
  return m;
}

function connectLive(force = false) {
  if (state.ws && !force) return;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  clearTimeout(reconnectTimer);
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  // The token travels in the first message (not the URL, which proxies may log).
  const ws = new WebSocket(`${proto}//${location.host}/ws/realtime`);
  state.ws = ws;
  ws.onopen = () => { state.wsOpen = true; ws.send(JSON.stringify(subscribeMessage())); liveStatus(); };
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.type === 'heartbeat') { state.lastHeartbeat = Date.now(); liveStatus(); }
    else if (m.type === 'alert') onLiveAlert(m.change, m.alert);
    else if (m.type === 'error' && /token/.test(m.error)) askToken('The live feed refused the token.');
  };
  ws.onclose = () => {
    state.wsOpen = false;
    state.ws = null;
    liveStatus();
    reconnectTimer = setTimeout(() => connectLive(), 2000);
  };
  ws.onerror = () => {}; // onclose follows and reconnects
}

function resubscribe() {
  if (state.ws && state.wsOpen) state.ws.send(JSON.stringify(subscribeMessage()));
}

function matches(a) {
  const f = state.filter;
  return (!f.service || a.service_name === f.service) && (!f.model || a.model === f.model) &&
    (!f.severity || a.severity === f.severity);
}

function onLiveAlert(change, a) {
  state.received++;
  const i = state.stream.findIndex((x) => x.alert_id === a.alert_id);
  a._change = change;
  a._new = true;
  if (i >= 0) state.stream.splice(i, 1);
  state.stream.unshift(a);
  if (state.stream.length > STREAM_MAX) state.stream.length = STREAM_MAX;
  if (current === 'overview') { renderStream(); scheduleOverviewRefresh(); }
  if (current === 'drill' && drillKey && a.service_name === drillKey[0] && a.model === drillKey[1]) renderDrill(...drillKey);
}

// ---------------------------------------------------------------- overview

async function loadStream() {
  const start = Math.floor(Date.now() / 1000) - HOUR_S;
  const r = await api(`/api/v1/anomalies?start=${start}&limit=500`);
  if (!r.ok) throw new Error(r.body?.error || `HTTP ${r.status}`);
  const known = new Map(state.stream.map((a) => [a.alert_id, a]));
  for (const a of r.body.anomalies || []) if (!known.has(a.alert_id)) state.stream.push(a);
  state.stream.sort((x, y) => (y.timestamp || '').localeCompare(x.timestamp || ''));
}

function renderStream() {
  const ul = $('#stream');
  if (!ul) return;
  const cutoff = Date.now() - HOUR_S * 1000;
  const rows = state.stream.filter((a) => matches(a) && Date.parse(a.timestamp) >= cutoff);
  ul.innerHTML = rows.length ? rows.map((a) => `
    <li class="${esc(a.status)}${a._new ? ' new' : ''}" data-alert-id="${esc(a.alert_id)}" data-service="${esc(a.service_name)}" data-type="${esc(a.anomaly_type)}">
      ${sevBadge(a.severity)} <a href="#alert/${esc(a.alert_id)}">${esc(a.anomaly_type)}</a>
      on <a href="${pairHref(a.service_name, a.model)}">${esc(a.service_name)} / ${esc(a.model)}</a>
      — ${esc(a.details?.metric)} ${fmtNum(a.details?.value)} (baseline ${fmtNum(a.details?.baseline)})
      <span class="note">${esc(a.status)}${a._change ? ' · ' + esc(a._change) : ''} · ${fmtTime(a.timestamp)}</span>
    </li>`).join('') : '<li class="note" id="stream-empty">No anomalies in the last hour.</li>';
  for (const a of rows) a._new = false;
}

async function refreshOverviewNumbers() {
  const sum = await api('/api/v1/statistics/summary').catch(() => null);
  const box = $('#sev-cards');
  if (!sum || !sum.ok || !box) return;
  const by = sum.body.alerts?.firing_by_severity || {};
  box.innerHTML = SEVERITIES.map((s) => `<div class="card" data-severity="${s}"><div class="l">${s}</div><div class="n">${by[s] || 0}</div></div>`).join('') +
    `<div class="card"><div class="l">firing</div><div class="n" id="firing-total">${sum.body.alerts?.firing ?? 0}</div></div>` +
    `<div class="card"><div class="l">events</div><div class="n">${sum.body.events ?? 0}</div></div>` +
    `<div class="card"><div class="l">baseline keys</div><div class="n">${sum.body.baselines?.keys ?? 0}</div></div>`;
  renderDelay(sum.body.detection_delay_seconds || {});
  renderSinks(sum.body.sinks || []);
}

// Detection delay percentiles: from the span's end to the anomaly, over the last 1024 anomalies.
function renderDelay(d) {
  const box = $('#delay-cards');
  if (!box) return;
  box.innerHTML = ['p50', 'p95', 'p99'].map((q) => {
    const v = typeof d[q] === 'number' && Number.isFinite(d[q]) ? d[q] : null;
    return `<div class="card" id="delay-${q}" data-value="${v ?? ''}"><div class="l">delay ${q}</div><div class="n">${fmtDelay(v)}</div></div>`;
  }).join('') + `<div class="card" id="delay-count" data-value="${d.count ?? 0}"><div class="l">anomalies timed</div><div class="n">${d.count ?? 0}</div></div>`;
}

// Alert sinks: delivered, failed, dead-lettered, queue depth, circuit breaker, last error.
function renderSinks(sinks) {
  const tbody = $('#sinks tbody');
  if (!tbody) return;
  tbody.innerHTML = sinks.map((k) => `<tr data-sink="${esc(k.name)}" class="${k.breaker_open ? 'bad' : ''}">
      <td>${esc(k.name)}</td><td class="delivered">${k.delivered}</td><td>${k.failed}</td><td>${k.dead_lettered}</td><td>${k.queue_depth}</td>
      <td><span class="health ${k.breaker_open ? 'bad' : k.breaker === 'half_open' ? 'mid' : 'good'}">${esc(k.breaker || (k.breaker_open ? 'open' : 'closed'))}</span></td>
      <td class="note">${esc(k.last_error ?? '–')}</td></tr>`).join('') ||
    '<tr><td colspan="7" class="note">No alert sink configured (SENTINEL_WEBHOOK_URL, SENTINEL_ALERTMANAGER_URL, SENTINEL_AMQP_URL).</td></tr>';
}

function healthClass(h) { return h >= 90 ? 'good' : h >= 60 ? 'mid' : 'bad'; }

async function renderOverview() {
  view().innerHTML = `
    <h2>Active alerts by severity</h2><div class="grid" id="sev-cards"></div>
    <h2>Detection delay</h2><div class="grid" id="delay-cards"></div>
    <div class="cols">
      <section><h2>Service health</h2>
        <table id="health"><thead><tr><th>service</th><th>model</th><th>health</th><th>firing</th></tr></thead><tbody></tbody></table>
        <p class="note">Health is 100 minus 40 / 20 / 10 / 5 per firing critical / high / medium / low alert, per service (the API) and per model (the same rule over the firing alerts).
        Detection delay: from the end of the call to the anomaly, percentiles of the last 1024 anomalies.</p>
        <h2>Alert sinks</h2>
        <table id="sinks"><thead><tr><th>sink</th><th>delivered</th><th>failed</th><th>dead-lettered</th><th>queued</th><th>breaker</th><th>last error</th></tr></thead><tbody></tbody></table>
      </section>
      <section><h2>Anomaly stream (last hour, live)</h2>
        <div class="filters">
          <label>service <select id="f-service"><option value="">all</option></select></label>
          <label>model <select id="f-model"><option value="">all</option></select></label>
          <label>severity <select id="f-severity"><option value="">all</option>${SEVERITIES.map((s) => `<option>${s}</option>`).join('')}</select></label>
        </div>
        <ul id="stream"></ul>
      </section>
    </div>`;
  await Promise.all([refreshOverviewNumbers(), loadStream().catch(rethrowAuth)]);
  const services = await renderHealth();
  fillSelect('#f-service', services.services, state.filter.service);
  fillSelect('#f-model', services.models, state.filter.model);
  $('#f-severity').value = state.filter.severity;
  for (const k of ['service', 'model', 'severity']) {
    $(`#f-${k}`).addEventListener('change', (e) => {
      state.filter[k] = e.target.value;
      resubscribe();
      renderStream();
      // Alerts the old subscription did not carry come from the store.
      loadStream().then(renderStream).catch(() => {});
    });
  }
  renderStream();
}

// Live alerts refresh the numbers and the health table, at most once a second.
let overviewTimer = null;
function scheduleOverviewRefresh() {
  if (overviewTimer) return;
  overviewTimer = setTimeout(async () => {
    overviewTimer = null;
    if (current !== 'overview') return;
    await Promise.all([refreshOverviewNumbers(), renderHealth()]).catch(() => {});
  }, 1000);
}

// The service health table; returns the services and models seen.
async function renderHealth() {
  const bl = await api('/api/v1/baselines');
  const pairs = new Map();
  for (const b of bl.body?.baselines || []) pairs.set(`${b.service}\u0000${b.model}`, [b.service, b.model]);
  for (const a of state.stream) if (a.status === 'firing') pairs.set(`${a.service_name}\u0000${a.model}`, [a.service_name, a.model]);
  const services = [...new Set([...pairs.values()].map((p) => p[0]))].sort();
  const models = [...new Set([...pairs.values()].map((p) => p[1]))].sort();
  const health = {};
  await Promise.all(services.map(async (s) => {
    const r = await api(`/api/v1/services/${encodeURIComponent(s)}/health`);
    if (r.ok) health[s] = r.body;
  }));
  const firingByPair = {};
  for (const a of state.stream) {
    if (a.status !== 'firing') continue;
    const k = `${a.service_name}\u0000${a.model}`;
    firingByPair[k] = (firingByPair[k] || 0) + HEALTH_WEIGHT[a.severity];
  }
  const rows = [...pairs.values()].sort((x, y) => (x[0] + x[1]).localeCompare(y[0] + y[1]));
  const tbody = $('#health tbody');
  if (!tbody) return { services, models };
  tbody.innerHTML = rows.map(([s, m]) => {
    const ph = Math.max(0, 100 - (firingByPair[`${s}\u0000${m}`] || 0));
    const sh = health[s]?.health ?? 100;
    const f = health[s]?.firing || {};
    return `<tr data-service="${esc(s)}" data-model="${esc(m)}">
      <td>${esc(s)} <span class="health ${healthClass(sh)}" title="service health">${sh}</span></td>
      <td><a href="${pairHref(s, m)}">${esc(m)}</a></td>
      <td><span class="health ${healthClass(ph)}">${ph}</span> <span class="bar ${healthClass(ph)}" style="width:${ph}px"></span></td>
      <td>${SEVERITIES.filter((x) => f[x]).map((x) => `${sevBadge(x)} ${f[x]}`).join(' ') || '–'}</td></tr>`;
  }).join('') || '<tr><td colspan="4" class="note">No service seen yet.</td></tr>';
  return { services, models };
}

function fillSelect(sel, values, current) {
  const el = $(sel);
  for (const v of values) {
    const o = document.createElement('option');
    o.value = o.textContent = v;
    el.appendChild(o);
  }
  el.value = current;
}

function rethrowAuth(e) { if (e instanceof AuthError) throw e; }

// ---------------------------------------------------------------- drill-down

let drillKey = null;

async function renderDrill(svc, model) {
  drillKey = [svc, model];
  const q = `service=${encodeURIComponent(svc)}&model=${encodeURIComponent(model)}`;
  const start = Math.floor(Date.now() / 1000) - 6 * HOUR_S;
  const [bl, an] = await Promise.all([api(`/api/v1/baselines?${q}`), api(`/api/v1/anomalies?${q}&start=${start}&limit=1000`)]);
  const baselines = (bl.body?.baselines || []).sort((a, b) => a.metric.localeCompare(b.metric));
  const anomalies = an.body?.anomalies || [];
  // Live alerts of the pair that the store answer may not hold yet.
  for (const a of state.stream) {
    if (a.service_name === svc && a.model === model && !anomalies.some((x) => x.alert_id === a.alert_id)) anomalies.push(a);
  }
  // Each metric's recent values and its baseline now (/api/v1/series).
  const series = {};
  await Promise.all(baselines.map(async (b) => {
    const r = await api(`/api/v1/series?${q}&metric=${encodeURIComponent(b.metric)}&limit=${SERIES_LIMIT}`);
    if (r.ok) series[b.metric] = r.body;
  }));
  for (const c of Object.values(state.charts)) c.destroy();
  state.charts = {};
  view().innerHTML = `<h2>${esc(svc)} / ${esc(model)}</h2>
    <p class="note">Each chart: the key's most recent values (grey points, up to ${SERIES_LIMIT} calls from /api/v1/series) with the anomalies among them (red),
    against the key's current baseline — the median (line) and the interquartile band Q1–Q3. The table lists the anomalies of the last 6 hours.</p>
    <div id="charts"></div>
    <h2>Anomalies</h2>
    <table id="drill-anomalies"><thead><tr><th>time</th><th>severity</th><th>type</th><th>metric</th><th>value</th><th>baseline</th><th>σ</th><th>status</th></tr></thead><tbody>
    ${anomalies.map((a) => `<tr><td><a href="#alert/${esc(a.alert_id)}">${fmtTime(a.timestamp)}</a></td><td>${sevBadge(a.severity)}</td><td>${esc(a.anomaly_type)}</td>
      <td>${esc(a.details?.metric)}</td><td>${fmtNum(a.details?.value)}</td><td>${fmtNum(a.details?.baseline)}</td><td>${fmtNum(a.details?.deviation_sigma)}</td><td>${esc(a.status)}</td></tr>`).join('') ||
      '<tr><td colspan="8" class="note">No anomalies in this range.</td></tr>'}</tbody></table>`;
  const box = $('#charts');
  if (!baselines.length) box.innerHTML = '<p class="note">No baseline for this pair yet.</p>';
  const now = Date.now() / 1000;
  for (const b0 of baselines) {
    const sr = series[b0.metric];
    const b = { ...b0, ...(sr?.baseline || {}) }; // the series' baseline is the newest
    const recent = (sr?.points || []).map((p) => [Date.parse(p.time) / 1000, p.value])
      .filter(([t, v]) => Number.isFinite(t) && Number.isFinite(v));
    // The time axis spans the recent values (6 hours when there are none), a little padded.
    const first = recent.length ? recent[0][0] : now - 6 * HOUR_S;
    const marks = anomalies.filter((a) => a.details?.metric === b.metric)
      .map((a) => [Date.parse(a.timestamp) / 1000, a.details.value]).filter(([t, v]) => Number.isFinite(t) && Number.isFinite(v) && t >= first - 1);
    const last = recent.length ? Math.max(recent[recent.length - 1][0], ...marks.map((m) => m[0])) : now;
    const pad = Math.max(1, (last - first) * 0.04);
    // One x axis: every recent value and anomaly in time order; each series null elsewhere.
    const rows = [[first - pad, null, null], ...recent.map(([t, v]) => [t, v, null]), ...marks.map(([t, v]) => [t, null, v]), [last + pad, null, null]]
      .sort((x, y) => x[0] - y[0]);
    const xs = rows.map((r) => r[0]);
    const flat = (v) => xs.map(() => (Number.isFinite(v) ? v : null));
    const data = [xs, rows.map((r) => r[1]), rows.map((r) => r[2]), flat(b.q1), flat(b.median), flat(b.q3)];
    const div = document.createElement('div');
    div.className = 'chart';
    div.dataset.metric = b.metric;
    div.dataset.recent = String(recent.length);
    div.dataset.anomalies = String(marks.length);
    box.appendChild(div);
    if (typeof window.uPlot !== 'function') { div.textContent = `${b.metric}: median ${fmtNum(b.median)}, Q1 ${fmtNum(b.q1)}, Q3 ${fmtNum(b.q3)}, ${recent.length} recent values (charts unavailable in this build)`; continue; }
    const band = 'rgba(58,123,213,0.18)';
    const opts = {
      title: `${b.metric} — median ${fmtNum(b.median)}, Q1 ${fmtNum(b.q1)}, Q3 ${fmtNum(b.q3)}, ${b.samples} samples; ${recent.length} recent values`,
      width: Math.min(1100, box.clientWidth - 20 || 800), height: 220,
      scales: { x: { time: true } },
      series: [
        {},
        { label: 'value', stroke: '#5f6b7a', width: 0, paths: () => null, points: { show: true, size: 5, fill: '#5f6b7a' } },
        { label: 'anomaly', stroke: '#b3261e', width: 0, paths: () => null, points: { show: true, size: 10, fill: '#b3261e' } },
        { label: 'Q1', stroke: 'rgba(58,123,213,0.6)', width: 1, points: { show: false } },
        { label: 'median', stroke: '#3a7bd5', width: 2, points: { show: false } },
        { label: 'Q3', stroke: 'rgba(58,123,213,0.6)', width: 1, points: { show: false } },
      ],
      bands: [{ series: [5, 3], fill: band }],
    };
    state.charts[b.metric] = new window.uPlot(opts, data, div);
  }
}

// ---------------------------------------------------------------- alert detail

async function renderAlert(id) {
  const r = await api(`/api/v1/anomalies/${encodeURIComponent(id)}`);
  if (!r.ok) { view().innerHTML = `<p class="error">${esc(r.body?.error || 'not found')}</p>`; return; }
  const a = r.body.anomaly || r.body;
  const d = a.details || {}, c = a.context || {};
  view().innerHTML = `<h2>${sevBadge(a.severity)} ${esc(a.anomaly_type)} on <a href="${pairHref(a.service_name, a.model)}">${esc(a.service_name)} / ${esc(a.model)}</a></h2>
    <dl class="kv" id="alert-detail">
      <dt>status</dt><dd>${esc(a.status)} (${esc(a.occurrences)} occurrences)</dd>
      <dt>first seen</dt><dd>${fmtTime(a.timestamp)}</dd>
      <dt>metric</dt><dd>${esc(d.metric)}</dd>
      <dt>value vs baseline</dt><dd><b>${fmtNum(d.value)}</b> vs ${fmtNum(d.baseline)} (threshold ${fmtNum(d.threshold)})</dd>
      <dt>deviation</dt><dd>${fmtNum(d.deviation_sigma)} σ</dd>
      <dt>detection</dt><dd>${esc(a.detection_method)}, confidence ${fmtNum(a.confidence)}, source ${esc(c.source)}</dd>
      <dt>root cause</dt><dd>${esc(a.root_cause) || '–'}</dd>
      <dt>remediation</dt><dd>${(a.remediation || []).length ? '<ol>' + a.remediation.map((x) => `<li>${esc(x)}</li>`).join('') + '</ol>' : '–'}</dd>
      <dt>trace id</dt><dd><code>${esc(c.trace_id) || '–'}</code></dd>
      <dt>region / window</dt><dd>${esc(c.region) || '–'} / ${esc(c.time_window) || '–'}</dd>
      <dt>related</dt><dd>${(a.related_alerts || []).map((x) => `<a href="#alert/${esc(x)}">${esc(x)}</a>`).join(', ') || '–'}</dd>
      <dt>runbook</dt><dd>${a.runbook_url ? `<a href="${esc(a.runbook_url)}" rel="noopener">${esc(a.runbook_url)}</a>` : '–'}</dd>
      <dt>alert id</dt><dd><code>${esc(a.alert_id)}</code></dd>
    </dl>`;
}

// ---------------------------------------------------------------- history

const TYPES = ['latency_spike', 'token_spike', 'cost_spike', 'cost_drift', 'error_rate', 'throughput_drop'];

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

async function renderHistory() {
  const now = Date.now();
  view().innerHTML = `<h2>History</h2>
    <form class="filters" id="hist-form">
      <label>from <input type="datetime-local" name="start" value="${toLocalInput(now - 7 * 86400000)}"></label>
      <label>to <input type="datetime-local" name="end" value="${toLocalInput(now + 60000)}"></label>
      <label>service <input name="service" size="14"></label>
      <label>model <input name="model" size="14"></label>
      <label>severity <select name="severity"><option value="">all</option>${SEVERITIES.map((s) => `<option>${s}</option>`).join('')}</select></label>
      <label>status <select name="status"><option value="">all</option><option>firing</option><option>resolved</option></select></label>
      <label>type <select name="anomaly_type"><option value="">all</option>${TYPES.map((s) => `<option>${s}</option>`).join('')}</select></label>
      <label>per <select name="bucket"><option value="day">day</option><option value="week">week</option></select></label>
      <button type="submit">Apply</button>
    </form>
    <p class="error" id="hist-error"></p>
    <div class="chart" id="hist-chart"></div>
    <div class="cols"><section><h2>Top services</h2><table id="top-services"></table></section>
      <section><h2>Top models</h2><table id="top-models"></table></section></div>
    <h2>Anomalies</h2><table id="hist-table"></table>`;
  $('#hist-form').addEventListener('submit', (e) => { e.preventDefault(); loadHistory(); });
  await loadHistory();
}

async function loadHistory() {
  const f = new FormData($('#hist-form'));
  const p = new URLSearchParams();
  for (const k of ['start', 'end']) if (f.get(k)) p.set(k, String(Math.floor(new Date(f.get(k)).getTime() / 1000)));
  for (const k of ['service', 'model', 'severity', 'status', 'anomaly_type']) if (f.get(k)) p.set(k, f.get(k));
  p.set('limit', '1000');
  const r = await api(`/api/v1/anomalies?${p}`);
  $('#hist-error').textContent = r.ok ? '' : r.body?.error || `HTTP ${r.status}`;
  const list = r.ok ? r.body.anomalies || [] : [];
  const week = f.get('bucket') === 'week';
  const buckets = new Map();
  for (const a of list) {
    const d = new Date(a.timestamp);
    d.setHours(0, 0, 0, 0);
    if (week) d.setDate(d.getDate() - ((d.getDay() + 6) % 7));
    const k = d.getTime() / 1000;
    buckets.set(k, (buckets.get(k) || 0) + 1);
  }
  const xs = [...buckets.keys()].sort((a, b) => a - b);
  const chart = $('#hist-chart');
  chart.innerHTML = '';
  if (xs.length && typeof window.uPlot === 'function') {
    new window.uPlot({
      title: `anomalies per ${week ? 'week' : 'day'} (${list.length}${r.body?.total > list.length ? ' of ' + r.body.total : ''})`,
      width: Math.min(1100, chart.clientWidth - 20 || 800), height: 200, scales: { x: { time: true } },
      series: [{}, { label: 'anomalies', stroke: '#3a7bd5', fill: 'rgba(58,123,213,0.35)', paths: window.uPlot.paths.bars({ size: [0.6, 60] }) }],
    }, [xs, xs.map((k) => buckets.get(k))], chart);
  } else {
    chart.innerHTML = `<p class="note">${list.length} anomalies in range.</p>`;
  }
  const top = (key) => {
    const m = new Map();
    for (const a of list) m.set(a[key], (m.get(a[key]) || 0) + 1);
    return [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10);
  };
  $('#top-services').innerHTML = '<tr><th>service</th><th>anomalies</th></tr>' + top('service_name').map(([k, n]) => `<tr><td>${esc(k)}</td><td>${n}</td></tr>`).join('');
  $('#top-models').innerHTML = '<tr><th>model</th><th>anomalies</th></tr>' + top('model').map(([k, n]) => `<tr><td>${esc(k)}</td><td>${n}</td></tr>`).join('');
  $('#hist-table').innerHTML = '<tr><th>time</th><th>severity</th><th>type</th><th>service / model</th><th>metric</th><th>value</th><th>status</th></tr>' +
    list.slice(0, 200).map((a) => `<tr><td><a href="#alert/${esc(a.alert_id)}">${fmtTime(a.timestamp)}</a></td><td>${sevBadge(a.severity)}</td><td>${esc(a.anomaly_type)}</td>
      <td><a href="${pairHref(a.service_name, a.model)}">${esc(a.service_name)} / ${esc(a.model)}</a></td><td>${esc(a.details?.metric)}</td><td>${fmtNum(a.details?.value)}</td><td>${esc(a.status)}</td></tr>`).join('');
}

// ---------------------------------------------------------------- configuration

function flatten(obj, prefix = '', out = []) {
  for (const [k, v] of Object.entries(obj)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, p, out);
    else out.push([p, v]);
  }
  return out;
}

async function renderConfig() {
  const r = await api('/api/v1/config');
  if (!r.ok) { view().innerHTML = `<p class="error">${esc(r.body?.error)}</p>`; return; }
  const cfg = r.body.config || r.body;
  const rows = flatten(cfg);
  view().innerHTML = `<h2>Configuration</h2>
    <p class="note">Thresholds and other settings as running. Change values and save: the aggregator validates every
    change and applies all or none (POST /api/v1/config); settings that need a restart are refused.</p>
    <p><button id="cfg-save">Save changes</button> <span id="cfg-result"></span></p>
    <input id="cfg-filter" placeholder="filter settings, e.g. zscore" size="30">
    <table id="cfg-table"><tr><th>setting</th><th>value</th></tr>
    ${rows.map(([k, v]) => `<tr data-key="${esc(k)}"><td><code>${esc(k)}</code></td><td><input name="${esc(k)}" data-orig="${esc(JSON.stringify(v))}" value="${esc(Array.isArray(v) ? v.join(',') : v)}" size="40"></td></tr>`).join('')}
    </table>`;
  $('#cfg-filter').addEventListener('input', (e) => {
    const q = e.target.value.toLowerCase();
    for (const tr of document.querySelectorAll('#cfg-table tr[data-key]')) tr.hidden = !tr.dataset.key.toLowerCase().includes(q);
  });
  $('#cfg-save').addEventListener('click', async () => {
    const changes = {};
    for (const inp of document.querySelectorAll('#cfg-table input')) {
      const orig = JSON.parse(inp.dataset.orig);
      const shown = Array.isArray(orig) ? orig.join(',') : String(orig);
      if (inp.value === shown) continue;
      let v = inp.value;
      if (typeof orig === 'number') v = v.trim() === '' ? v : Number.isNaN(Number(v)) ? v : Number(v);
      else if (typeof orig === 'boolean') v = v === 'true' ? true : v === 'false' ? false : v;
      else if (Array.isArray(orig)) v = v ? v.split(',') : [];
      changes[inp.name] = v;
    }
    const out = $('#cfg-result');
    if (!Object.keys(changes).length) { out.className = 'note'; out.textContent = 'Nothing changed.'; return; }
    const res = await api('/api/v1/config', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(changes) });
    if (res.ok) {
      out.className = 'ok';
      out.textContent = `Applied ${res.body.applied ?? Object.keys(changes).length} setting(s).`;
      for (const [k, v] of Object.entries(changes)) {
        const inp = document.querySelector(`#cfg-table input[name="${CSS.escape(k)}"]`);
        if (inp) inp.dataset.orig = JSON.stringify(v);
      }
    } else {
      out.className = 'error';
      out.textContent = res.body?.error || `HTTP ${res.status}`;
    }
  });
}

// ---------------------------------------------------------------- routing

let current = '';

async function route() {
  const h = decodeURIComponent(location.hash.slice(1) || 'overview');
  const [name, ...rest] = location.hash.slice(1).split('/');
  current = name || 'overview';
  drillKey = null;
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.view === current);
  try {
    if (current === 'drill' && rest.length >= 2) await renderDrill(decodeURIComponent(rest[0]), decodeURIComponent(rest.slice(1).join('/')));
    else if (current === 'alert' && rest[0]) await renderAlert(decodeURIComponent(rest[0]));
    else if (current === 'history') await renderHistory();
    else if (current === 'config') await renderConfig();
    else { current = 'overview'; await renderOverview(); }
    document.body.dataset.ready = h;
  } catch (e) {
    if (e instanceof AuthError) { view().innerHTML = '<p class="note">Waiting for the API token.</p>'; return; }
    view().innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

window.addEventListener('hashchange', route);
liveStatus();
connectLive();
route();
// Rows older than an hour leave the stream.
setInterval(() => { if (current === 'overview') renderStream(); }, 60000);
// Delivery counters and delays change without alerts: the overview's numbers every 5 s.
setInterval(() => { if (current === 'overview' && !document.hidden) refreshOverviewNumbers().catch(() => {}); }, 5000);
