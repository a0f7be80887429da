// The signed-in session and the HTTP API client. The session lives in
// localStorage so that reloads and other tabs stay signed in.
//
// Refresh tokens are single-use and a reuse revokes the whole family, so
// two tabs must never spend the same one. Reading localStorage under a lock
// is not enough (Chromium propagates writes between tabs asynchronously), so
// one tab, the holder of a Web Lock, is the only one that refreshes; the
// others ask it over a BroadcastChannel and take the session it announces.

const KEY = 'unhidra.session';
const listeners = new Set();
let session = load();
let refreshTimer = null;
let inflight = null; // the refresh under way (leader only)
const waiting = new Set(); // resolvers of tabs' pending asks (followers)
const channel = 'BroadcastChannel' in window ? new BroadcastChannel('unhidra.session') : null;
// Without Web Locks or a channel, each tab is its own leader.
let leader = !(navigator.locks && channel);
if (!leader) {
  navigator.locks.request('unhidra.refresher', () => {
    leader = true;
    schedule();
    return new Promise(() => {}); // held for the tab's life
  });
}

// ApiError is an error answer of the API ({"error":{"code","message"}}).
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function load() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY));
    return s && s.access_token && s.refresh_token && s.user ? s : null;
  } catch {
    return null;
  }
}

function store(s, announce = true) {
  const was = session;
  session = s;
  if (announce) {
    if (s) localStorage.setItem(KEY, JSON.stringify(s));
    else localStorage.removeItem(KEY);
    channel?.postMessage({ type: 'session', session: s });
  }
  schedule();
  const asks = [...waiting];
  waiting.clear();
  for (const done of asks) done();
  if (s === was || (!s && !was)) return;
  if (!s || !was || was.access_token !== s.access_token || was.user.id !== s.user.id) {
    for (const fn of listeners) fn(session, was);
  }
}

// Another tab refreshed, signed in or out.
channel?.addEventListener('message', (e) => {
  const m = e.data;
  if (m.type === 'session') store(m.session, false);
  else if (m.type === 'refresh' && leader && session) refresh(true).catch(() => {});
});
window.addEventListener('storage', (e) => {
  if (e.key === KEY && !channel) store(load(), false);
});

// current returns the session or null.
export function current() { return session; }

// onChange calls fn(session, previous) whenever the session changes.
export function onChange(fn) { listeners.add(fn); }

// adopt stores a session answer of the API (login, register, refresh…).
export function adopt(resp) {
  store({
    access_token: resp.access_token,
    refresh_token: resp.refresh_token,
    expires_at: Date.now() + resp.expires_in * 1000,
    lifetime: resp.expires_in * 1000,
    user: resp.user,
  });
}

// lead is how long before expiry a token is replaced: a minute, or a third
// of its lifetime when that is shorter.
function lead(s) { return Math.min(60000, (s.lifetime || 900000) / 3); }

// Refresh ahead of expiry, so the WebSocket gets its new token in time and
// requests never wait for one.
function schedule() {
  clearTimeout(refreshTimer);
  if (!session || !leader) return;
  const wait = Math.max(5000, session.expires_at - Date.now() - lead(session));
  refreshTimer = setTimeout(() => refresh(false).catch(() => {}), wait);
}

// refresh gets a new access token: the leader spends the refresh token
// (unless, not forced, the current token is still fresh); another tab asks
// the leader and waits for the session it announces.
export function refresh(force) {
  if (!session) return Promise.reject(new ApiError(401, 'unauthorized', 'You are signed out.'));
  if (!leader) return ask();
  if (!force && session.expires_at - Date.now() > lead(session) * 1.5) return Promise.resolve(session.access_token);
  if (!inflight) {
    const spent = session.refresh_token;
    inflight = request('POST', '/api/v1/auth/refresh', { refresh_token: spent }, null).then((resp) => {
      adopt(resp);
      return session.access_token;
    }, (err) => {
      // Spent or revoked: sign in again (unless a sign-in replaced it meanwhile).
      if ((err.status === 401 || err.status === 400) && session?.refresh_token === spent) store(null);
      throw err;
    }).finally(() => { inflight = null; });
  }
  return inflight;
}

function ask() {
  const before = session.access_token;
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      if (session && session.access_token !== before) resolve(session.access_token);
      else if (!session) reject(new ApiError(401, 'unauthorized', 'You are signed out.'));
      else waiting.add(done); // some other change; keep waiting
    };
    const timer = setTimeout(() => {
      waiting.delete(done);
      reject(new ApiError(0, 'unavailable', 'Could not renew the session; try again.'));
    }, 15000);
    waiting.add(done);
    channel.postMessage({ type: 'refresh' });
  });
}

// accessToken returns a token that is not about to expire.
export async function accessToken() {
  if (!session) throw new ApiError(401, 'unauthorized', 'You are signed out.');
  if (session.expires_at - Date.now() > lead(session) / 2) return session.access_token;
  return refresh(false);
}

// request is one HTTP call; token null means unauthenticated.
async function request(method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store', credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const e = data && data.error;
    let msg = e && e.message ? e.message : `The server answered ${res.status}.`;
    const retry = res.headers.get('Retry-After');
    if (res.status === 429 || res.status === 503) msg += retry ? ` Try again in ${retry} s.` : '';
    throw new ApiError(res.status, e ? e.code : `http_${res.status}`, msg, retry);
  }
  return data;
}

// api calls the API as the signed-in user (or anonymously with
// {anonymous:true}). A 401 refreshes the token once and retries: the
// token may have been rotated by another tab or expired in a sleeping one.
export async function api(method, path, body, opts = {}) {
  if (opts.anonymous) return request(method, path, body, null);
  try {
    return await request(method, path, body, await accessToken());
  } catch (err) {
    if (err.status !== 401 || !session) throw err;
    return request(method, path, body, await refresh(true));
  }
}

// signOut ends the session on the server (best effort) and here.
export async function signOut() {
  const s = session;
  if (!s) return;
  try {
    await request('POST', '/api/v1/auth/logout', { refresh_token: s.refresh_token }, s.access_token);
  } catch { /* signed out here regardless */ }
  store(null);
}

// endLocally forgets the session without calling the server (it already
// ended it: disabled account, revoked session).
export function endLocally() { store(null); }

schedule();
