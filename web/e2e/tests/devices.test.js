// Devices in the browser: register a device (key shown once), watch a
// simulated device (`unhidra bench fleet`) come online, send it a command
// and see the answer, then revoke it and see it go offline.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, launchBrowser, newContext, screenshot, startFleet, startServer, waitFor } from '../lib/harness.js';
import { PASSWORD, adminSession, createUser, signIn } from '../lib/ui.js';

let server;
let browser;
let fleet;

before(async () => {
  server = await startServer({ env: { UNHIDRA_ADMIN_PASSWORD: PASSWORD } });
  const admin = await adminSession(server);
  await createUser(server, admin.access_token, 'dora');
  browser = await launchBrowser();
});

after(async () => {
  await fleet?.stop();
  await browser?.close();
  await server?.stop();
});

test('a device registered in the browser comes online, runs a command and goes offline when revoked', async () => {
  const ctx = await newContext(browser);
  const page = await signIn(ctx, server, 'dora', '#/devices');
  await page.getByText('No devices yet').waitFor();

  // Register: the key is shown once, in a dialog with a copy button.
  await page.getByRole('button', { name: 'Register device' }).click();
  await page.getByLabel('Name').fill('greenhouse-3');
  await page.getByRole('button', { name: 'Register', exact: true }).click();
  const secret = page.getByTestId('secret');
  await secret.waitFor();
  const key = await secret.inputValue();
  assert.match(key, /^unhidra_dk_[0-9a-f]{16}_[0-9a-f]{64}$/);
  await page.getByRole('button', { name: 'Copy' }).click();
  await page.getByRole('dialog').getByText(/Copied|copy it by hand/).waitFor();
  await page.getByRole('button', { name: 'Done' }).click();

  const row = page.getByTestId('fleet').locator('tr', { hasText: 'greenhouse-3' });
  await row.getByTestId('device-state').filter({ hasText: 'offline' }).waitFor();

  fleet = await startFleet(server, [key], { heartbeatInterval: '2s' });
  await row.getByTestId('device-state').filter({ hasText: 'online' }).waitFor({ timeout: 30000 });
  await screenshot(page, 'devices-fleet');

  // The device page: command round trip through the simulated firmware.
  await row.getByRole('link', { name: 'greenhouse-3' }).click();
  await page.getByRole('heading', { name: 'greenhouse-3' }).waitFor();
  await page.getByTestId('command-name').fill('blink');
  await page.getByLabel('Parameters (JSON, optional)').fill('{"times": 3}');
  await page.getByRole('button', { name: 'Send command' }).click();
  const cmd = page.getByTestId('command-list').locator('li', { hasText: 'blink' });
  await cmd.getByTestId('command-status').filter({ hasText: 'acked' }).waitFor({ timeout: 30000 });
  await waitFor(() => (fleet.lastReport()?.acks ?? 0) >= 1, 20000, { message: 'the fleet reported no ack' });

  // Heartbeats fill the free-heap chart; the ML worker answers the analysis.
  await waitFor(async () => {
    await page.getByRole('button', { name: '1h' }).click();
    return (await page.getByTestId('heap-chart').locator('svg polyline, svg circle').count()) > 0;
  }, 30000, { interval: 1000, message: 'no heap chart' });
  await page.getByTestId('analysis').getByText(/Heap trend|memory leak/i).waitFor();
  await screenshot(page, 'device-page');

  // ML findings as the page shows them. A leak takes hours of heartbeats to
  // show, so the device's analysis answer is replaced here with one built
  // from the real models' output on a leaking series and a temperature spike.
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem('unhidra.session')).access_token);
  const now = Math.floor(Date.now() / 1000);
  const heap = (await api(server, 'POST', '/api/v1/ml/infer', {
    model: 'heap-trend',
    input: { series: Array.from({ length: 120 }, (_, i) => [now - (120 - i) * 60, 200000 - i * 300 + (i % 3) * 7]) },
  }, token)).result;
  const telemetry = (await api(server, 'POST', '/api/v1/ml/infer', {
    model: 'telemetry-anomaly',
    input: { metrics: { temp: [20, 20.1, 19.9, 20, 35, 20.2, 20, 19.8, 20.1].map((v, i) => [now - 600 + i * 60, v]) }, window: 5 },
  }, token)).result;
  assert.equal(heap.leak, true, 'the model sees the leak');
  await page.route('**/api/v1/devices/*/analysis', (route) => route.fulfill({
    json: { analysis: { device: 'x', at: new Date().toISOString(), heap_points: 120, heap, telemetry } },
  }));
  await page.reload();
  const findings = page.getByTestId('analysis');
  await findings.getByTestId('leak').filter({ hasText: 'Memory leak suspected' }).waitFor();
  await findings.getByText(`${heap.hours_to_exhaustion.toFixed(1)} h`).waitFor();
  await findings.locator('li', { hasText: 'temp' }).filter({ hasText: '35' }).waitFor();
  await screenshot(page, 'device-findings');
  await page.unroute('**/api/v1/devices/*/analysis');

  // Rotating the key shows the new one once and cuts off the old one.
  await page.getByRole('button', { name: 'Rotate key' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Rotate' }).click();
  const newKey = await page.getByTestId('secret').inputValue();
  assert.match(newKey, /^unhidra_dk_/);
  assert.notEqual(newKey, key);
  await page.getByRole('button', { name: 'Done' }).click();
  await waitFor(() => (fleet.lastReport()?.terminal ?? 0) >= 1, 20000, { message: 'the old key kept its connection' });
  await page.locator('.page-head').getByTestId('device-state').filter({ hasText: 'offline' }).waitFor({ timeout: 20000 });
  await fleet.stop();
  fleet = await startFleet(server, [newKey], { heartbeatInterval: '2s' });
  await page.locator('.page-head').getByTestId('device-state').filter({ hasText: 'online' }).waitFor({ timeout: 30000 });

  // A bad parameter is refused in place, without losing the form.
  await page.getByTestId('command-name').fill('blink');
  await page.getByLabel('Parameters (JSON, optional)').fill('{not json');
  await page.getByRole('button', { name: 'Send command' }).click();
  await page.getByText('Parameters must be valid JSON.').waitFor();

  // Revoke: the server closes the device's connection for good.
  await page.getByRole('button', { name: 'Revoke' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await page.locator('.page-head').getByTestId('device-state').filter({ hasText: 'offline' }).filter({ hasText: 'revoked' }).waitFor({ timeout: 20000 });
  await waitFor(() => (fleet.lastReport()?.terminal ?? 0) >= 1, 20000, { message: 'the simulated device was not closed for good' });
  await page.getByRole('link', { name: '← All devices' }).click();
  await page.getByTestId('fleet').locator('tr', { hasText: 'greenhouse-3' }).getByTestId('device-state').filter({ hasText: 'offline' }).waitFor();
  assert.deepEqual(ctx.errors, []);
  await ctx.close();
});
