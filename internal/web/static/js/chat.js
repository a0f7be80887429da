// Chat: conversations, live messages, history, sending with delivery
// states, edits, presence and typing.
//
// Consistency rule (docs/protocol-chat.md): per conversation the app keeps
// the highest seq it has applied and applies only the next one. Anything at
// or below is a duplicate (resume overlap, a second tab's echo); anything
// beyond is a gap, filled from history before going on. Work on one
// conversation runs in a promise chain so these steps never interleave.

import { h, replace, toast, errorText, clock, when, confirmDialog, formDialog, loading, failure } from './dom.js';
import { api } from './session.js';
import * as socket from './socket.js';
import { Resume, Type } from './protocol.js';

const PAGE = 50;
const MAX_BODY = 4000; // code points

let me = null;
const convs = new Map(); // id -> conversation state
const names = new Map(); // identity id -> name
const presence = new Map(); // identity id -> online | away | offline
const outbox = new Map(); // client id -> unsent or unconfirmed message
let listsReady = null; // promise of the first list load
let offs = [];
let view = null; // the mounted chat view
let readTimer = null;
let firstView = true; // the first chat view uses the lists loaded at start

// startChat subscribes to the connection's frames for the signed-in user.
export function startChat(user) {
  me = user;
  names.set(me.id, me.name);
  offs = [
    socket.on(Type.Welcome, () => connected().catch((e) => toast(errorText(e), 'error'))),
    socket.on(Type.Message, onMessage),
    socket.on(Type.Resumed, onResumed),
    socket.on(Type.MessageEdited, (f) => patchMessage(f, { body: f.body, edited_at: f.edited_at })),
    socket.on(Type.MessageDeleted, (f) => patchMessage(f, { body: '', deleted: true })),
    socket.on(Type.Presence, (f) => { presence.set(f.user, f.status); renderPresence(); }),
    socket.on(Type.PresenceSnapshot, (f) => {
      for (const u of f.users) presence.set(u.user, u.status);
      renderPresence();
    }),
    socket.on(Type.Typing, onTyping),
    socket.on(Type.MemberJoined, (f) => memberChanged(f.channel)),
    socket.on(Type.MemberLeft, (f) => memberChanged(f.channel)),
    socket.on(Type.ConversationAdded, (f) => { if (f.member === me.id) loadLists().catch(() => {}); }),
    socket.on(Type.ConversationRemoved, (f) => { if (f.member === me.id) removed(f.channel); }),
    socket.on(Type.ChannelUpdated, (f) => {
      const c = convs.get(f.channel);
      if (c) { c.name = f.name; c.archived = f.archived; renderSidebar(); renderHeader(); }
    }),
  ];
  listsReady = loadLists();
  listsReady.catch(() => {});
  firstView = true;
  restoreOutbox();
  document.addEventListener('visibilitychange', visibility);
}

export function stopChat() {
  for (const off of offs) off();
  offs = [];
  convs.clear(); names.clear(); presence.clear(); outbox.clear();
  sessionStorage.removeItem(OUTBOX_KEY);
  document.removeEventListener('visibilitychange', visibility);
  me = null;
  view = null;
}

function visibility() {
  socket.send({ type: Type.Presence, id: 'vis', status: document.visibilityState === 'visible' ? 'online' : 'away' });
  if (document.visibilityState === 'visible' && view) markRead(convs.get(view.id));
}

// conv returns (creating) the state of a conversation from a list entry.
function upsert(entry) {
  let c = convs.get(entry.id);
  if (!c) {
    c = {
      id: entry.id, loaded: false, messages: [], lastApplied: 0, oldest: 0, hasOlder: false,
      chain: Promise.resolve(), typing: new Map(),
    };
    convs.set(entry.id, c);
  }
  Object.assign(c, {
    kind: entry.kind, name: entry.name, archived: entry.archived, member: entry.member, role: entry.role,
    last_seq: Math.max(c.last_seq || 0, entry.last_seq), last_read_seq: Math.max(c.last_read_seq || 0, entry.last_read_seq),
    members: entry.members || c.members, created_by: entry.created_by,
  });
  if (entry.names) for (const [id, n] of Object.entries(entry.names)) if (n) names.set(id, n);
  return c;
}

