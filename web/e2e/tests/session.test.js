// Sessions in the browser: short-lived access tokens are replaced in the
// background, by two tabs sharing one session, without signing either out
// (refresh tokens are single-use: a reuse would revoke the family), and the
// open WebSockets take the new tokens instead of being closed at expiry.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, launchBrowser, newContext, startServer, waitFor } from '../lib/harness.js';
import { PASSWORD, adminSession, connected, createUser, send, signIn } from '../lib/ui.js';

let server;
let browser;

before(async () => {
  // The shortest lifetime the server accepts: tokens expire during the test.
  server = await startServer({ env: { UNHIDRA_ADMIN_PASSWORD: PASSWORD }, args: ['--access-ttl', '1m'] });
  const admin = await adminSession(server);
  await createUser(server, admin.access_token, 'erin');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('two tabs keep one session alive across several token lifetimes', async () => {
  const ctx = await newContext(browser);
  const tab1 = await signIn(ctx, server, 'erin');
  const tab2 = await ctx.newPage(); // same profile: signed in already
  await tab2.goto(server.url);
  await connected(tab2);

  const token = () => tab1.evaluate(() => JSON.parse(localStorage.getItem('unhidra.session')).access_token);
  const seen = new Set([await token()]);
  // Past the first token's expiry and through several replacements.
  await waitFor(async () => { seen.add(await token()); return seen.size >= 4; }, 150000,
    { interval: 2000, message: 'the access token was not replaced' });

  for (const [i, tab] of [tab1, tab2].entries()) {
    await connected(tab); // never closed with 4005 (expired)
    await send(tab, `tab ${i + 1} still signed in`);
    await tab.locator('li[data-seq]').filter({ hasText: `tab ${i + 1} still signed in` }).waitFor();
  }
  await tab1.reload();
  await connected(tab1);

  const admin = await adminSession(server);
  const reuse = await api(server, 'GET', '/api/v1/admin/audit?action=token.reuse_detected', undefined, admin.access_token);
  assert.deepEqual(reuse.events, [], 'no refresh token was spent twice');
  assert.deepEqual(ctx.errors, []);
  await ctx.close();
});
