// Administration: users, live connections, the audit log, ML workers.

import { h, replace, toast, errorText, ago, when, bytes, confirmDialog, formDialog, loading, failure } from './dom.js';
import { api, current } from './session.js';

const TABS = [['users', 'Users'], ['connections', 'Connections'], ['audit', 'Audit log'], ['ml', 'ML workers']];

// adminView mounts the admin page on one of its tabs.
export function adminView(root, tab) {
  const content = h('div');
  replace(root, h('section', { class: 'page wide' },
    h('h1', {}, 'Administration'),
    h('nav', { class: 'tabs', 'aria-label': 'Administration' }, TABS.map(([id, label]) => h('a', {
      href: `#/admin/${id}`, 'aria-current': id === tab ? 'page' : null,
    }, label))),
    content));
  switch (tab) {
    case 'connections': return connections(content);
    case 'audit': return audit(content);
    case 'ml': return mlWorkers(content);
    default: return users(content);
  }
}

function table(headers, rows) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows)));
}

function users(root) {
  let list = [];
  let more = false;
  const body = h('div', {}, loading());
  const filter = h('select', { 'aria-label': 'Show' },
    h('option', { value: '' }, 'All users'), h('option', { value: 'false' }, 'Active'), h('option', { value: 'true' }, 'Disabled'));
  filter.addEventListener('change', () => load(true));
  replace(root,
    h('div', { class: 'page-head' }, filter, h('div', { class: 'spacer' }),
      h('button', { type: 'button', class: 'primary', onclick: create }, 'Create user')),
    body);

  async function load(reset) {
    const after = reset || !list.length ? '' : list[list.length - 1].id;
    try {
      const q = new URLSearchParams({ limit: '100' });
      if (after) q.set('after', after);
      if (filter.value) q.set('disabled', filter.value);
      const page = (await api('GET', `/api/v1/admin/users?${q}`)).users;
      list = reset ? page : [...list, ...page];
      more = page.length === 100;
      render();
    } catch (err) { replace(body, failure(err, () => load(true))); }
  }

  function render() {
    replace(body, table(['Name', 'Role', 'Status', 'Created', ''], list.map((u) => h('tr', { dataset: { user: u.id } },
      h('th', { scope: 'row' }, u.name, u.display_name && u.display_name !== u.name ? h('span', { class: 'muted' }, ` (${u.display_name})`) : null),
      h('td', {}, u.role),
      h('td', {}, u.disabled ? h('span', { class: 'tag warn' }, 'disabled') : 'active'),
      h('td', { title: when(u.created_at) }, ago(u.created_at)),
      h('td', { class: 'row-actions' }, actions(u))))),
    more && h('button', { type: 'button', onclick: () => load(false) }, 'Load more'));
  }

  // actions offers only what can apply: nothing on one's own row (the
  // account page changes one's own password; nobody disables themselves),
  // no password for a service account (bots never sign in with one).
  function actions(u) {
    if (u.id === current()?.user?.id) return h('span', { class: 'muted' }, 'you');
    return [
      h('button', { type: 'button', class: 'small', onclick: () => toggle(u) }, u.disabled ? 'Enable' : 'Disable'),
      u.role !== 'bot' && h('button', { type: 'button', class: 'small', onclick: () => reset(u) }, 'Reset password'),
    ];
  }

  async function toggle(u) {
    const verb = u.disabled ? 'enable' : 'disable';
    if (!u.disabled && !await confirmDialog('Disable user', `Disable ${u.name}? Their sessions and connections end at once.`, 'Disable')) return;
    try {
      await api('POST', `/api/v1/admin/users/${encodeURIComponent(u.id)}/${verb}`);
      toast(`${u.name} is ${verb}d.`);
      load(true);
    } catch (err) { toast(errorText(err), 'error'); }
  }

  async function reset(u) {
    const done = await formDialog(`Reset the password of ${u.name}`, [
      { name: 'password', label: 'New password (at least 8 characters)', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' },
    ], 'Reset', (v) => api('PUT', `/api/v1/admin/users/${encodeURIComponent(u.id)}/password`, { password: v.password }).then(() => true));
    if (done) toast(`Password of ${u.name} reset; their sessions ended.`);
  }

  async function create() {
    const res = await formDialog('Create user', [
      { name: 'name', label: 'Name', required: true, maxlength: 32 },
      { name: 'password', label: 'Initial password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' },
      { name: 'role', label: 'Role', type: 'select', options: ['member', 'admin'] },
    ], 'Create', (v) => api('POST', '/api/v1/admin/users', v));
    if (res) { toast(`${res.user.name} created.`); load(true); }
  }

  load(true);
}

function connections(root) {
  const body = h('div', {}, loading());
  const count = h('p', { class: 'muted', role: 'status' });
  replace(root, h('div', { class: 'page-head' }, count, h('div', { class: 'spacer' }),
    h('button', { type: 'button', onclick: () => load() }, 'Refresh')), body);
  async function load() {
    try {
      const res = await api('GET', '/api/v1/admin/connections');
      const list = res.connections.sort((a, b) => new Date(b.connected_at) - new Date(a.connected_at));
      count.textContent = `${res.count} live connections on this node.`;
      replace(body, table(['Identity', 'Kind', 'Address', 'Connected', 'Last activity', 'In / out', 'Queued', ''], list.map((c) => h('tr', {},
        h('th', { scope: 'row' }, c.identity_name || c.identity_id),
        h('td', {}, c.kind),
        h('td', { title: c.user_agent || '' }, c.remote_addr),
        h('td', { title: when(c.connected_at) }, ago(c.connected_at)),
        h('td', { title: when(c.last_activity) }, ago(c.last_activity)),
        h('td', { class: 'num' }, `${c.messages_in} / ${c.messages_out} (${bytes(c.bytes_in)} / ${bytes(c.bytes_out)})`),
        h('td', { class: 'num' }, bytes(c.queued_bytes)),
        h('td', {}, h('button', { type: 'button', class: 'small danger', onclick: () => kick(c) }, 'Disconnect'))))));
    } catch (err) { replace(body, failure(err, load)); }
  }
  async function kick(c) {
    if (!await confirmDialog('Disconnect', `End this connection of ${c.identity_name || c.identity_id}? It will not reconnect by itself.`, 'Disconnect')) return;
    try { await api('DELETE', `/api/v1/admin/connections/${encodeURIComponent(c.session)}`); load(); } catch (err) { toast(errorText(err), 'error'); }
  }
  load();
  const t = setInterval(load, 10000);
  return () => clearInterval(t);
}

function audit(root) {
  let events = [];
  const body = h('div', {}, loading());
  const input = (name, label, placeholder, type = 'text') => h('label', {}, label, h('input', { name, placeholder, type }));
  const form = h('form', { class: 'filters' },
    input('action', 'Action', 'login. or user.disabled'),
    input('actor', 'Actor (user id)', 'usr_…'),
    input('target', 'Target', 'usr_… / dev_…'),
    input('since', 'Since', '', 'datetime-local'),
    input('until', 'Until', '', 'datetime-local'),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'));
  form.addEventListener('submit', (e) => { e.preventDefault(); load(true); });
  replace(root, form, body);

  function query(before) {
    const q = new URLSearchParams({ limit: '100' });
    const v = Object.fromEntries(new FormData(form));
    for (const k of ['action', 'actor', 'target']) if (v[k].trim()) q.set(k, v[k].trim());
    for (const k of ['since', 'until']) if (v[k]) q.set(k, new Date(v[k]).toISOString());
    if (before) q.set('before', String(before));
    return q;
  }
  async function load(reset) {
    try {
      const before = reset || !events.length ? 0 : events[events.length - 1].id;
      const page = (await api('GET', `/api/v1/admin/audit?${query(before)}`)).events;
      events = reset ? page : [...events, ...page];
      replace(body, events.length ? table(['Time', 'Action', 'Actor', 'Target', 'Address', 'Detail'], events.map((ev) => h('tr', {},
        h('td', {}, when(ev.at)), h('td', {}, h('code', {}, ev.action)), h('td', { title: ev.actor_id || '' }, ev.actor_name || ev.actor_id || '—'),
        h('td', {}, ev.target || '—'), h('td', {}, ev.ip || '—'), h('td', { class: 'detail' }, ev.detail || '')))) : h('p', { class: 'empty' }, 'No events match.'),
      page.length === 100 && h('button', { type: 'button', onclick: () => load(false) }, 'Older events'));
    } catch (err) { replace(body, failure(err, () => load(true))); }
  }
  load(true);
}

function mlWorkers(root) {
  const body = h('div', {}, loading());
  replace(root, body);
  const ms = (ns) => (ns ? `${(ns / 1e6).toFixed(1)} ms` : '—');
  async function load() {
    try {
      const { workers } = await api('GET', '/api/v1/admin/ml/workers');
      replace(body, workers.length ? table(['Worker', 'State', 'PID', 'Up', 'Restarts', 'Calls', 'Errors', 'In flight', 'p50 / p99', 'Last error'], workers.map((w) => h('tr', {},
        h('th', { scope: 'row' }, `#${w.index}`), h('td', {}, h('span', { class: `state state-${w.state === 'ready' ? 'online' : 'stale'}` }, w.state)),
        h('td', { class: 'num' }, w.pid || '—'), h('td', {}, w.uptime_ns ? `${Math.round(w.uptime_ns / 6e10)} min` : '—'),
        h('td', { class: 'num' }, w.restarts), h('td', { class: 'num' }, w.calls), h('td', { class: 'num' }, w.errors), h('td', { class: 'num' }, w.in_flight),
        h('td', {}, `${ms(w.latency_p50_ns)} / ${ms(w.latency_p99_ns)}`), h('td', { class: 'detail' }, w.last_error || ''))))
        : h('p', { class: 'empty' }, 'No workers configured.'));
    } catch (err) {
      replace(body, err.status === 404 ? h('p', { class: 'empty' }, 'This server runs without ML workers (--ml-workers 0).') : failure(err, load));
    }
  }
  load();
  const t = setInterval(load, 5000);
  return () => clearInterval(t);
}