// listAll follows a list's pages (next_cursor) to the end.
async function listAll(path, key) {
  const all = [];
  for (let after = '';;) {
    const page = await api('GET', `${path}?limit=500${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    all.push(...page[key]);
    if (!page.next_cursor || page.next_cursor === after) return all;
    after = page.next_cursor;
  }
}

async function loadLists() {
  const [channels, dms] = await Promise.all([listAll('/api/v1/channels', 'channels'), listAll('/api/v1/dms', 'dms')]);
  const seen = new Set();
  for (const e of [...channels, ...dms]) { upsert(e); seen.add(e.id); }
  for (const id of [...convs.keys()]) if (!seen.has(id)) convs.delete(id);
  renderSidebar();
  return true;
}

// enqueue runs fn after the conversation's earlier steps.
function enqueue(c, fn) {
  c.chain = c.chain.then(fn).catch((e) => console.warn('chat step failed', c.id, e));
  return c.chain;
}

// After every (re)connect: refresh the lists, resume what is loaded, and
// resend what was never confirmed (same ids: the server stores each once).
async function connected() {
  await loadLists();
  const positions = {};
  for (const c of convs.values()) if (c.loaded) positions[c.id] = c.lastApplied;
  if (Object.keys(positions).length) {
    try { await socket.request({ type: Type.Resume, positions }, 30000); } catch { /* gaps are filled below */ }
  }
  for (const c of convs.values()) {
    if (c.loaded) enqueue(c, () => (c.last_seq > c.lastApplied ? fill(c) : null));
  }
  for (const p of outbox.values()) if (p.state === 'pending') transmit(p);
}

function apply(c, m) {
  if (m.seq <= c.lastApplied) return 'dup';
  if (m.seq > c.lastApplied + 1) return 'gap';
  c.messages.push(m);
  c.lastApplied = m.seq;
  c.last_seq = Math.max(c.last_seq, m.seq);
  if (m.from_name) names.set(m.from, m.from_name);
  if (m.from === me.id) c.last_read_seq = Math.max(c.last_read_seq, m.seq);
  if (c.typing.delete(m.from)) renderTyping();
  for (const [id, p] of outbox) if (p.message_id === m.message_id) { outbox.delete(id); p.el?.remove(); saveOutbox(); }
  if (view && view.id === c.id) appendMessage(c, m);
  return 'ok';
}

// fill pages the history after the last applied seq until it is complete.
async function fill(c) {
  for (let i = 0; i < 1000; i++) {
    const page = await api('GET', `/api/v1/channels/${encodeURIComponent(c.id)}/messages?after=${c.lastApplied}&limit=200`);
    for (const m of page.messages) apply(c, m);
    if (!page.has_more || !page.messages.length) break;
  }
  countUnread(c);
}

function onMessage(m) {
  const c = convs.get(m.channel);
  if (!c) { loadLists().then(() => convs.has(m.channel) && onMessage(m)).catch(() => {}); return; }
  if (!c.loaded) {
    c.last_seq = Math.max(c.last_seq, m.seq);
    if (m.from === me.id) c.last_read_seq = c.last_seq;
    countUnread(c);
    return;
  }
  enqueue(c, async () => {
    if (apply(c, m) === 'gap') { await fill(c); apply(c, m); }
    countUnread(c);
  });
}

function onResumed(f) {
  const c = convs.get(f.channel);
  if (!c || !c.loaded) return;
  enqueue(c, async () => {
    if (f.recovered) {
      for (const m of f.messages) apply(c, m);
    } else if (f.reason === Resume.NotMember) {
      removed(c.id);
      return;
    }
    c.last_seq = Math.max(c.last_seq, f.last_seq);
    if (c.lastApplied < f.last_seq) await fill(c);
    countUnread(c);
  });
}

function patchMessage(f, patch) {
  const c = convs.get(f.channel);
  if (!c || !c.loaded) return;
  enqueue(c, () => {
    const m = c.messages.find((x) => x.seq === f.seq);
    if (!m) return;
    Object.assign(m, patch);
    if (view && view.id === c.id) {
      const old = view.list.querySelector(`li[data-seq="${m.seq}"]`);
      if (old) old.replaceWith(messageItem(c, m));
    }
  });
}

function onTyping(f) {
  const c = convs.get(f.channel);
  if (!c || f.from === me.id) return;
  if (f.from_name) names.set(f.from, f.from_name);
  c.typing.set(f.from, Date.now() + 5000);
  renderTyping();
  setTimeout(renderTyping, 5100);
}

function removed(id) {
  convs.delete(id);
  renderSidebar();
  if (view && view.id === id) { toast('You are no longer a member of that conversation.'); location.hash = '#/chat'; }
}

function memberChanged(id) {
  if (view && view.id === id && view.membersOpen) renderMembers();
}

function countUnread(c) {
  if (!c) return;
  if (view && view.id === c.id && document.visibilityState === 'visible') markRead(c);
  c.unread = c.member === false ? 0 : Math.max(0, c.last_seq - c.last_read_seq);
  renderSidebar();
}

// markRead tells the server (debounced) how far the user has read.
function markRead(c) {
  if (!c || !c.loaded || c.lastApplied <= c.last_read_seq) return;
  c.last_read_seq = c.lastApplied;
  c.unread = Math.max(0, c.last_seq - c.last_read_seq);
  clearTimeout(readTimer);
  readTimer = setTimeout(() => {
    const seq = c.last_read_seq;
    if (!socket.send({ type: Type.Read, id: `read-${c.id}`, positions: { [c.id]: seq } })) {
      api('POST', `/api/v1/channels/${encodeURIComponent(c.id)}/read`, { seq }).catch(() => {});
    }
  }, 400);
  renderSidebar();
}

// ---- sending ----

// The outbox survives a reload of the tab (sessionStorage is per tab), so
// a message written offline is still sent; its id makes the server store
// it once however often it is resent.
const OUTBOX_KEY = 'unhidra.outbox';

function saveOutbox() {
  const keep = [...outbox.values()].filter((p) => p.state !== 'acked').map(({ id, channel, body }) => ({ id, channel, body }));
  try { sessionStorage.setItem(OUTBOX_KEY, JSON.stringify({ user: me.id, messages: keep })); } catch { /* full or disabled */ }
}

function restoreOutbox() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(OUTBOX_KEY));
    if (!saved || saved.user !== me.id) return;
    for (const m of saved.messages) outbox.set(m.id, { ...m, state: 'pending', error: 'Waiting for the connection…', el: null });
  } catch { /* ignore a damaged entry */ }
}

function sendMessage(c, body) {
  const p = { id: `c-${crypto.randomUUID()}`, channel: c.id, body, state: 'pending', el: null };
  outbox.set(p.id, p);
  saveOutbox();
  renderPending(c);
  transmit(p);
}

function transmit(p) {
  p.state = 'pending';
  p.error = '';
  updatePending(p);
  socket.request({ type: Type.Send, id: p.id, channel: p.channel, body: p.body }, 15000).then((ack) => {
    p.state = 'acked';
    p.seq = ack.seq;
    p.message_id = ack.message_id;
    saveOutbox();
    const c = convs.get(p.channel);
    if (c && c.lastApplied >= ack.seq) { outbox.delete(p.id); p.el?.remove(); return; }
    updatePending(p);
    // The message frame follows the ack; if the connection drops first,
    // resume or the gap filler brings it.
    if (c) enqueue(c, () => (c.lastApplied < ack.seq ? fill(c) : null));
  }, (err) => {
    if (err instanceof socket.WsError) {
      p.state = 'failed';
      p.error = err.code === 'rate_limited' ? `Sending too fast; wait ${err.retryAfter || 1} s and retry.` : err.message;
    } else if (err instanceof socket.Disconnected) {
      p.state = 'pending'; // resent with the same id after reconnecting
      p.error = 'Waiting for the connection…';
    } else {
      p.state = 'failed';
      p.error = err.message;
    }
    updatePending(p);
  });
}

// ---- rendering ----

function convLabel(c) {
  if (c.kind !== 'dm') return c.name;
  const others = (c.members || []).filter((id) => id !== me.id).map((id) => names.get(id) || id);
  return others.join(', ') || 'Direct message';
}

function dot(id) {
  const st = presence.get(id) || 'offline';
  return h('span', { class: `dot dot-${st}`, title: st, 'aria-label': st, 'data-presence': st });
}

function renderSidebar() {
  if (!view) return;
  const list = [...convs.values()];
  const mine = list.filter((c) => c.kind !== 'dm' && c.member).sort((a, b) => a.name.localeCompare(b.name));
  const dms = list.filter((c) => c.kind === 'dm').sort((a, b) => b.last_seq - a.last_seq || convLabel(a).localeCompare(convLabel(b)));
  const others = list.filter((c) => c.kind !== 'dm' && !c.member && !c.archived).sort((a, b) => a.name.localeCompare(b.name));
  const entry = (c) => {
    const other = c.kind === 'dm' && (c.members || []).filter((id) => id !== me.id);
    return h('li', {},
      h('a', {
        href: `#/chat/${encodeURIComponent(c.id)}`, class: c.unread ? 'unread' : null, 'aria-current': view.id === c.id ? 'page' : null,
        dataset: { conv: c.id },
      },
      other && other.length === 1 ? dot(other[0]) : h('span', { class: 'sigil', 'aria-hidden': 'true' }, c.kind === 'private' ? '🔒' : c.kind === 'dm' ? '@' : '#'),
      h('span', { class: 'label' }, convLabel(c)),
      c.unread ? h('span', { class: 'badge', 'data-testid': 'unread', 'aria-label': `${c.unread} unread` }, c.unread > 99 ? '99+' : c.unread) : null));
  };
  const total = list.reduce((n, c) => n + (c.unread || 0), 0);
  document.title = total ? `(${total}) Unhidra` : 'Unhidra';
  replace(view.sidebar,
    h('div', { class: 'side-head' }, h('h2', {}, 'Channels'),
      h('button', { type: 'button', class: 'icon', title: 'New channel', 'aria-label': 'New channel', onclick: newChannel }, '+')),
    h('ul', { class: 'convs', 'data-testid': 'channels' }, mine.map(entry)),
    h('div', { class: 'side-head' }, h('h2', {}, 'Direct messages'),
      h('button', { type: 'button', class: 'icon', title: 'New direct message', 'aria-label': 'New direct message', onclick: newDM }, '+')),
    h('ul', { class: 'convs', 'data-testid': 'dms' }, dms.map(entry)),
    others.length ? [h('div', { class: 'side-head' }, h('h2', {}, 'Other channels')),
      h('ul', { class: 'convs' }, others.map((c) => h('li', { class: 'joinable' },
        h('span', { class: 'label' }, `# ${c.name}`),
        h('button', { type: 'button', class: 'small', onclick: () => join(c) }, 'Join'))))] : null);
}

