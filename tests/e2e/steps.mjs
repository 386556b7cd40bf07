import fs from 'node:fs';

// The page's seconds per step (`#step-seconds`, a JSON array) as one line for the test logs:
// the first three steps (shader compilation) and the median of the rest.
export function stepSummary(json) {
  const secs = JSON.parse(json);
  const later = secs.slice(3).sort((a, b) => a - b);
  return `page seconds per step: first 3 (shader compilation) ${secs.slice(0, 3).map((x) => x.toFixed(2)).join(', ')}; median of the rest ${later[later.length >> 1]?.toFixed(3)}`;
}

// Chromium's flags for WebGPU here (SwiftShader) and a quiet start, as the Chromium tests launch it.
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'];

// A new page of the Playwright context `ctx` at `base`, its console and errors appended to `logs`,
// once the page is ready and has probed its device.
export async function openPage(ctx, base, logs) {
  const page = await ctx.newPage();
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  await page.goto(base, { waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('ready'), null, { timeout: 120_000 });
  await page.waitForFunction(() => document.getElementById('device')?.textContent !== '?', null, { timeout: 120_000 });
  return page;
}

// Presses "Download adapter" on the Playwright `page` and saves the files into `dir` (emptied
// first); returns their names, sorted.
export async function downloadCheckpoint(page, dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const saved = [];
  const onDownload = (d) => saved.push(d.saveAs(`${dir}/${d.suggestedFilename()}`));
  page.on('download', onDownload);
  await page.click('#download-adapter');
  for (let i = 0; i < 100 && saved.length < 4; i++) await page.waitForTimeout(100);
  await Promise.all(saved);
  page.off('download', onDownload);
  return fs.readdirSync(dir).sort();
}
