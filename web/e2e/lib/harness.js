// End-to-end test harness: real `unhidra serve` processes, a real headless
// Chromium driven by playwright-core, and the `unhidra bench fleet` device
// simulator. Tests import what they need from here; run them with
// `bash web/e2e/run.sh`, which builds the binary and sets UNHIDRA_BIN.
//
// Every process started here is killed when the test process exits, even
// when a test fails or throws before its `after` hook runs.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

/** web/e2e/, whatever the cwd. */
export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Screenshots and process logs go here (logs are appended to, screenshots overwritten). */
export const ARTIFACTS_DIR = process.env.UNHIDRA_E2E_ARTIFACTS || path.join(E2E_DIR, 'artifacts');

/** Debian's Chromium: Playwright's own browser builds cannot be downloaded here. */
export const CHROMIUM_PATH = process.env.UNHIDRA_E2E_CHROMIUM || '/usr/bin/chromium';

// ---------------------------------------------------------------------------
// Process bookkeeping

const live = new Set(); // child processes still running
const tempDirs = new Set(); // directories this module created

function killAll() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of tempDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
  tempDirs.clear();
}

// 'exit' covers normal ends and uncaught exceptions. A signal ends the
// process without 'exit' unless somebody listens for it, so listen, clean
// up, and exit with the conventional status.
process.on('exit', killAll);
for (const [sig, num] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.once(sig, () => {
    killAll();
    process.exit(128 + num);
  });
}

function track(child) {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Resolves when the child has exited (at once if it already has). */
function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Ends a child process politely: SIGTERM, then SIGKILL if it is still
 * there after `graceMs`. Resolves once it has exited.
 */
async function terminate(child, graceMs) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

function unhidraBin() {
  const bin = process.env.UNHIDRA_BIN;
  if (!bin) throw new Error('UNHIDRA_BIN is not set: run the tests with `bash web/e2e/run.sh`');
  return bin;
}

// The unhidra binary reads UNHIDRA_<FLAG> variables as flag defaults, so a
// variable in the developer's shell could silently change the servers under
// test. Children get the environment without them, plus what a test asks for.
function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('UNHIDRA_')) env[k] = v;
  }
  return { ...env, ...extra };
}

// Names artifacts after the test file (node --test runs each file in its
// own process, with the file as argv[1]), so that files do not mix logs.
const fileTag = path.basename(process.argv[1] || 'e2e').replace(/\.[cm]?js$/, '');
let serial = 0;

function artifactPath(name, ext) {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return path.join(ARTIFACTS_DIR, `${name.replace(/[^A-Za-z0-9._-]+/g, '_')}${ext}`);
}

/** A free TCP port on 127.0.0.1 (free now; the kernel may hand it out again later). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Polls `fn` until it returns a truthy value (awaited), and returns that
 * value. Errors thrown by `fn` count as "not yet" and the last one is
 * reported on timeout. For conditions outside the browser; in a page, use
 * Playwright's own waiting (locators, `expect`-style polling).
 *
 * @param {() => any} fn
 * @param {number} [timeoutMs=15000] failure guard, not a performance claim
 * @param {{ interval?: number, message?: string }} [opts]
 */
