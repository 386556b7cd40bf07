// Where the page's training time goes: not a test, a measuring tool (docs/performance.md, "Where the page's time goes").
// Usage: node profile.mjs <base-url> [steps] [profile.cpuprofile]
// With the page served as tests/e2e/run.sh serves it (dist/ with fixtures/tiny and fixtures/data),
// trains the tiny BERT on SST (LoRA r = 2, batch 8 x 32, 400 rows) in headless Chromium, records a
// CPU profile of the page's main thread (Chrome DevTools Protocol, 0.5 ms sampling) from step 6 on,
// and prints the page's seconds per step (first step, and median of steps 6..), then the functions
// with the largest share of the main thread's time, callees included. The profile is written for
// Chromium's DevTools (Performance panel, "Load profile").
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const base = process.argv[2] ?? 'http://127.0.0.1:8765/';
const steps = process.argv[3] ?? '25';
const out = process.argv[4] ?? 'page.cpuprofile';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu',
    ...(process.env.CHROMIUM_FLAGS ?? '').split(' ').filter(Boolean)],
});
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(base, { waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('ready'), null, { timeout: 120_000 });
  await page.fill('#model-url', 'fixtures/tiny/');
  await page.fill('#data-url', 'fixtures/data/');
  await page.selectOption('#task', 'sst');
  for (const [id, v] of [['max-train', '400'], ['max-dev', '32'], ['batch', '8'], ['max-len', '32'], ['epochs', '1'],
    ['max-steps', steps], ['lr', '0.01'], ['rank', '2']]) await page.fill(`#${id}`, v);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 500 });
  await page.click('#start');
  const stepsDone = () => JSON.parse(document.getElementById('step-seconds')?.textContent || '[]').length;
  await page.waitForFunction(stepsDone, null, { timeout: 600_000, polling: 200 }).then(() => page.waitForFunction(
    (n) => JSON.parse(document.getElementById('step-seconds')?.textContent || '[]').length >= n, 5, { timeout: 600_000, polling: 200 }));
  await cdp.send('Profiler.start');
  await page.waitForFunction(
    () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
    null, { timeout: 600_000, polling: 500 });
  const { profile } = await cdp.send('Profiler.stop');
  fs.writeFileSync(out, JSON.stringify(profile));
  const err = await page.textContent('#error');
  if (err) throw new Error(err);
  const secs = JSON.parse(await page.textContent('#step-seconds'));
  const rest = secs.slice(5).sort((a, b) => a - b);
  console.log(`seconds per step: ${JSON.stringify(secs.map((x) => +x.toFixed(3)))}`);
  console.log(`first step ${secs[0].toFixed(2)} s; steps 6..${secs.length}: median ${rest[rest.length >> 1].toFixed(3)} s`);

  // Inclusive time per function name (each sample counted once per function on its stack).
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const d = profile.timeDeltas[i] ?? 0;
    total += d;
    const seen = new Set();
    for (let x = id; x !== undefined; x = parent.get(x)) {
      const f = byId.get(x).callFrame.functionName.replace(/::h[0-9a-f]{16}$/, '') || '(anonymous)';
      if (!seen.has(f)) { seen.add(f); incl.set(f, (incl.get(f) ?? 0) + d); }
    }
  });
  console.log(`main thread, ${(total / 1e6).toFixed(1)} s profiled (share of time, callees included):`);
  for (const [k, v] of [...incl.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 40))) {
    console.log(`${(100 * v / total).toFixed(1).padStart(5)}%  ${k.slice(0, 150)}`);
  }
} finally {
  await browser.close();
}