function renderPresence() {
  renderSidebar();
  if (view && view.membersOpen) renderMembers(false);
}

function renderHeader() {
  if (!view) return;
  const c = convs.get(view.id);
  if (!c) return;
  replace(view.header,
    h('button', { type: 'button', class: 'icon only-narrow', 'aria-label': 'Conversations', onclick: () => view.layout.classList.toggle('show-side') }, '☰'),
    h('h1', { 'data-testid': 'conv-title' }, c.kind === 'dm' ? '@ ' : c.kind === 'private' ? '🔒 ' : '# ', convLabel(c)),
    c.archived && h('span', { class: 'tag' }, 'archived'),
    h('div', { class: 'spacer' }),
    h('button', { type: 'button', 'aria-pressed': view.membersOpen ? 'true' : 'false', onclick: toggleMembers }, 'Members'),
    c.kind !== 'dm' && c.member && h('button', { type: 'button', onclick: () => leave(c) }, 'Leave'));
}

function messageItem(c, m) {
  const mine = m.from === me.id;
  const body = m.deleted
    ? h('p', { class: 'msg-body deleted' }, 'This message was deleted.')
    : h('p', { class: 'msg-body', dir: 'auto' }, m.body);
  return h('li', { class: mine ? 'msg mine' : 'msg', dataset: { seq: m.seq, id: m.message_id, state: 'stored' }, 'data-testid': 'message' },
    h('div', { class: 'msg-head' },
      h('span', { class: 'author' }, m.from_name || names.get(m.from) || m.from),
      senderBadge(m.from_kind),
      h('time', { datetime: m.ts, title: when(m.ts) }, clock(m.ts)),
      m.edited_at && !m.deleted && h('span', { class: 'muted' }, '(edited)')),
    body,
    mine && !m.deleted && h('div', { class: 'msg-actions' },
      h('button', { type: 'button', class: 'small', onclick: (e) => editMessage(c, m, e.target.closest('li')) }, 'Edit'),
      h('button', { type: 'button', class: 'small', onclick: () => deleteMessage(c, m) }, 'Delete')));
}

