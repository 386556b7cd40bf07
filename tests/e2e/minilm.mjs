// A real run in headless Chromium: all-MiniLM-L6-v2 on SST, served with tools/web_assets.sh.
// Not part of CI (minutes on the software WebGPU adapter). Prints the dev accuracy and examples/s
// the page shows and saves a screenshot.
// Usage: node minilm.mjs <base-url> <artefact-dir> [steps] [batch] [max-dev]
import { chromium } from 'playwright-core';

const [base = 'http://127.0.0.1:8766/', out = '.', steps = '20', batch = '16', maxDev = '200'] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'],
});
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 1400 } })).newPage();
  page.on('console', (m) => console.log(`[console] ${m.text()}`));
  await page.goto(base, { waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('ready'), null, { timeout: 120_000 });
  await page.waitForFunction(() => document.getElementById('device')?.textContent !== '?', null, { timeout: 120_000 });
  console.log(`device: ${await page.textContent('#device')}`);
  await page.selectOption('#task', 'sst');
  await page.fill('#max-dev', maxDev);
  if (process.env.MODEL_URL) await page.fill('#model-url', process.env.MODEL_URL);
  await page.fill('#batch', batch);
  await page.fill('#max-len', '64');
  await page.fill('#max-steps', steps);
  await page.fill('#rank', '1');
  const t0 = Date.now();
  await page.click('#start');
  await page.waitForFunction(
    () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
    null, { timeout: 3_600_000, polling: 1000 });
  const err = await page.textContent('#error');
  if (err) throw new Error(err);
  console.log(`wall: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`rate: ${await page.textContent('#rate')}`);
  console.log(`metric: ${await page.textContent('#dev-metric')}`);
  console.log(`results: ${await page.textContent('#results')}`);
  await page.screenshot({ path: `${out}/minilm-sst.png`, fullPage: true });
} finally {
  await browser.close();
}
