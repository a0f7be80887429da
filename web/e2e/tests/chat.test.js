// Chat in the browser: two people in two browser contexts, DMs, typing,
// edits, hostile HTML, history scroll, and a server restart.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, launchBrowser, newContext, screenshot, startServer, waitFor } from '../lib/harness.js';
import { PASSWORD, adminSession, createUser, send, signIn, storedMessages, connected } from '../lib/ui.js';

let server;
let browser;
let admin;
let aliceCtx; let bobCtx;
let alice; let bob; // pages

before(async () => {
  // A generous send rate: the history test stores a few hundred messages.
  server = await startServer({
    env: { UNHIDRA_ADMIN_PASSWORD: PASSWORD },
    args: ['--send-rate', '1000', '--send-burst', '1000'],
  });
  admin = await adminSession(server);
  await createUser(server, admin.access_token, 'alice');
  await createUser(server, admin.access_token, 'bob');
  browser = await launchBrowser();
  aliceCtx = await newContext(browser);
  bobCtx = await newContext(browser);
  alice = await signIn(aliceCtx, server, 'alice');
  bob = await signIn(bobCtx, server, 'bob');
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('two people chat live, with delivery states, presence and typing', async () => {
  await send(alice, 'Hello Bob, it is Alice. The build is green again.');
  const mine = alice.locator('li[data-seq]').filter({ hasText: 'Hello Bob, it is Alice' });
  await mine.waitFor();
  await bob.locator('li[data-seq]').filter({ hasText: 'Hello Bob, it is Alice. The build is green again.' }).waitFor();
  // The pending entry is replaced by the stored message: nothing is left
  // "Sending…" and nothing appears twice.
  assert.equal(await alice.locator('.pending-list li').count(), 0);
  assert.equal(await alice.locator('li[data-seq]').filter({ hasText: 'Hello Bob, it is Alice' }).count(), 1);

  await send(bob, 'Great news!\nTwo lines, and Unicode: Grüße, καλημέρα, привет, مرحبا');
  await alice.locator('li[data-seq]').filter({ hasText: 'Two lines, and Unicode: Grüße, καλημέρα, привет, مرحبا' }).waitFor();

  // Typing: Bob sees Alice typing before she sends.
  await alice.getByTestId('composer').pressSequentially('still here', { delay: 20 });
  await bob.getByTestId('typing').filter({ hasText: 'alice is typing' }).waitFor();
  await alice.getByTestId('composer').press('Enter');

  // A message the server refuses is marked failed, with Retry and Discard.
  await send(alice, 'a NUL \u0000 byte is not allowed');
  const failed = alice.locator('.pending-list li[data-state="failed"]');
  await failed.getByTestId('send-status').filter({ hasText: 'Not sent' }).waitFor();
  await failed.getByRole('button', { name: 'Retry' }).waitFor();
  await failed.getByRole('button', { name: 'Discard' }).click();
  await failed.waitFor({ state: 'detached' });

  // Members and presence: Alice sees Bob online in the member list.
  await alice.getByRole('button', { name: 'Members' }).click();
  await alice.getByTestId('members').locator('li', { hasText: 'bob' }).locator('[data-presence="online"]').waitFor();
  await screenshot(alice, 'chat-alice');
  await alice.getByRole('button', { name: 'Members' }).click();
});

test('direct messages open by name, show unread counts and edits and deletions propagate', async () => {
  await alice.getByRole('button', { name: 'New direct message' }).click();
  await alice.getByLabel('To (names, separated by commas)').fill('bob');
  await alice.getByRole('button', { name: 'Open' }).click();
  await alice.getByTestId('conv-title').filter({ hasText: 'bob' }).waitFor();
  await send(alice, 'a private word');
  await alice.locator('li[data-seq]').filter({ hasText: 'a private word' }).waitFor();

  // Bob is in #general: the DM appears in his list with an unread badge.
  const dm = bob.getByTestId('dms').locator('a', { hasText: 'alice' });
  await dm.getByTestId('unread').filter({ hasText: '1' }).waitFor();
  await dm.click();
  const msg = bob.locator('li[data-seq]').filter({ hasText: 'a private word' });
  await msg.waitFor();
  await dm.getByTestId('unread').waitFor({ state: 'detached' });

  // Alice edits, then deletes; Bob sees both.
  const own = alice.locator('li[data-seq]').filter({ hasText: 'a private word' });
  await own.hover();
  await own.getByRole('button', { name: 'Edit' }).click();
  await alice.getByLabel('Edit message').fill('a corrected private word');
  await alice.getByLabel('Edit message').press('Enter');
  await bob.locator('li[data-seq]').filter({ hasText: 'a corrected private word' }).filter({ hasText: '(edited)' }).waitFor();
  const edited = alice.locator('li[data-seq]').filter({ hasText: 'a corrected private word' });
  await edited.hover();
  await edited.getByRole('button', { name: 'Delete' }).click();
  await alice.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await bob.locator('li[data-seq]').filter({ hasText: 'This message was deleted.' }).waitFor();
  assert.equal(await bob.locator('li[data-seq]').filter({ hasText: 'private word' }).count(), 0);
});

test('channels are created, joined and left', async () => {
  await alice.getByRole('button', { name: 'New channel' }).click();
  await alice.getByLabel('Name').fill('ops room');
  await alice.getByRole('button', { name: 'Create' }).click();
  await alice.getByTestId('conv-title').filter({ hasText: 'ops room' }).waitFor();
  await send(alice, 'welcome to ops');
  await alice.locator('li[data-seq]').filter({ hasText: 'welcome to ops' }).waitFor();

  // Bob finds it among the public channels he is not in (the list is
  // reloaded when he moves between conversations) and joins it.
  await bob.getByTestId('channels').locator('a', { hasText: 'general' }).click();
  await bob.getByTestId('conv-title').filter({ hasText: 'general' }).waitFor();
  const joinable = bob.locator('.joinable', { hasText: 'ops room' });
  await joinable.getByRole('button', { name: 'Join' }).click();
  await bob.getByTestId('conv-title').filter({ hasText: 'ops room' }).waitFor();
  await bob.locator('li[data-seq]').filter({ hasText: 'welcome to ops' }).waitFor();
  await send(bob, 'glad to be here');
  await alice.locator('li[data-seq]').filter({ hasText: 'glad to be here' }).waitFor();

  await bob.getByRole('button', { name: 'Leave' }).click();
  await bob.getByRole('dialog').getByRole('button', { name: 'Leave' }).click();
  await bob.locator('.joinable', { hasText: 'ops room' }).waitFor();
  assert.equal(await bob.getByTestId('channels').locator('a', { hasText: 'ops room' }).count(), 0);
});

test('hostile HTML in a message renders as text and runs nothing', async () => {
  await alice.goto(`${server.url}/#/chat/chn_general`);
  await bob.goto(`${server.url}/#/chat/chn_general`);
  await connected(alice);
  await connected(bob);
  const payloads = [
    '<img src=x onerror="window.__pwned=1">',
    '<script>window.__pwned=2</script>',
    '<a href="javascript:window.__pwned=3">click</a><svg onload="window.__pwned=4"></svg>',
    '👋🏽 emoji, 你好, and a right-to-left \u202Eoverride',
  ];
  for (const p of payloads) await send(alice, p);
  for (const p of payloads) {
    // Exactly the characters that were sent, as text.
    await bob.locator('li[data-seq] .msg-body').filter({ hasText: p }).first().waitFor();
  }
  const bodies = (await storedMessages(bob)).map((m) => m.body);
  for (const p of payloads) assert.ok(bodies.includes(p), `shown as text: ${p}`);
  assert.equal(await bob.locator('.messages img, .messages script, .messages svg, .messages a[href^="javascript"]').count(), 0);
  assert.equal(await bob.evaluate(() => window.__pwned), undefined);

  // The longest message, one unbroken word, wraps inside the view.
  const long = 'x'.repeat(3990) + 'THE-END';
  await send(alice, long);
  await bob.locator('li[data-seq] .msg-body').filter({ hasText: 'THE-END' }).waitFor();
  const scroller = bob.getByTestId('scroller');
  assert.ok(await scroller.evaluate((el) => el.scrollWidth <= el.clientWidth), 'no horizontal overflow');
  await screenshot(bob, 'chat-hostile-html');
});

test('scrolling up pages through the whole history without gaps or repeats', async () => {
  const general = 'chn_general';
  const { access_token: token } = await api(server, 'POST', '/api/v1/auth/login', { name: 'alice', password: PASSWORD });
  const before = (await api(server, 'GET', `/api/v1/channels/${general}/messages?limit=1`, undefined, token)).messages.at(-1).seq;
  const N = 230;
  for (let i = 1; i <= N; i++) {
    await api(server, 'POST', `/api/v1/channels/${general}/messages`, { body: `history line ${i}`, id: `h-${i}` }, token);
  }
  const ctx = await newContext(browser);
  const page = await signIn(ctx, server, 'bob', '#/chat/chn_general');
  await page.locator('li[data-seq]').filter({ hasText: `history line ${N}` }).waitFor();
  const scroller = page.getByTestId('scroller');
  // Scroll to the top until the app says it reached the beginning.
  await waitFor(async () => {
    await scroller.evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
    return (await page.locator('.older').textContent()).includes('beginning of the conversation');
  }, 30000, { interval: 300, message: 'history did not reach the beginning' });
  const msgs = await storedMessages(page);
  const seqs = msgs.map((m) => m.seq);
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), 'seqs 1..n in order, once each');
  assert.ok(seqs.length >= before + N);
  const lines = msgs.map((m) => m.body).filter((b) => b.startsWith('history line '));
  assert.deepEqual(lines, Array.from({ length: N }, (_, i) => `history line ${i + 1}`));
  await screenshot(page, 'chat-history');
  assert.deepEqual(ctx.errors, []);
  await ctx.close();
});