// senderBadge marks messages from devices and bots, so that neither can
// pass for a person whatever its name.
function senderBadge(kind) {
  if (kind !== 'device' && kind !== 'bot') return null;
  return h('span', { class: `badge badge-${kind}`, title: kind === 'device' ? 'Sent by a device' : 'Sent by a bot', 'data-testid': 'sender-kind' },
    kind === 'device' ? 'device' : 'bot');
}

function appendMessage(c, m) {
  const stick = nearBottom();
  view.list.appendChild(messageItem(c, m));
  if (stick || m.from === me.id) scrollToBottom();
}

function nearBottom() {
  const s = view.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() { view.scroller.scrollTop = view.scroller.scrollHeight; }

function renderPending(c) {
  if (!view || view.id !== c.id) return;
  replace(view.pending, [...outbox.values()].filter((p) => p.channel === c.id).map((p) => {
    p.el = h('li', { class: 'msg mine pending', 'data-testid': 'message' });
    updatePending(p);
    return p.el;
  }));
  scrollToBottom();
}

function updatePending(p) {
  if (!p.el) return;
  p.el.dataset.state = p.state;
  const status = {
    pending: p.error || 'Sending…', acked: 'Sent ✓', failed: `Not sent: ${p.error}`,
  }[p.state];
  replace(p.el,
    h('div', { class: 'msg-head' }, h('span', { class: 'author' }, me.name), h('span', { class: `status status-${p.state}`, 'data-testid': 'send-status' }, status)),
    h('p', { class: 'msg-body', dir: 'auto' }, p.body),
    p.state === 'failed' && h('div', { class: 'msg-actions visible' },
      h('button', { type: 'button', class: 'small', onclick: () => transmit(p) }, 'Retry'),
      h('button', { type: 'button', class: 'small', onclick: () => { outbox.delete(p.id); saveOutbox(); p.el.remove(); } }, 'Discard')));
}

function renderTyping() {
  if (!view) return;
  const c = convs.get(view.id);
  if (!c) return;
  const now = Date.now();
  const who = [];
  for (const [id, until] of c.typing) {
    if (until < now) c.typing.delete(id); else who.push(names.get(id) || 'Someone');
  }
  view.typing.textContent = who.length === 0 ? '' : who.length === 1 ? `${who[0]} is typing…`
    : who.length < 4 ? `${who.join(', ')} are typing…` : 'Several people are typing…';
}

async function renderMembers(reload = true) {
  if (!view) return;
  const id = view.id;
  const c = convs.get(id);
  if (reload || !view.memberList) {
    replace(view.members, h('h2', {}, 'Members'), loading());
    try {
      view.memberList = (await api('GET', `/api/v1/channels/${encodeURIComponent(id)}/members`)).members;
    } catch (err) {
      if (view && view.id === id) replace(view.members, h('h2', {}, 'Members'), failure(err, () => renderMembers()));
      return;
    }
  }
  if (!view || view.id !== id) return;
  for (const m of view.memberList) if (m.name) names.set(m.member_id, m.name);
  const invite = c && c.kind !== 'dm' && h('form', { class: 'inline' },
    h('input', { name: 'member', placeholder: 'Add by name', 'aria-label': 'Add a member by name', required: true, maxlength: 64 }),
    h('button', { type: 'submit' }, 'Add'));
  invite?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = invite.elements.member;
    try {
      await api('POST', `/api/v1/channels/${encodeURIComponent(id)}/members`, { member: input.value.trim() });
      input.value = '';
      renderMembers();
    } catch (err) { toast(errorText(err), 'error'); }
  });
  const sorted = [...view.memberList].sort((a, b) => (a.name || a.member_id).localeCompare(b.name || b.member_id));
  replace(view.members,
    h('h2', {}, `Members (${sorted.length})`),
    h('ul', { class: 'members', 'data-testid': 'members' }, sorted.map((m) => h('li', {},
      dot(m.member_id), h('span', {}, m.name || m.member_id), m.role !== 'member' && h('span', { class: 'tag' }, m.role)))),
    invite);
}

