// Devices: the fleet table with live state, a device's page (free-heap
// chart, ML findings, commands, events) and key management.

import { h, replace, toast, errorText, ago, when, bytes, confirmDialog, formDialog, secretDialog, loading, failure } from './dom.js';
import { api } from './session.js';
import * as socket from './socket.js';
import { Type } from './protocol.js';

const live = new Map(); // device id -> latest device_state frame
const listeners = new Set(); // views wanting live frames

// startDevices listens for the owner's live device frames.
export function startDevices() {
  socket.on(Type.DeviceState, (f) => { live.set(f.device, f); notify(f); });
  socket.on(Type.CommandStatus, notify);
  socket.on(Type.DeviceAlert, (f) => {
    if (f.state === 'cleared') toast(`${f.name}: the memory leak alert is cleared. ${f.reason || ''}`, 'info');
    else toast(`${f.name}: memory leak suspected (${Number(f.confidence).toFixed(1)} % confidence), about ${Math.round(f.hours_to_exhaustion)} h until free heap runs out. ${f.reason || ''}`, 'error');
    notify(f);
  });
}

function notify(f) { for (const fn of listeners) fn(f); }

function listen(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const path = (id, rest = '') => `/api/v1/devices/${encodeURIComponent(id)}${rest}`;

function stateOf(d) {
  const l = live.get(d.id);
  // A live frame newer than the fetched view wins.
  if (l && (!d.fetched_at || new Date(l.at) >= d.fetched_at)) return l.state;
  return d.state;
}

function stateBadge(state, revoked) {
  return h('span', { class: `state state-${state}`, 'data-testid': 'device-state' }, state,
    revoked ? h('span', { class: 'tag' }, 'revoked') : null);
}

async function register() {
  const res = await formDialog('Register a device', [
    { name: 'name', label: 'Name', required: true, maxlength: 64 },
    { name: 'type', label: 'Type (letters, digits, . _ : -)', required: true, value: 'esp32', maxlength: 32 },
  ], 'Register', (v) => api('POST', '/api/v1/devices', { name: v.name.trim(), type: v.type.trim() }));
  if (!res) return null;
  await secretDialog('Device key', `This is the API key of “${res.device.name}”. It is shown only once: copy it into the device's configuration now.`, res.api_key);
  return res.device;
}

// devicesView is the fleet table.
export function devicesView(root) {
  let devices = [];
  const body = h('tbody');
  const table = h('table', { class: 'grid', 'data-testid': 'fleet' },
    h('thead', {}, h('tr', {}, ['Name', 'Type', 'State', 'Last seen', 'Connected since', 'Reboots', 'Free heap'].map((t, i) => h('th', { scope: 'col', class: i >= 5 ? 'num' : null }, t)))),
    body);
  const summary = h('p', { class: 'muted', role: 'status' });
  const content = h('div', {}, loading());
  replace(root, h('section', { class: 'page wide' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Devices'), h('div', { class: 'spacer' }),
      h('button', { type: 'button', class: 'primary', onclick: async () => { try { if (await register()) await load(); } catch (e) { toast(errorText(e), 'error'); } } }, 'Register device')),
    summary, content));

  function render() {
    const counts = { online: 0, stale: 0, offline: 0 };
    replace(body, devices.map((d) => {
      const st = stateOf(d);
      counts[st] = (counts[st] || 0) + 1;
      const l = live.get(d.id);
      return h('tr', { dataset: { device: d.id } },
        h('th', { scope: 'row' }, h('a', { href: `#/devices/${encodeURIComponent(d.id)}` }, d.name)),
        h('td', {}, d.type),
        h('td', {}, stateBadge(st, d.revoked)),
        h('td', { title: when(l?.last_seen || d.last_seen) }, ago(l?.last_seen || d.last_seen)),
        h('td', {}, st === 'offline' ? '—' : when(d.connected_since)),
        h('td', { class: 'num' }, d.reboots),
        h('td', { class: 'num' }, bytes(d.free_heap)));
    }));
    summary.textContent = devices.length
      ? `${devices.length} devices: ${counts.online} online, ${counts.stale} stale, ${counts.offline} offline.` : '';
    if (!devices.length) replace(content, h('p', { class: 'empty' }, 'No devices yet. Register one to get its API key.'));
    else if (!table.isConnected) replace(content, h('div', { class: 'table-wrap' }, table));
  }

  async function load() {
    try {
      const all = [];
      let after = '';
      for (;;) {
        const page = await api('GET', `/api/v1/devices?limit=500${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        const at = new Date();
        for (const d of page.devices) d.fetched_at = at;
        all.push(...page.devices);
        if (page.devices.length < 500) break;
        after = page.devices[page.devices.length - 1].id;
      }
      devices = all;
      render();
    } catch (err) {
      replace(content, failure(err, load));
    }
  }
  load();
  // State changes arrive live; heap and reboots come with heartbeats,
  // which are not pushed, so the table also refreshes every 15 s.
  const poll = setInterval(load, 15000);
  const off = listen((f) => {
    if (f.type !== Type.DeviceState) return;
    if (devices.some((d) => d.id === f.device)) render(); else load();
  });
  const reconnected = socket.on(Type.Welcome, load);
  return () => { clearInterval(poll); off(); reconnected(); };
}

// deviceView is one device's page.
export function deviceView(root, id) {
  let device = null;
  let range = '6h';
  const head = h('div', { class: 'page-head' });
  const facts = h('dl', { class: 'facts' });
  const chart = h('div', { class: 'chart', 'data-testid': 'heap-chart' }, loading());
  const analysis = h('div', { 'data-testid': 'analysis' }, loading());
  const commands = h('div', { 'data-testid': 'commands' }, loading());
  const events = h('div', {}, loading());
  const ranges = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time range' });
  replace(root, h('section', { class: 'page wide' },
    h('p', {}, h('a', { href: '#/devices' }, '← All devices')),
    head, facts,
    h('div', { class: 'cards' },
      h('section', { class: 'card span2' }, h('div', { class: 'page-head' }, h('h2', {}, 'Free heap'), h('div', { class: 'spacer' }), ranges), chart),
      h('section', { class: 'card' }, h('h2', {}, 'Analysis'), analysis),
      h('section', { class: 'card' }, h('h2', {}, 'Commands'), commandForm(), commands),
      h('section', { class: 'card span2' }, h('h2', {}, 'Events'), events))));

  function renderRanges() {
    replace(ranges, ['1h', '6h', '48h', '30d'].map((r) => h('button', {
      type: 'button', 'aria-pressed': r === range ? 'true' : 'false',
      onclick: () => { range = r; renderRanges(); loadHeap(); },
    }, r)));
  }
  renderRanges();

  function renderHead() {
    const st = stateOf(device);
    replace(head,
      h('h1', {}, device.name),
      stateBadge(st, device.revoked),
      h('div', { class: 'spacer' }),
      !device.revoked && h('button', { type: 'button', onclick: rotate }, 'Rotate key'),
      !device.revoked && h('button', { type: 'button', class: 'danger', onclick: revoke }, 'Revoke'));
    const l = live.get(device.id);
    replace(facts,
      fact('ID', h('code', {}, device.id)), fact('Type', device.type),
      fact('Last seen', `${ago(l?.last_seen || device.last_seen)}`),
      fact('Connected since', st === 'offline' ? '—' : when(device.connected_since)),
      fact('Uptime', duration(device.uptime)),
      fact('Reboots', device.reboots), fact('Free heap', bytes(device.free_heap)),
      fact('Key created', when(device.key_created_at)));
  }

  async function loadDevice() {
    try {
      device = (await api('GET', path(id))).device;
      device.fetched_at = new Date();
      renderHead();
    } catch (err) {
      replace(root, h('section', { class: 'page' }, h('p', {}, h('a', { href: '#/devices' }, '← All devices')), failure(err, loadDevice)));
      throw err;
    }
  }

  async function loadHeap() {
    const hours = { '1h': 1, '6h': 6, '48h': 48, '30d': 720 }[range];
    const res = hours > 48 ? 'hour' : 'minute';
    const since = new Date(Date.now() - hours * 3600e3).toISOString();
    try {
      const data = await api('GET', path(id, `/heap?res=${res}&since=${encodeURIComponent(since)}&limit=5000`));
      replace(chart, heapChart(data.points, Date.now() - hours * 3600e3, Date.now(), chart.clientWidth));
    } catch (err) { replace(chart, failure(err, loadHeap)); }
  }

  async function loadAnalysis() {
    try {
      const a = (await api('GET', path(id, '/analysis'))).analysis;
      replace(analysis, analysisView(a));
    } catch (err) {
      replace(analysis, err.status === 503
        ? h('p', { class: 'muted' }, 'Analysis is unavailable: the server runs without ML workers.')
        : failure(err, loadAnalysis));
    }
  }

  let cmdList = [];
  async function loadCommands() {
    try {
      cmdList = (await api('GET', path(id, '/commands?limit=20'))).commands;
      renderCommands();
    } catch (err) { replace(commands, failure(err, loadCommands)); }
  }
  function renderCommands() {
    if (!cmdList.length) { replace(commands, h('p', { class: 'muted' }, 'No commands sent yet.')); return; }
    replace(commands, h('ul', { class: 'commands', 'data-testid': 'command-list' }, cmdList.map((c) => h('li', { dataset: { command: c.id } },
      h('div', {}, h('code', {}, c.command), ' ', h('span', { class: `status status-${c.status}`, 'data-testid': 'command-status' }, c.status),
        ' ', h('span', { class: 'muted', title: when(c.created_at) }, ago(c.created_at))),
      c.result && h('pre', { class: 'result' }, JSON.stringify(c.result)),
      c.error && h('p', { class: 'form-error' }, c.error)))));
  }

  // mergeCommand adds or updates a command. The device may answer before
  // the POST that created the command returns, so a status never moves
  // back to an earlier one.
  function mergeCommand(c) {
    const rank = { queued: 0, delivered: 1 };
    const old = cmdList.find((x) => x.id === c.id);
    if (old && (rank[old.status] ?? 2) > (rank[c.status] ?? 2)) return;
    cmdList = [c, ...cmdList.filter((x) => x.id !== c.id)]
      .sort((a, b) => new Date(b.created_at) - new Date(a.created_at)).slice(0, 20);
    renderCommands();
  }

  function commandForm() {
    const form = h('form', { class: 'stack' },
      h('div', { class: 'row' },
        h('label', { class: 'grow' }, 'Command', h('input', { name: 'command', required: true, maxlength: 64, pattern: '[A-Za-z0-9._:\\-]+', placeholder: 'reboot', 'data-testid': 'command-name' })),
        h('label', {}, 'Type', h('select', { name: 'type' }, [Type.Command, Type.Config, Type.OTA].map((t) => h('option', { value: t }, t))))),
      h('label', {}, 'Parameters (JSON, optional)', h('textarea', { name: 'params', rows: 2, placeholder: '{"delay": 5}' })),
      h('button', { type: 'submit', class: 'primary' }, 'Send command'));
    const err = h('p', { class: 'form-error', role: 'alert' });
    form.append(err);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.textContent = '';
      const v = Object.fromEntries(new FormData(form));
      const body = { command: v.command.trim(), type: v.type };
      if (v.params.trim()) {
        try { body.params = JSON.parse(v.params); } catch { err.textContent = 'Parameters must be valid JSON.'; return; }
      }
      try {
        mergeCommand((await api('POST', path(id, '/commands'), body)).command);
        form.elements.command.value = '';
      } catch (e2) { err.textContent = errorText(e2); }
    });
    return form;
  }

  async function loadEvents() {
    try {
      const list = (await api('GET', path(id, '/events?limit=30'))).events;
      replace(events, list.length ? h('ul', { class: 'events' }, list.map((ev) => h('li', {},
        h('span', { class: 'muted', title: when(ev.at) }, ago(ev.at)), ' ', h('code', {}, ev.action),
        ev.ip && h('span', { class: 'muted' }, ` from ${ev.ip}`),
        ev.detail && h('span', { class: 'muted' }, ` ${ev.detail}`)))) : h('p', { class: 'muted' }, 'No events.'));
    } catch (err) { replace(events, failure(err, loadEvents)); }
  }

  async function rotate() {
    if (!await confirmDialog('Rotate key', 'The current key stops working at once and the device is disconnected until it has the new key.', 'Rotate')) return;
    try {
      const res = await api('POST', path(id, '/rotate-key'));
      await secretDialog('New device key', 'Shown only once: copy it into the device\'s configuration now.', res.api_key);
      loadDevice(); loadEvents();
    } catch (err) { toast(errorText(err), 'error'); }
  }

  async function revoke() {
    if (!await confirmDialog('Revoke device', `Revoke “${device.name}”? Its key stops working and it is disconnected. This cannot be undone.`, 'Revoke')) return;
    try {
      await api('DELETE', path(id));
      toast(`${device.name} was revoked.`);
      loadDevice(); loadEvents();
    } catch (err) { toast(errorText(err), 'error'); }
  }

  loadDevice().then(() => { loadHeap(); loadAnalysis(); loadCommands(); loadEvents(); }, () => {});
  const off = listen((f) => {
    if (f.device !== id) return;
    if (f.type === Type.DeviceState && device) { loadDevice(); loadEvents(); }
    if (f.type === Type.CommandStatus) mergeCommand(f.command);
    if (f.type === Type.DeviceAlert) loadAnalysis();
  });
  const poll = setInterval(() => { if (device) { loadDevice(); loadHeap(); } }, 30000);
  return () => { off(); clearInterval(poll); };
}

// duration formats seconds as "3 d 4 h", "5 h 12 min" or "7 min".
function duration(s) {
  if (!s) return '—';
  const m = Math.floor(s / 60); const hr = Math.floor(m / 60); const d = Math.floor(hr / 24);
  if (d) return `${d} d ${hr % 24} h`;
  if (hr) return `${hr} h ${m % 60} min`;
  return `${m} min`;
}

function fact(label, value) { return [h('dt', {}, label), h('dd', {}, value)]; }

function analysisView(a) {
  const heap = a.heap;
  const out = [];
  if (a.heap_error) out.push(h('p', { class: 'muted' }, `Heap trend: ${a.heap_error}`));
  else if (!heap) out.push(h('p', { class: 'muted' }, `Not enough heap data yet (${a.heap_points || 0} points).`));
  else {
    const leak = heap.leak;
    const judged = heap.evidence !== 'insufficient';
    out.push(h('p', { class: leak ? 'finding bad' : (judged ? 'finding good' : 'muted'), 'data-testid': 'leak' },
      leak ? 'Memory leak suspected' : (judged ? 'No memory leak detected' : 'Too early to judge')));
    if (heap.reason) out.push(h('p', { class: 'small', 'data-testid': 'leak-reason' }, heap.reason));
    out.push(h('dl', { class: 'facts small' },
      fact('Trend', heap.slope_bytes_per_hour != null ? `${bytes(Math.round(heap.slope_bytes_per_hour))} per hour` : '—'),
      fact('Time to exhaustion', heap.hours_to_exhaustion != null && isFinite(heap.hours_to_exhaustion) ? `${heap.hours_to_exhaustion.toFixed(1)} h` : '—'),
      fact('Confidence', judged && heap.confidence != null ? `${Number(heap.confidence).toFixed(1)} %` : '—'),
      fact('Points used', heap.points_used ?? a.heap_points)));
  }
  const anomalies = collectAnomalies(a.telemetry);
  out.push(h('h3', {}, 'Telemetry anomalies'));
  out.push(anomalies.length
    ? h('ul', { class: 'events' }, anomalies.slice(0, 10).map((x) => h('li', {},
      h('code', {}, x.metric), ` = ${x.value} `, h('span', { class: 'muted' }, `(score ${Number(x.score).toFixed(1)}${x.ts ? `, ${when(new Date(x.ts * 1000).toISOString())}` : ''})`))))
    : h('p', { class: 'muted' }, a.telemetry ? 'None found.' : 'No numeric telemetry yet.'));
  out.push(h('p', { class: 'muted small' }, `Analysed ${ago(a.at)}.`));
  return out;
}

// collectAnomalies flattens the telemetry-anomaly answer, which is either
// per metric ({"metrics":{name:{anomalies:[…]}}}) or one series.
function collectAnomalies(t) {
  if (!t || typeof t !== 'object') return [];
  const out = [];
  const take = (metric, list) => {
    for (const x of list || []) out.push({ metric, value: x.value, score: x.score ?? x.z ?? x.modified_z, ts: x.ts });
  };
  if (t.metrics && typeof t.metrics === 'object') {
    for (const [name, r] of Object.entries(t.metrics)) take(name, r && r.anomalies);
  } else take('value', t.anomalies);
  return out.sort((a, b) => Math.abs(b.score) - Math.abs(a.score));
}

// heapChart draws the per-bucket average as a line over a min–max band.
// width is the container's, so that text keeps its size on any screen.
function heapChart(points, from, to, width) {
  if (!points.length) return h('p', { class: 'muted' }, 'No heap samples in this period.');
  const W = Math.max(280, width || 720); const H = 220; const L = 64; const R = 8; const T = 10; const B = 24;
  const lo = Math.min(...points.map((p) => p.min));
  const hi = Math.max(...points.map((p) => p.max));
  const pad = Math.max(1, (hi - lo) * 0.1);
  const y0 = Math.max(0, lo - pad); const y1 = hi + pad;
  const x = (t) => L + ((new Date(t).getTime() - from) / (to - from)) * (W - L - R);
  const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const fmt = (n) => n.toFixed(1);
  const band = points.map((p) => `${fmt(x(p.start))},${fmt(y(p.max))}`).join(' ')
    + ' ' + points.slice().reverse().map((p) => `${fmt(x(p.start))},${fmt(y(p.min))}`).join(' ');
  const line = points.map((p) => `${fmt(x(p.start))},${fmt(y(p.avg))}`).join(' ');
  const ticks = [y0, (y0 + y1) / 2, y1];
  const last = points[points.length - 1];
  return h('figure', {},
    h('svg:svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Free heap from ${bytes(lo)} to ${bytes(hi)}; latest ${bytes(Math.round(last.avg))}` },
      ticks.map((v) => [
        h('svg:line', { x1: L, x2: W - R, y1: fmt(y(v)), y2: fmt(y(v)), class: 'gridline' }),
        h('svg:text', { x: L - 6, y: fmt(y(v) + 4), 'text-anchor': 'end', class: 'axis' }, bytes(Math.round(v))),
      ]),
      h('svg:text', { x: L, y: H - 6, class: 'axis' }, new Date(from).toLocaleString()),
      h('svg:text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'axis' }, 'now'),
      points.length > 1 && h('svg:polygon', { points: band, class: 'band' }),
      h('svg:polyline', { points: line, class: 'line' }),
      points.length === 1 && h('svg:circle', { cx: fmt(x(last.start)), cy: fmt(y(last.avg)), r: 3, class: 'pointmark' })),
    h('figcaption', { class: 'muted' }, `${points.length} buckets; latest average ${bytes(Math.round(last.avg))}.`));
}