test('after a server restart the app reconnects and resumes without gaps or doubles', async () => {
  const general = 'chn_general';
  await send(alice, 'before the restart');
  await bob.locator('li[data-seq]').filter({ hasText: 'before the restart' }).waitFor();

  await server.stop();
  // Written while the server is down: stays pending, then is stored once.
  await send(bob, 'sent while the server was down');
  await bob.locator('.pending-list li').filter({ hasText: 'sent while the server was down' }).waitFor();
  await bob.getByTestId('conn-status').filter({ hasText: 'Reconnecting' }).waitFor({ timeout: 20000 });
  // The tab keeps it across a reload (sessionStorage), and reloads at once
  // when the server is back: the message is sent from the restored outbox
  // unless the old page got it out first, and is stored once either way.
  assert.match(await bob.evaluate(() => sessionStorage.getItem('unhidra.outbox')), /sent while the server was down/);
  await server.restart();
  await bob.reload();

  // Messages stored before the browsers are back.
  const { access_token: token } = await api(server, 'POST', '/api/v1/auth/login', { name: 'admin', password: PASSWORD });
  for (let i = 1; i <= 5; i++) {
    await api(server, 'POST', `/api/v1/channels/${general}/messages`, { body: `while you were away ${i}`, id: `away-${i}` }, token);
  }
  await connected(alice, 40000);
  await connected(bob, 40000);
  await send(alice, 'after the restart');
  for (const page of [alice, bob]) {
    await page.locator('li[data-seq]').filter({ hasText: 'after the restart' }).waitFor({ timeout: 20000 });
    await page.locator('li[data-seq]').filter({ hasText: 'sent while the server was down' }).waitFor();
    const msgs = await storedMessages(page);
    const seqs = msgs.map((m) => m.seq);
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `contiguous seqs: ${seqs.slice(Math.max(0, i - 2), i + 2)}`);
    const bodies = msgs.map((m) => m.body);
    for (let i = 1; i <= 5; i++) assert.equal(bodies.filter((b) => b === `while you were away ${i}`).length, 1);
    assert.equal(bodies.filter((b) => b === 'sent while the server was down').length, 1);
  }
  // Stored once on the server too, though sent twice (before and after).
  const page = await api(server, 'GET', `/api/v1/channels/${general}/messages?limit=50`, undefined, token);
  assert.equal(page.messages.filter((m) => m.body === 'sent while the server was down').length, 1);
  await screenshot(bob, 'chat-after-restart');
  for (const ctx of [aliceCtx, bobCtx]) {
    // WebSocket errors while the server was down are expected; nothing else.
    assert.deepEqual(ctx.errors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(e.text)), []);
  }
});
