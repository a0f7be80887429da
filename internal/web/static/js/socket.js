// The WebSocket connection: credentials in Sec-WebSocket-Protocol (never in
// the URL), reconnection with exponential backoff and jitter, a token
// refresh frame whenever the session gets a new token, and requests
// matched to their answers by id.

import { accessToken, current, endLocally, onChange, refresh } from './session.js';
import { BearerPrefix, Close, Subprotocol, Type } from './protocol.js';

const handlers = new Map(); // frame type -> Set of functions
const pending = new Map(); // frame id -> {resolve, reject, timer}
const statusListeners = new Set();

let ws = null;
let wanted = false; // connect() called and not disconnect()
let attempt = 0;
let retryTimer = null;
let stableTimer = null;
let pingTimer = null;
let lastPong = 0;
let welcomed = false;
let opening = false; // an open() is waiting for a token
let nextId = 1;

// status: {state: "connecting"|"online"|"waiting"|"offline"|"ended", retryAt?, reason?}
let status = { state: 'offline' };

// Disconnected rejects a request that could not be sent, or whose
// connection closed before the answer: resend it after reconnecting.
export class Disconnected extends Error {}

// WsError is an `error` frame answering a request.
export class WsError extends Error {
  constructor(frame) {
    super(frame.message || frame.code || 'Request failed.');
    this.code = frame.code;
    this.retryAfter = frame.retry_after;
  }
}

export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, new Set());
  handlers.get(type).add(fn);
  return () => handlers.get(type).delete(fn);
}

export function onStatus(fn) { statusListeners.add(fn); fn(status); }

function setStatus(s) {
  status = s;
  for (const fn of statusListeners) fn(s);
}

function emit(frame) {
  const fns = handlers.get(frame.type);
  if (fns) for (const fn of fns) fn(frame);
}

// connect opens the connection and keeps it open until disconnect().
export function connect() {
  wanted = true;
  if (!ws) open();
}

// disconnect closes the connection for good (sign-out).
export function disconnect() {
  wanted = false;
  clearTimeout(retryTimer);
  if (ws) ws.close(Close.Normal, 'bye');
  ws = null;
  setStatus({ state: 'offline' });
}

// reconnectNow skips the backoff wait (the browser came back online, or the
// user asked).
export function reconnectNow() {
  wanted = true;
  if (ws) return;
  clearTimeout(retryTimer);
  open();
}

let openedWith = ''; // the access token of the current socket

async function open() {
  if (opening || ws) return;
  opening = true;
  clearTimeout(retryTimer);
  setStatus({ state: 'connecting' });
  let token;
  try {
    // After a refused handshake (the browser hides the status) a fresh
    // token is the likeliest cure.
    token = attempt > 0 ? await refresh(true) : await accessToken();
  } catch {
    opening = false;
    if (!current()) { setStatus({ state: 'ended', reason: 'Signed out.' }); return; }
    return retry();
  }
  opening = false;
  if (!wanted || ws) return;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const sock = new WebSocket(url, [Subprotocol, `${BearerPrefix}${token}`]);
  ws = sock;
  openedWith = token;
  welcomed = false;
  sock.onmessage = (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch { return; }
    if (!frame || typeof frame.type !== 'string') return;
    if (frame.type === Type.Welcome) {
      welcomed = true;
      setStatus({ state: 'online', welcome: frame });
      // Reset the backoff only once the connection proves stable.
      clearTimeout(stableTimer);
      stableTimer = setTimeout(() => { attempt = 0; }, 10000);
      startPings();
    }
    if (frame.type === Type.Pong) lastPong = Date.now();
    if (frame.id && pending.has(frame.id) && [Type.Ack, Type.Error, Type.History, Type.Pong].includes(frame.type)) {
      const p = pending.get(frame.id);
      pending.delete(frame.id);
      clearTimeout(p.timer);
      if (frame.type === Type.Error) p.reject(new WsError(frame)); else p.resolve(frame);
      return;
    }
    emit(frame);
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    clearInterval(pingTimer);
    clearTimeout(stableTimer);
    for (const [, p] of pending) { clearTimeout(p.timer); p.reject(new Disconnected('The connection was lost.')); }
    pending.clear();
    if (!wanted) return;
    switch (ev.code) {
      case Close.BadCredentials: case Close.Revoked: {
        // Our own password change ends every session, this socket's too,
        // and answers with a new one: reconnect with it. Otherwise (or if
        // none comes within 2 s) the session is over.
        const was = openedWith;
        const started = Date.now();
        const check = () => {
          const s = current();
          if (s && s.access_token && s.access_token !== was) { attempt = 0; open(); return; }
          if (Date.now() - started < 2000) { setTimeout(check, 100); return; }
          endLocally();
          setStatus({ state: 'ended', reason: 'Your session has ended. Sign in again.' });
        };
        check();
        return;
      }
      case Close.Kicked:
        wanted = false;
        setStatus({ state: 'ended', reason: 'An administrator ended this session.' });
        return;
      case Close.TokenExpired:
        refresh(true).then(open, retry);
        return;
      default:
        retry();
    }
  };
}

// retry waits with exponential backoff (0.5 s doubling to 30 s) and equal
// jitter, so a restarted server is not hit by every tab at once.
function retry() {
  if (!wanted) return;
  const base = Math.min(30000, 500 * 2 ** Math.min(attempt, 10));
  const delay = base / 2 + Math.random() * base / 2;
  attempt++;
  setStatus({ state: 'waiting', retryAt: Date.now() + delay });
  clearTimeout(retryTimer);
  retryTimer = setTimeout(open, delay);
}

// The browser answers the server's WebSocket pings by itself but cannot
// see them; an application ping every 20 s notices a dead network path
// (laptop sleep, Wi-Fi change) long before TCP would.
function startPings() {
  clearInterval(pingTimer);
  lastPong = Date.now();
  pingTimer = setInterval(() => {
    if (!ws) return;
    if (Date.now() - lastPong > 45000) { ws.close(Close.Normal, 'no pong'); return; }
    send({ type: Type.Ping, id: `p${nextId++}` });
  }, 20000);
}

// send writes a frame if the connection is open; it reports whether it did.
export function send(frame) {
  if (!ws || !welcomed || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(frame));
  return true;
}

// request sends a frame with a fresh id (unless it has one) and resolves
// with the ack/history answer, or rejects with a WsError.
export function request(frame, timeout = 15000) {
  const id = frame.id || `r${nextId++}`;
  return new Promise((resolve, reject) => {
    if (!send({ ...frame, id })) { reject(new Disconnected('Not connected.')); return; }
    const timer = setTimeout(() => { pending.delete(id); reject(new Error('The server did not answer in time.')); }, timeout);
    pending.set(id, { resolve, reject, timer });
  });
}


// A new access token goes to the open connection before the old expires.
onChange((s, was) => {
  if (!s) { disconnect(); return; }
  if (was && s.user.id === was.user.id && s.access_token !== was.access_token) {
    request({ type: Type.Refresh, token: s.access_token }).catch(() => {});
  }
});

window.addEventListener('online', () => { if (wanted && !ws) reconnectNow(); });
