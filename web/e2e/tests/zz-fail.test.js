import { test } from 'node:test';
import fs from 'node:fs';
import { startServer, startFleet, api, launchBrowser } from '../lib/harness.js';
test('fails with live processes', async () => {
  const s = await startServer({ name: 'fail' });
  const a = await api(s, 'POST', '/api/v1/auth/bootstrap', { code: s.bootstrapCode, name: 'admin', password: 'admin-password-1' });
  const d = await api(s, 'POST', '/api/v1/devices', { name: 'x', type: 'esp32' }, a.access_token);
  const f = await startFleet(s, [d.api_key]);
  const b = await launchBrowser();
  fs.writeFileSync('/tmp/e2e-pids', `${s.process.pid} ${f.process.pid}\n`);
  if (process.env.HANG) await new Promise(() => setTimeout(() => {}, 1e9));
  throw new Error('deliberate');
});