function toggleMembers() {
  view.membersOpen = !view.membersOpen;
  view.layout.classList.toggle('show-members', view.membersOpen);
  renderHeader();
  if (view.membersOpen) renderMembers();
}

// ---- actions ----

async function newChannel() {
  const c = await formDialog('New channel', [
    { name: 'name', label: 'Name', required: true, maxlength: 64 },
    { name: 'private', label: 'Private (members join by invitation)', type: 'checkbox' },
  ], 'Create', (v) => api('POST', '/api/v1/channels', { name: v.name.trim(), private: v.private }));
  if (!c) return;
  await loadLists();
  location.hash = `#/chat/${encodeURIComponent(c.id)}`;
}

async function newDM() {
  const c = await formDialog('New direct message', [
    { name: 'members', label: 'To (names, separated by commas)', required: true, placeholder: 'alice, bob' },
  ], 'Open', (v) => api('POST', '/api/v1/dms', { members: v.members.split(',').map((s) => s.trim()).filter(Boolean) }));
  if (!c) return;
  await loadLists();
  location.hash = `#/chat/${encodeURIComponent(c.id)}`;
}

async function join(c) {
  try {
    await api('POST', `/api/v1/channels/${encodeURIComponent(c.id)}/join`);
    await loadLists();
    location.hash = `#/chat/${encodeURIComponent(c.id)}`;
  } catch (err) { toast(errorText(err), 'error'); }
}

