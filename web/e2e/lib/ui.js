// Steps through the web app that several test files share.

import { api } from './harness.js';

// A password that passes the server's policy for any of the test names.
export const PASSWORD = 'plenty of entropy 42';

// adminSession signs the environment's administrator in over the API.
export function adminSession(server) {
  return api(server, 'POST', '/api/v1/auth/login', { name: 'admin', password: PASSWORD });
}

// createUser creates an account as the administrator (not rate-limited
// like open registration) and returns it.
export async function createUser(server, adminToken, name) {
  return (await api(server, 'POST', '/api/v1/admin/users', { name, password: PASSWORD }, adminToken)).user;
}

// signIn opens the app in a new page of ctx and signs name in through the
// form; it returns once the WebSocket is connected.
export async function signIn(ctx, server, name, hash = '') {
  const page = await ctx.newPage();
  await page.goto(`${server.url}/${hash}`);
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await connected(page);
  return page;
}

// connected waits for the connection indicator to say so.
export function connected(page, timeout = 20000) {
  return page.getByTestId('conn-status').filter({ hasText: 'Connected' }).waitFor({ timeout });
}

// send types a message into the open conversation and presses Enter.
export async function send(page, text) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('composer').press('Enter');
}

// messageBodies lists the stored messages of the open conversation, in
// screen order, as {seq, body}.
export function storedMessages(page) {
  return page.locator('ol.messages:not(.pending-list) > li[data-seq]').evaluateAll((els) =>
    els.map((el) => ({ seq: Number(el.dataset.seq), body: el.querySelector('.msg-body').textContent })));
}
