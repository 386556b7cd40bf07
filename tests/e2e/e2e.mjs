// End-to-end test of the lorabert page in real headless Chromium (WebGPU on SwiftShader).
// Usage: node e2e.mjs <base-url> <artefact-dir>
// The page must be served with the tiny model under fixtures/tiny/ and a few minBERT rows under
// fixtures/data/ (tests/e2e/run.sh sets this up). Exits non-zero on the first failed check.
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const base = process.argv[2] ?? 'http://127.0.0.1:8765/';
const out = process.argv[3] ?? '.';
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const fail = (msg) => { console.error(`E2E FAIL: ${msg}`); process.exitCode = 1; throw new Error(msg); };
const check = (ok, msg) => { if (!ok) fail(msg); console.log(`ok - ${msg}`); };

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'],
});
const logs = [];
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
  const page = await ctx.newPage();
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  await page.goto(base, { waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('ready'), null, { timeout: 120_000 });
  await page.waitForFunction(() => document.getElementById('device')?.textContent !== '?', null, { timeout: 120_000 });
  const device = await page.textContent('#device');
  console.log(`device: ${device}`);
  check(device.startsWith('WebGPU'), `the page trains on WebGPU (device: ${device})`);

  await page.fill('#model-url', 'fixtures/tiny/');
  await page.fill('#data-url', 'fixtures/data/');
  await page.selectOption('#task', 'sst');
  await page.fill('#max-train', '96');
  await page.fill('#max-dev', '32');
  await page.fill('#batch', '8');
  await page.fill('#max-len', '32');
  await page.fill('#epochs', '1');
  await page.fill('#max-steps', '12');
  await page.fill('#lr', '0.01');
  await page.fill('#rank', '2');
  const t0 = Date.now();
  await page.click('#start');
  await page.waitForFunction(
    () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
    null, { timeout: 600_000, polling: 500 });
  const err = await page.textContent('#error');
  check(!err, `training finished without error${err ? `: ${err}` : ''}`);
  console.log(`training took ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const losses = JSON.parse(await page.textContent('#loss-values'));
  check(losses.length >= 10, `a loss was shown for every step (${losses.length})`);
  check(losses.every(Number.isFinite), 'all losses are finite');
  const third = Math.floor(losses.length / 3);
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const first = mean(losses.slice(0, third)), last = mean(losses.slice(-third));
  check(last < first, `the loss decreases (first third ${first.toFixed(4)}, last third ${last.toFixed(4)})`);
  const metric = await page.textContent('#dev-metric');
  check(/SST accuracy [0-9.]+/.test(metric), `a dev metric is shown: ${metric}`);
  check(await page.locator('#loss-plot svg').count() === 1, 'the loss plot SVG exists');
  await page.waitForFunction(() => document.querySelectorAll('#results tr').length >= 2, null, { timeout: 30_000 });
  check(await page.locator('#rank-plot svg').count() >= 1, 'the rank plot SVG exists');
  const table = await page.textContent('#results');
  await page.screenshot({ path: `${out}/e2e-trained.png`, fullPage: true });

  await page.click('#share');
  await page.waitForFunction(() => document.getElementById('share-link')?.value.includes('#v1.'), null, { timeout: 10_000 });
  const link = await page.inputValue('#share-link');
  check(link.startsWith(base) && link.includes('#v1.'), `a share link was made (${link.length} characters)`);

  const shared = await ctx.newPage();
  shared.on('console', (m) => logs.push(`[shared console.${m.type()}] ${m.text()}`));
  await shared.addInitScript(() => localStorage.clear());
  await shared.goto(link, { waitUntil: 'load' });
  await shared.waitForFunction(() => document.getElementById('shared')?.textContent.includes('Shared results'), null, { timeout: 60_000 });
  const sharedTable = await shared.textContent('#results');
  check(sharedTable === table, 'the share link round-trips: same table');
  check(await shared.locator('#rerun').isVisible(), 'a shared view offers a re-run button');
  check(await shared.locator('#rank-plot svg').count() >= 1, 'the shared view draws the plot');
  await shared.screenshot({ path: `${out}/e2e-shared.png`, fullPage: true });

  const bad = await ctx.newPage();
  await bad.goto(base + '#v1.@@not-base64@@', { waitUntil: 'load' });
  await bad.waitForFunction(() => document.getElementById('error')?.textContent.includes('share link'), null, { timeout: 60_000 });
  check(true, `a corrupt share link gives an error: ${await bad.textContent('#error')}`);
  console.log('E2E PASS');
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  fs.writeFileSync(`${out}/e2e-console.log`, logs.join('\n') + '\n');
  if (process.exitCode) console.error(logs.slice(-40).join('\n'));
  await browser.close();
}