async function leave(c) {
  if (!await confirmDialog('Leave channel', `Leave #${c.name}? You can join public channels again later.`, 'Leave')) return;
  try {
    await api('POST', `/api/v1/channels/${encodeURIComponent(c.id)}/leave`);
    c.loaded = false;
    await loadLists();
    location.hash = '#/chat';
  } catch (err) { toast(errorText(err), 'error'); }
}

function editMessage(c, m, li) {
  const area = h('textarea', { class: 'edit', rows: 3, 'aria-label': 'Edit message' });
  area.value = m.body;
  const save = async () => {
    const body = area.value;
    if (body.trim() === '' || body === m.body) { li.replaceWith(messageItem(c, m)); return; }
    try {
      await socket.request({ type: Type.Edit, channel: c.id, message_id: m.message_id, body });
    } catch (err) { toast(errorText(err), 'error'); }
  };
  area.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); save(); }
    if (e.key === 'Escape') { e.preventDefault(); li.replaceWith(messageItem(c, m)); }
  });
  li.querySelector('.msg-body').replaceWith(h('div', { class: 'stack' }, area,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'small', onclick: () => li.replaceWith(messageItem(c, m)) }, 'Cancel'),
      h('button', { type: 'button', class: 'small primary', onclick: save }, 'Save'))));
  li.querySelector('.msg-actions')?.remove();
  area.focus();
}

async function deleteMessage(c, m) {
  if (!await confirmDialog('Delete message', 'Delete this message for everyone?', 'Delete')) return;
  try {
    await socket.request({ type: Type.Delete, channel: c.id, message_id: m.message_id });
  } catch (err) { toast(errorText(err), 'error'); }
}

// ---- the view ----

// chatView mounts the chat screen for conversation id (or the default one).
export function chatView(root, id) {
  const layout = h('div', { class: 'chat' });
  const sidebar = h('nav', { class: 'sidebar', 'aria-label': 'Conversations' });
  const header = h('header', { class: 'conv-head' });
  const list = h('ol', { class: 'messages', 'aria-label': 'Messages', 'data-testid': 'messages' });
  const pending = h('ol', { class: 'messages pending-list' });
  const older = h('p', { class: 'older muted' });
  const scroller = h('div', { class: 'scroller', tabindex: '0', 'data-testid': 'scroller' }, older, list, pending);
  const typing = h('p', { class: 'typing muted', 'aria-live': 'polite', 'data-testid': 'typing' });
  const members = h('aside', { class: 'members-panel', 'aria-label': 'Members' });
  const input = h('textarea', { rows: 1, placeholder: 'Write a message', 'aria-label': 'Message', 'data-testid': 'composer' });
  const counter = h('span', { class: 'counter muted' });
  const composer = h('form', { class: 'composer' }, input, counter, h('button', { type: 'submit', class: 'primary' }, 'Send'));
  const conv = h('section', { class: 'conv' }, header, scroller, typing, composer);
  layout.append(sidebar, conv, members);
  replace(root, layout);
  view = { id, layout, sidebar, header, list, pending, older, scroller, typing, members, input, membersOpen: false };
  const mounted = view;

  let lastTyping = 0;
  input.addEventListener('input', () => {
    const n = [...input.value].length;
    counter.textContent = n > MAX_BODY - 500 ? `${n} / ${MAX_BODY}` : '';
    counter.classList.toggle('over', n > MAX_BODY);
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
    if (Date.now() - lastTyping > 2500 && input.value.trim()) {
      lastTyping = Date.now();
      socket.send({ type: Type.Typing, channel: view.id });
    }
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); composer.requestSubmit(); }
  });
  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const c = convs.get(view.id);
    const body = input.value;
    if (!c || !body.trim()) return;
    if ([...body].length > MAX_BODY) { toast(`Messages are limited to ${MAX_BODY} characters.`, 'error'); return; }
    if (c.archived) { toast('This channel is archived.', 'error'); return; }
    sendMessage(c, body);
    input.value = '';
    input.style.height = 'auto';
    counter.textContent = '';
    lastTyping = 0;
  });
  scroller.addEventListener('scroll', () => {
    if (scroller.scrollTop < 150) loadOlder();
    if (nearBottom()) markRead(convs.get(view.id));
  });

  replace(list, loading('Loading conversations…'));
  // New public channels are not pushed; every later visit picks them up.
  const ready = firstView ? listsReady : listsReady.then(loadLists);
  firstView = false;
  ready.then(() => {
    if (view !== mounted) return;
    if (!id || !convs.has(id)) {
      const first = convs.get('chn_general')?.member ? 'chn_general' : [...convs.values()].find((c) => c.member && c.kind !== 'dm')?.id;
      if (id) toast('That conversation does not exist or you are not a member.', 'error');
      if (first) { location.replace(`#/chat/${encodeURIComponent(first)}`); return; }
      replace(list, h('p', { class: 'empty' }, 'No conversations yet. Create a channel with +.'));
      renderSidebar();
      return;
    }
    open(convs.get(id));
  }, (err) => replace(list, failure(err, () => location.reload())));

  return () => { if (view === mounted) view = null; };
}

