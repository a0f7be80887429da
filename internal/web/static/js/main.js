// The app shell: signed-out screen or header + view, chosen by the URL's
// hash (#/chat/<id>, #/devices, #/devices/<id>, #/admin/<tab>, #/account),
// so the server only ever serves one page.

import { h, replace, toast } from './dom.js';
import { current, onChange, signOut } from './session.js';
import * as socket from './socket.js';
import { signInView, accountView } from './account.js';
import { chatView, startChat, stopChat } from './chat.js';
import { devicesView, deviceView, startDevices } from './devices.js';
import { adminView } from './admin.js';

const root = document.getElementById('app');
let main = null; // the view container while signed in
let signedInAs = null;
let leaveView = null; // cleanup of the current view

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  return { section: parts[0] || 'chat', id: parts[1] || '', rest: parts.slice(2) };
}

function shell() {
  const u = current().user;
  const conn = h('span', { class: 'conn', 'data-testid': 'conn-status', role: 'status' });
  socket.onStatus((s) => renderStatus(conn, s));
  const link = (href, label, section) => h('a', { href, 'data-section': section }, label);
  const nav = h('nav', { class: 'topnav', 'aria-label': 'Main' },
    link('#/chat', 'Chat', 'chat'),
    link('#/devices', 'Devices', 'devices'),
    u.role === 'admin' && link('#/admin/users', 'Admin', 'admin'),
    link('#/account', u.name, 'account'));
  main = h('main', { id: 'main', tabindex: '-1' });
  replace(root,
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/chat' }, h('img', { src: '/assets/icon.svg', alt: '', width: 24, height: 24 }), h('span', {}, 'Unhidra')),
      nav, conn,
      h('button', { type: 'button', class: 'link', 'data-testid': 'sign-out', onclick: () => signOut() }, 'Sign out')),
    main);
  root.removeAttribute('aria-busy');
}

let statusTick = null;
function renderStatus(el, s) {
  clearInterval(statusTick);
  const text = {
    online: 'Connected', connecting: 'Connecting…', offline: 'Offline', ended: s.reason || 'Disconnected',
  }[s.state];
  el.dataset.state = s.state;
  if (s.state === 'waiting') {
    const tick = () => {
      const secs = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
      replace(el, `Reconnecting in ${secs} s `, h('button', { type: 'button', class: 'link', onclick: () => socket.reconnectNow() }, 'Retry now'));
    };
    tick();
    statusTick = setInterval(tick, 1000);
  } else if (s.state === 'ended') {
    replace(el, text, ' ', h('button', { type: 'button', class: 'link', onclick: () => location.reload() }, 'Reload'));
  } else {
    replace(el, text);
  }
}

function render() {
  const s = current();
  if (!s) {
    if (signedInAs) { stopChat(); socket.disconnect(); signedInAs = null; main = null; }
    signInView(root);
    return;
  }
  if (signedInAs !== s.user.id) {
    signedInAs = s.user.id;
    shell();
    socket.connect();
    startChat(s.user);
    startDevices();
  }
  const r = route();
  for (const a of root.querySelectorAll('.topnav a')) {
    if (a.dataset.section === r.section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (leaveView) { leaveView(); leaveView = null; }
  switch (r.section) {
    case 'devices':
      leaveView = r.id ? deviceView(main, r.id) : devicesView(main);
      break;
    case 'admin':
      if (s.user.role !== 'admin') { location.hash = '#/chat'; return; }
      leaveView = adminView(main, r.id || 'users');
      break;
    case 'account':
      accountView(main);
      break;
    default:
      leaveView = chatView(main, r.id);
  }
}

window.addEventListener('hashchange', render);
onChange((s, was) => {
  if (!s && was) toast('You are signed out.');
  if (!s || !was || s.user.id !== was.user.id) render();
});
render();
