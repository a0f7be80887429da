// The signed-in session and the HTTP API client. The session lives in
// localStorage so that reloads and other tabs stay signed in; refresh
// tokens are single-use (reuse revokes the whole family), so tabs refresh
// one at a time under a Web Lock and adopt each other's results.

const KEY = 'unhidra.session';
const listeners = new Set();
let session = load();
let refreshTimer = null;

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

function store(s) {
  const was = session;
  session = s;
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
  schedule();
  if (!s || !was || was.access_token !== s.access_token || was.user.id !== s.user.id) {
    for (const fn of listeners) fn(session, was);
  }
}

// Another tab refreshed or signed out.
window.addEventListener('storage', (e) => {
  if (e.key !== KEY) return;
  const was = session;
  session = load();
  schedule();
  for (const fn of listeners) fn(session, was);
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
    user: resp.user,
  });
}

// Refresh a minute before expiry, so the WebSocket gets its new token in
// time and requests never wait for one.
function schedule() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const wait = Math.max(5000, session.expires_at - Date.now() - 60000);
  refreshTimer = setTimeout(() => refresh(false).catch(() => {}), wait);
}

function withLock(fn) {
  if (navigator.locks) return navigator.locks.request('unhidra.refresh', fn);
  return fn();
}

// refresh gets a new access token. Unless forced, a token another tab got
// meanwhile is used instead.
export function refresh(force) {
  return withLock(async () => {
    const stored = load();
    if (!stored) {
      if (session) store(null);
      throw new ApiError(401, 'unauthorized', 'You are signed out.');
    }
    const fresh = stored.expires_at - Date.now() > 90000;
    if (fresh && (!force || stored.access_token !== session?.access_token)) {
      if (stored.access_token !== session?.access_token) store(stored);
      return stored.access_token;
    }
    try {
      adopt(await request('POST', '/api/v1/auth/refresh', { refresh_token: stored.refresh_token }, null));
    } catch (err) {
      if (err.status === 401 || err.status === 400) store(null); // spent or revoked: sign in again
      throw err;
    }
    return session.access_token;
  });
}

// accessToken returns a token valid for at least half a minute.
export async function accessToken() {
  if (!session) throw new ApiError(401, 'unauthorized', 'You are signed out.');
  if (session.expires_at - Date.now() > 30000) return session.access_token;
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
