// Tests of the e2e harness itself, against the server as it is (no web UI
// pages yet): servers with their bootstrap code, the browser over the
// self-signed TLS (HTTP and WebSocket), simulated devices, restarts.
//
// The tests share one server and run in order; each later one builds on
// the accounts and state the earlier ones made.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { api, launchBrowser, newContext, screenshot, startFleet, startServer, waitFor } from '../lib/harness.js';

// Timeouts below are failure guards only, never assertions about speed.
const GUARD = { timeout: 90_000 };

const ADMIN = { name: 'admin', password: 'tidal copper lantern 1' };
const ALICE = { name: 'alice', password: 'quiet maple harbor 1' };

let dataDir;
let server;
let browser;
let context;
let page;
let fleet;
let adminSession;
let aliceSession;

before(async () => {
  dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'unhidra-e2e-harness-'));
});

after(async () => {
  // Each step is guarded so that one failure does not leak the rest.
  await fleet?.stop().catch(() => {});
  await browser?.close().catch(() => {});
  await server?.stop().catch(() => {});
  if (dataDir) await fsp.rm(dataDir, { recursive: true, force: true });
});

/** Opens a WebSocket from the page and resolves to its first frame. */
function welcomeFromPage(p, wsURL, token) {
  return p.evaluate(({ wsURL, token }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(wsURL, ['unhidra.v1', `bearer.${token}`]);
    ws.onmessage = (ev) => {
      resolve({ protocol: ws.protocol, frame: JSON.parse(ev.data) });
      ws.close(1000);
    };
    ws.onclose = (ev) => reject(new Error(`closed before a frame: ${ev.code}`));
  }), { wsURL, token });
}

test('a server on an empty data dir prints a bootstrap code; admin and users can be created', GUARD, async () => {
  assert.deepEqual(fs.readdirSync(dataDir), []);
  server = await startServer({ dataDir, name: 'harness' });

  assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(server.wsURL, `wss://127.0.0.1:${server.port}/ws`);
  assert.ok(fs.existsSync(server.certFile), 'the self-signed certificate is in the data dir');
  assert.equal(typeof server.bootstrapCode, 'string');
  assert.ok(server.bootstrapCode.length >= 8, `bootstrap code ${server.bootstrapCode}`);

  assert.deepEqual(await api(server, 'GET', '/api/v1/auth/bootstrap'), { pending: true });
  adminSession = await api(server, 'POST', '/api/v1/auth/bootstrap', { code: server.bootstrapCode, ...ADMIN });
  assert.equal(adminSession.user.role, 'admin');
  assert.ok(adminSession.access_token);

  // The code is single-use: a second bootstrap is refused, and api()
  // reports the server's error.
  await assert.rejects(
    api(server, 'POST', '/api/v1/auth/bootstrap', { code: server.bootstrapCode, name: 'mallory', password: 'velvet shovel orbit' }),
    (err) => err.status >= 400 && err.status < 500 && typeof err.code === 'string',
  );

  aliceSession = await api(server, 'POST', '/api/v1/auth/register', ALICE);
  assert.equal(aliceSession.user.name, ALICE.name);
  assert.notEqual(aliceSession.user.role, 'admin');
  const me = await api(server, 'GET', '/api/v1/me', undefined, aliceSession.access_token);
  assert.equal(me.user.id, aliceSession.user.id);
});

test('the browser loads pages and opens a WebSocket over the self-signed TLS', GUARD, async () => {
  browser = await launchBrowser();
  context = await newContext(browser);
  page = await context.newPage();

  const res = await page.goto(`${server.url}/healthz`);
  assert.equal(res.status(), 200);
  assert.deepEqual(JSON.parse(await page.textContent('body')), { status: 'ok' });

  // The page is on the server's origin, which the gateway's Origin check allows.
  const { protocol, frame } = await welcomeFromPage(page, server.wsURL, aliceSession.access_token);
  assert.equal(protocol, 'unhidra.v1');
  assert.equal(frame.type, 'welcome');
  assert.equal(frame.identity.id, aliceSession.user.id);
  assert.equal(frame.identity.kind, 'person');

  const shot = await screenshot(page, 'harness-healthz');
  assert.ok(fs.statSync(shot).size > 0);

  // Chromium asks for /favicon.ico, which the API server answers with 404:
  // that console error is not the page's fault.
  const errors = context.errors.filter((e) => !e.url.endsWith('/favicon.ico'));
  assert.deepEqual(errors, []);
});

test('a simulated device comes online, and revocation disconnects it', GUARD, async () => {
  const token = aliceSession.access_token;
  const { device, api_key: key } = await api(server, 'POST', '/api/v1/devices', { name: 'e2e-sensor', type: 'esp32' }, token);
  assert.match(device.id, /^dev_/);
  const get = async () => (await api(server, 'GET', `/api/v1/devices/${device.id}`, undefined, token)).device;
  assert.equal((await get()).state, 'offline');

  fleet = await startFleet(server, [key], { reportEvery: '1s' });
  await waitFor(async () => (await get()).state === 'online', 30_000, { message: 'device online' });
  // The heartbeat carries the (fake) free heap.
  await waitFor(async () => (await get()).free_heap > 0, 30_000, { message: 'free_heap reported' });

  assert.equal(await api(server, 'DELETE', `/api/v1/devices/${device.id}`, undefined, token), null);
  // The server closes the connection with 4501, which the simulated
  // firmware takes as final: connected 0, terminal 1, no reconnect.
  await waitFor(() => {
    const r = fleet.lastReport();
    return r && r.connected === 0 && r.terminal === 1;
  }, 30_000, { message: 'fleet disconnected for good' });
  await waitFor(async () => (await get()).state === 'offline', 30_000, { message: 'device offline' });
  assert.equal((await get()).revoked, true);

  await fleet.stop();
  assert.equal(fleet.process.exitCode, 0, fleet.output());
  fleet = undefined;
});

test('restart() keeps the port and the data, and the page reconnects', GUARD, async () => {
  const { port, url, wsURL } = server;
  await server.restart();

  assert.equal(server.port, port);
  assert.equal(server.url, url);
  assert.equal(server.wsURL, wsURL);
  assert.equal(server.bootstrapCode, null, 'accounts exist: no new bootstrap code');

  const session = await api(server, 'POST', '/api/v1/auth/login', ALICE);
  assert.equal(session.user.id, aliceSession.user.id);
  const { devices } = await api(server, 'GET', '/api/v1/devices', undefined, session.access_token);
  assert.equal(devices.length, 1);
  assert.equal(devices[0].revoked, true);

  // The page still has the server's origin: a new WebSocket from it
  // reaches the restarted server.
  const { frame } = await welcomeFromPage(page, server.wsURL, session.access_token);
  assert.equal(frame.type, 'welcome');
  assert.equal(frame.identity.id, aliceSession.user.id);
});