export async function waitFor(fn, timeoutMs = 15000, { interval = 100, message } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const what = message || fn.toString().slice(0, 200);
      const err = new Error(`waitFor timed out after ${timeoutMs} ms: ${what}` + (lastErr ? ` (last error: ${lastErr.message})` : ''));
      if (lastErr) err.cause = lastErr;
      throw err;
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------------------
// HTTPS to the server

/**
 * One HTTPS request to `server`, trusting exactly its self-signed
 * certificate (not switching verification off). Resolves to
 * `{ status, headers, text }`.
 */
export function request(server, method, urlPath, { body, headers = {}, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const url = new URL(urlPath, server.url);
    const req = https.request(url, {
      method,
      headers,
      ca: server.ca,
      agent: false, // no keep-alive: a restarted server must not see stale sockets
      timeout: timeoutMs,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Calls the JSON API. Returns the parsed body (null for 204). On a non-2xx
 * answer throws an Error with `status`, `code` and `body` set from the
 * server's `{"error":{"code","message"}}`.
 *
 * @param {object} server from startServer
 * @param {string} method
 * @param {string} urlPath e.g. '/api/v1/auth/register'
 * @param {object} [body] sent as JSON
 * @param {string} [token] access token, sent as a Bearer credential
 */
export async function api(server, method, urlPath, body, token) {
  const headers = { Accept: 'application/json' };
  let payload;
  if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await request(server, method, urlPath, { body: payload, headers });
  let parsed = null;
  if (res.text) {
    try {
      parsed = JSON.parse(res.text);
    } catch {
      parsed = res.text;
    }
  }
  if (res.status < 200 || res.status > 299) {
    const e = parsed && parsed.error ? parsed.error : {};
    const err = new Error(`${method} ${urlPath}: HTTP ${res.status}${e.code ? ` ${e.code}` : ''}${e.message ? `: ${e.message}` : ''}`);
    Object.assign(err, { status: res.status, code: e.code, body: parsed });
    throw err;
  }
  return parsed;
}

// ---------------------------------------------------------------------------
// Servers

/**
 * @typedef {object} Server
 * @property {string} url          https://127.0.0.1:PORT
 * @property {string} wsURL        wss://127.0.0.1:PORT/ws
 * @property {number} port         kept across restart()
 * @property {string} dataDir
 * @property {string} name
 * @property {string} logPath      artifacts/server-<name>.log (stdout and stderr, every start)
 * @property {string} certFile     the TLS certificate (PEM) clients should trust
 * @property {string} ca           its contents
 * @property {string|null} bootstrapCode the one-time administrator code of the latest start, if printed
 * @property {string} stdout       stdout of the latest start
 * @property {import('node:child_process').ChildProcess|null} process null when stopped
 * @property {() => Promise<void>} stop    SIGTERM, wait for the exit (SIGKILL after 20 s)
 * @property {() => Promise<Server>} restart stop, then start with the same data dir, port, env and flags
 */

/**
 * Starts `unhidra serve` on 127.0.0.1 with its self-signed TLS certificate
 * and waits until it is ready (`/readyz` answers 200).
 *
 * @param {object} [opts]
 * @param {Record<string,string>} [opts.env] extra environment (e.g. UNHIDRA_ADMIN_PASSWORD)
 * @param {string[]} [opts.args] extra flags for `serve`; they come last, so they override the defaults
 * @param {string} [opts.dataDir] data directory; default: a fresh temporary one, removed at exit
 * @param {string} [opts.name] log name: artifacts/server-<name>.log
 * @param {number} [opts.readyTimeoutMs=30000]
 * @returns {Promise<Server>}
 */
export async function startServer({ env = {}, args = [], dataDir, name, readyTimeoutMs = 30000 } = {}) {
  if (!dataDir) {
    dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'unhidra-e2e-'));
    tempDirs.add(dataDir);
  }
  name ||= `${fileTag}-${++serial}`;
  const server = {
    url: '', // https://127.0.0.1:PORT
    wsURL: '', // wss://127.0.0.1:PORT/ws
    port: 0,
    dataDir,
    name,
    logPath: artifactPath(`server-${name}`, '.log'),
    // serve's self-signed certificate (CA:TRUE, for 127.0.0.1), or the one
    // a test passed with --tls-cert.
    certFile: flagValue(args, '--tls-cert') || path.join(dataDir, 'tls-cert.pem'),
    ca: '', // that certificate (PEM), to trust it in Node
    /** The one-time administrator code printed at this start; null when accounts exist. */
    bootstrapCode: null,
    /** The server's stdout so far (this start only). */
    stdout: '',
    process: null,
    /** Sends SIGTERM and waits for the exit (SIGKILL after 20 s). */
    stop: async () => {
      const child = server.process;
      if (!child) return;
      await terminate(child, 20000);
      server.process = null;
    },
    /** Stops and starts again with the same data directory, port and flags. */
    restart: async () => {
      await server.stop();
      await launch(server, { env, args, readyTimeoutMs });
      return server;
    },
  };

  // The port is chosen here rather than with --listen :0 so that restart()
  // can reuse it: a page keeps its origin and reconnects to the same URL.
  // Another process may grab the port between our probe and the server's
  // bind, so retry a few times with a new one.
  for (let attempt = 1; ; attempt++) {
    server.port = await freePort();
    try {
      await launch(server, { env, args, readyTimeoutMs });
      return server;
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test(err.message)) throw err;
    }
  }
}

/** Starts server's process and waits for readiness; fills url, ca, bootstrapCode. */
async function launch(server, { env, args, readyTimeoutMs }) {
  server.url = `https://127.0.0.1:${server.port}`;
  server.wsURL = `wss://127.0.0.1:${server.port}/ws`;
  server.bootstrapCode = null;
  server.stdout = '';

  const argv = [
    'serve',
    '--listen', `127.0.0.1:${server.port}`,
    '--data-dir', server.dataDir,
    '--log-format', 'json',
    // Connections are closed over the drain window on SIGTERM (10 s by
    // default); a short one keeps stop() and restart() quick.
    '--drain-window', '1s',
    ...args,
  ];
  const log = fs.openSync(server.logPath, 'a');
  fs.writeSync(log, `\n=== ${new Date().toISOString()} start: unhidra ${argv.join(' ')}\n`);
  const child = track(spawn(unhidraBin(), argv, {
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  server.process = child;

  // stdout carries the human-oriented lines (fingerprint, bootstrap code,
  // "listening on"); stderr the JSON log. Both go to the log file.
  let sawListening;
  const listening = new Promise((resolve) => { sawListening = resolve; });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    fs.writeSync(log, chunk);
    server.stdout += chunk;
    // serve prints: "First start: …one-time code\n(valid …):\n\n    CODE\n\n".
    const m = /First start:[^\n]*\n[^\n]*\n\s*\n[ \t]+(\S+)\s*\n/.exec(server.stdout);
    if (m) server.bootstrapCode = m[1];
    if (/^listening on /m.test(server.stdout)) sawListening();
  });
  logStderrAndExit(child, log);
  const died = exited(child).then(() => {
    throw new Error(`unhidra serve exited early (code ${child.exitCode}, signal ${child.signalCode}); log ${server.logPath}:\n${tail(server.logPath)}`);
  });
  died.catch(() => {}); // only awaited through the race below

  const guardTimer = new AbortController();
  const guard = sleep(readyTimeoutMs, undefined, { signal: guardTimer.signal }).then(() => {
    throw new Error(`unhidra serve was not ready within ${readyTimeoutMs} ms; log ${server.logPath}:\n${tail(server.logPath)}`);
  });
  guard.catch(() => {}); // rejects with AbortError once cancelled below

  const ready = (async () => {
    // "listening on" comes after the bootstrap code on stdout, so once it is
    // seen the code has been captured; and the certificate exists by then.
    await listening;
    server.ca = await fsp.readFile(server.certFile, 'utf8');
    for (;;) {
      try {
        const res = await request(server, 'GET', '/readyz', { timeoutMs: 2000 });
        if (res.status === 200) return;
      } catch {
        // not accepting yet
      }
      if (child.exitCode !== null || child.signalCode !== null) return; // `died` reports it
      await sleep(100);
    }
  })();

  try {
    await Promise.race([ready, died, guard]);
    if (child.exitCode !== null || child.signalCode !== null) await died;
  } catch (err) {
    await terminate(child, 5000);
    server.process = null;
    throw err;
  } finally {
    guardTimer.abort();
  }
}

/** Appends the child's stderr and, when it ends, its exit status to the open log, then closes it. */
function logStderrAndExit(child, log) {
  child.stderr.on('data', (chunk) => fs.writeSync(log, chunk));
  child.once('exit', (code, signal) => {
    try {
      fs.writeSync(log, `=== ${new Date().toISOString()} exit: code=${code} signal=${signal}\n`);
    } finally {
      fs.closeSync(log);
    }
  });
}

/** The value of `--flag V` or `--flag=V` in args (the last one wins, as in Go). */
function flagValue(args, flag) {
  let v;
  args.forEach((a, i) => {
    if (a === flag || a === `-${flag.replace(/^-+/, '')}`) v = args[i + 1];
    else if (a.startsWith(`${flag}=`)) v = a.slice(flag.length + 1);
  });
  return v;
}

function tail(file, lines = 30) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---------------------------------------------------------------------------
// Browser

// Chromium on this machine must not try to reach the outside: the network
// is closed, and its background fetches (component updates, sync, QUIC
// probes…) fail in ways that slow or break page loads.
const CHROMIUM_ARGS = [
  '--no-sandbox', // running as root in a container
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/**
 * Launches headless Chromium. Close it in an `after` hook
 * (`await browser.close()`); Playwright also kills it when Node exits.
 *
 * @param {object} [opts] extra options for chromium.launch (merged; `args` are appended)
 */
export async function launchBrowser(opts = {}) {
  const { args = [], ...rest } = opts;
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    ...rest,
  });
}

/**
 * A new browser context (a fresh profile: cookies, storage) that accepts
 * the server's self-signed certificate, for pages and their WebSockets
 * alike. `context.errors` collects what went wrong in its pages:
 * `{ kind: 'console' | 'pageerror', text, url }` for console.error messages
 * and uncaught exceptions, so tests can `assert.deepEqual(ctx.errors, [])`.
 *
 * @param {import('playwright-core').Browser} browser
 * @param {object} [opts] extra options for browser.newContext
 */
export async function newContext(browser, opts = {}) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
    ...opts,
  });
  const errors = [];
  context.errors = errors;
  context.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    errors.push({ kind: 'console', text: msg.text(), url: msg.location()?.url || msg.page()?.url() || '' });
  });
  context.on('weberror', (webError) => {
    const err = webError.error();
    errors.push({ kind: 'pageerror', text: err?.stack || String(err), url: webError.page()?.url() || '' });
  });
  return context;
}

