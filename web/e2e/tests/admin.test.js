// First start and administration in the browser: the bootstrap form,
// creating and disabling users (which ends their live session), the audit
// log's filters, live connections, ML workers, password changes, and the
// app on a phone-sized screen driven by the keyboard.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, newContext, screenshot, startServer, waitFor } from '../lib/harness.js';
import { PASSWORD, connected, send } from '../lib/ui.js';

let server;
let browser;
let adminCtx;
let admin; // page

before(async () => {
  server = await startServer(); // no UNHIDRA_ADMIN_PASSWORD: first start
  assert.ok(server.bootstrapCode, 'serve printed a one-time code');
  browser = await launchBrowser();
  adminCtx = await newContext(browser);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the first administrator is created with the one-time code', async () => {
  admin = await adminCtx.newPage();
  await admin.goto(server.url);
  await admin.getByRole('heading', { name: 'First start' }).waitFor();
  await screenshot(admin, 'first-start');
  await admin.getByLabel('One-time code').fill('not-the-code');
  await admin.getByLabel('Administrator name').fill('root');
  await admin.getByLabel(/^Password/).fill(PASSWORD);
  await admin.getByRole('button', { name: 'Create administrator' }).click();
  await admin.getByTestId('form-error').filter({ hasText: 'Invalid or expired bootstrap code.' }).waitFor();
  await admin.getByLabel('One-time code').fill(server.bootstrapCode);
  await admin.getByRole('button', { name: 'Create administrator' }).click();
  await connected(admin);
  await admin.getByRole('link', { name: 'Admin' }).waitFor();
});

test('an administrator creates a user, sees their connection, disables them and finds it in the audit log', async () => {
  await admin.getByRole('link', { name: 'Admin' }).click();
  await admin.getByRole('button', { name: 'Create user' }).click();
  await admin.getByLabel('Name').fill('carol');
  await admin.getByLabel('Initial password').fill(PASSWORD);
  await admin.getByRole('button', { name: 'Create', exact: true }).click();
  const row = admin.locator('tr', { hasText: 'carol' });
  await row.getByText('active').waitFor();

  // carol signs in with the keyboard only, on a phone-sized screen.
  const carolCtx = await newContext(browser, { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, reducedMotion: 'reduce' });
  const carol = await carolCtx.newPage();
  await carol.goto(server.url);
  await carol.getByLabel('Name').waitFor();
  await carol.keyboard.type('carol'); // the name field has focus
  await carol.keyboard.press('Tab');
  await carol.keyboard.type(PASSWORD);
  await carol.keyboard.press('Enter');
  await connected(carol);
  await send(carol, 'hello from a phone');
  await carol.locator('li[data-seq]').filter({ hasText: 'hello from a phone' }).waitFor();
  await carol.getByRole('button', { name: 'Conversations' }).click();
  await carol.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: /general/ }).waitFor();
  await screenshot(carol, 'phone-chat');
  await carol.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: /general/ }).click();

  await admin.getByRole('link', { name: 'Connections' }).click();
  await admin.locator('tr', { hasText: 'carol' }).first().waitFor();
  await screenshot(admin, 'admin-connections');

  await admin.getByRole('link', { name: 'Users' }).click();
  // Actions that cannot apply are not offered: none on one's own row.
  const own = admin.locator('tbody tr', { hasText: 'root' }).first();
  await own.getByText('you').waitFor();
  assert.equal(await own.getByRole('button').count(), 0);
  await row.getByRole('button', { name: 'Disable' }).click();
  await admin.getByRole('dialog').getByRole('button', { name: 'Disable' }).click();
  await row.getByText('disabled').waitFor();
  // Her open page is signed out at once (close code 4501).
  await carol.getByRole('heading', { name: 'Sign in' }).waitFor({ timeout: 15000 });

  await admin.getByRole('link', { name: 'Audit log' }).click();
  await admin.getByLabel('Action').fill('user.disabled');
  await admin.getByRole('button', { name: 'Filter' }).click();
  const events = admin.locator('tbody tr');
  // Only that action is left once the filtered page has replaced the other.
  const only = (action) => waitFor(async () => (await events.count()) > 0
    && (await events.filter({ hasNotText: action }).count()) === 0, 15000, { message: `only ${action} events` });
  await only('user.disabled');
  await admin.getByLabel('Action').fill('login.');
  await admin.getByRole('button', { name: 'Filter' }).click();
  await only('login.');
  await events.filter({ hasText: 'login.success' }).first().waitFor();
  await screenshot(admin, 'admin-audit');

  // Reset her password and enable her again: she signs in with the new one.
  await admin.getByRole('link', { name: 'Users' }).click();
  await row.getByRole('button', { name: 'Reset password' }).click();
  await admin.getByLabel(/^New password/).fill('a brand new secret 7');
  await admin.getByRole('button', { name: 'Reset', exact: true }).click();
  await row.getByRole('button', { name: 'Enable' }).click();
  await row.getByText('active').waitFor();
  await carol.getByLabel('Name').fill('carol');
  await carol.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await carol.getByRole('button', { name: 'Sign in' }).click();
  await carol.getByTestId('form-error').filter({ hasText: /invalid|incorrect/i }).waitFor();
  await carol.getByLabel('Password', { exact: true }).fill('a brand new secret 7');
  await carol.getByRole('button', { name: 'Sign in' }).click();
  await connected(carol);
  assert.deepEqual(carolCtx.errors.filter((e) => !/Failed to load resource/.test(e.text)), []);
  await carolCtx.close();
});

test('ML workers are listed and the administrator changes their own password', async () => {
  await admin.getByRole('link', { name: 'ML workers' }).click();
  await admin.locator('tbody tr').filter({ hasText: 'ready' }).first().waitFor({ timeout: 20000 });
  await screenshot(admin, 'admin-ml');

  await admin.getByRole('link', { name: 'root' }).click();
  await admin.getByLabel('Current password').fill(PASSWORD);
  await admin.getByLabel(/^New password/).fill('admin has a new one 9');
  await admin.getByLabel('Repeat the new password').fill('admin has a new one 9');
  await admin.getByRole('button', { name: 'Change password' }).click();
  await admin.getByText('Password changed.').waitFor();
  // The session goes on with the new tokens: the connection stays up.
  await connected(admin);
  await admin.getByTestId('sign-out').click();
  await admin.getByRole('heading', { name: 'Sign in' }).waitFor();
  await admin.getByLabel('Name').fill('root');
  await admin.getByLabel('Password', { exact: true }).fill('admin has a new one 9');
  await admin.getByRole('button', { name: 'Sign in' }).click();
  await connected(admin);
  // 401s from the failed sign-in attempts are logged by the browser.
  assert.deepEqual(adminCtx.errors.filter((e) => !/Failed to load resource/.test(e.text)), []);
});