function open(c) {
  renderSidebar();
  renderHeader();
  view.layout.classList.remove('show-side');
  if (!c.member) {
    replace(view.list, h('p', { class: 'empty' }, 'You are not a member of this channel. ',
      h('button', { type: 'button', onclick: () => join(c) }, 'Join')));
    view.input.disabled = true;
    return;
  }
  replace(view.list, loading('Loading messages…'));
  const mounted = view;
  const first = !c.loaded;
  enqueue(c, async () => {
    if (first) {
      const page = await api('GET', `/api/v1/channels/${encodeURIComponent(c.id)}/messages?limit=${PAGE}`);
      c.messages = page.messages;
      c.lastApplied = page.messages.length ? page.messages[page.messages.length - 1].seq : 0;
      c.oldest = page.messages.length ? page.messages[0].seq : c.lastApplied + 1;
      c.hasOlder = page.has_more;
      for (const m of page.messages) if (m.from_name) names.set(m.from, m.from_name);
      c.loaded = true;
    }
    if (view !== mounted) return;
    replace(view.list, c.messages.map((m) => messageItem(c, m)));
    renderOlder(c);
    renderPending(c);
    renderTyping();
    scrollToBottom();
    if (c.last_seq > c.lastApplied) await fill(c);
    markRead(c);
    countUnread(c);
  }).then(() => { if (view === mounted && c.hasOlder && view.scroller.scrollHeight <= view.scroller.clientHeight) loadOlder(); });
  view.input.disabled = false;
  if (matchMedia('(pointer: fine)').matches) view.input.focus();
}

function renderOlder(c) {
  view.older.textContent = c.hasOlder ? (c.loadingOlder ? 'Loading older messages…' : '') : 'This is the beginning of the conversation.';
}

// loadOlder prepends the previous page, keeping what is on screen in place.
function loadOlder() {
  const c = view && convs.get(view.id);
  if (!c || !c.loaded || !c.hasOlder || c.loadingOlder) return;
  c.loadingOlder = true;
  renderOlder(c);
  const mounted = view;
  api('GET', `/api/v1/channels/${encodeURIComponent(c.id)}/messages?before=${c.oldest}&limit=${PAGE}`).then((page) => {
    c.loadingOlder = false;
    const older = page.messages.filter((m) => m.seq < c.oldest);
    c.messages = [...older, ...c.messages];
    if (older.length) c.oldest = older[0].seq;
    c.hasOlder = page.has_more && older.length > 0;
    if (view !== mounted || view.id !== c.id) return;
    const s = view.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    view.list.prepend(...older.map((m) => messageItem(c, m)));
    s.scrollTop = s.scrollHeight - fromBottom;
    renderOlder(c);
    if (c.hasOlder && s.scrollTop < 150) loadOlder();
  }, (err) => {
    c.loadingOlder = false;
    if (view === mounted) view.older.textContent = errorText(err);
  });
}