/**
 * Saves a full-page screenshot to artifacts/<name>.png and returns its path.
 *
 * @param {import('playwright-core').Page} page
 * @param {string} name
 */
export async function screenshot(page, name) {
  const file = artifactPath(name, '.png');
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// ---------------------------------------------------------------------------
// Simulated devices

/**
 * Runs `unhidra bench fleet`: one simulated ESP32 device per key, which
 * connects to `server`, sends heartbeats (with a slowly shrinking free
 * heap), answers pings and acks commands, and reconnects with backoff
 * unless the server closes it with a terminal code (e.g. 4501, revoked).
 *
 * Its progress lines (`t=5s devices=1 connected=1 … terminal=0 heartbeats=3
 * acks=0 …`) are parsed: `fleet.lastReport()` returns the latest as an
 * object of numbers (`connected`, `terminal`, `heartbeats`, `acks`, …), or
 * null before the first.
 *
 * @param {object} server from startServer (its wsURL and certificate are used)
 * @param {string[]} keys device API keys (from POST /api/v1/devices)
 * @param {object} [opts]
 * @param {string} [opts.duration='10m'] upper bound of the run; stop() ends it sooner
 * @param {string} [opts.heartbeatInterval='5s']
 * @param {string} [opts.reportEvery='5s'] period of the progress lines
 * @param {string[]} [opts.args] extra flags
 * @param {string} [opts.name] log name: artifacts/fleet-<name>.log
 * @returns {Promise<{ stop(): Promise<void>, lastReport(): object|null, output(): string, logPath: string, process: import('node:child_process').ChildProcess }>}
 */
export async function startFleet(server, keys, { duration = '10m', heartbeatInterval = '5s', reportEvery = '5s', args = [], name } = {}) {
  if (!keys.length) throw new Error('startFleet: no keys');
  // The keys are secrets: the simulator refuses a world-readable file.
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'unhidra-fleet-'));
  tempDirs.add(dir);
  const keysFile = path.join(dir, 'keys');
  await fsp.writeFile(keysFile, keys.join('\n') + '\n', { mode: 0o600 });

  name ||= `${fileTag}-${++serial}`;
  const logPath = artifactPath(`fleet-${name}`, '.log');
  const argv = [
    'bench', 'fleet',
    '--n', String(keys.length),
    '--url', server.wsURL,
    '--keys-file', keysFile,
    '--duration', duration,
    '--heartbeat-interval', heartbeatInterval,
    '--report-every', reportEvery,
    // Trust the server's self-signed certificate, as a real device would be
    // configured to.
    '--ca-file', server.certFile,
    ...args,
  ];
  const log = fs.openSync(logPath, 'a');
  fs.writeSync(log, `\n=== ${new Date().toISOString()} start: unhidra ${argv.join(' ')}\n`);
  const child = track(spawn(unhidraBin(), argv, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let partial = ''; // a chunk may end mid-line
  let last = null;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    fs.writeSync(log, chunk);
    out += chunk;
    const lines = (partial + chunk).split('\n');
    partial = lines.pop();
    for (const line of lines) {
      if (!/^t=\S+ devices=/.test(line)) continue;
      const r = {};
      for (const [, k, v] of line.matchAll(/(\w+)=(\d+)(?=\s|$)/g)) r[k] = Number(v);
      last = r;
    }
  });
  logStderrAndExit(child, log);

  return {
    process: child,
    logPath,
    output: () => out,
    lastReport: () => last,
    // SIGTERM ends the run (devices close with 1001 and a final report is
    // printed); SIGKILL if it lingers.
    stop: () => terminate(child, 10000),
  };
}
