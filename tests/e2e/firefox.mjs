// The page's f16 path in a real browser: headless Firefox ESR (WebGPU behind the pref
// dom.webgpu.enabled; wgpu on Mesa's lavapipe, with `shader-f16`), driven by puppeteer-core over
// WebDriver BiDi. Trains the tiny BERT with DoRA and LoRA r = 2, each in f16 and in f32
// (FF_CASES, default `dora:f16,lora:f16,dora:f32,lora:f32`), and asserts that each trained in that
// precision with finite, falling losses and a dev metric. Then it trains the same configuration
// natively (`lorabert train --backend wgpu` on lavapipe, the same precision) and asserts that
// every point of the two loss curves agrees within 5e-3 relative in f16 (the f16 tolerance of
// tests/mixed.rs) and 1e-4 in f32 (the same seed starts both alike: initial weights are drawn on
// the host, src/model/init.rs; dropout masks come from the same hash on both), and prints both
// examples/s.
// Usage: node firefox.mjs <base-url> <artefact-dir>   (tests/e2e/run.sh sets up the page and env)
import puppeteer from 'puppeteer-core';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { stepSummary } from './steps.mjs';

const base = process.argv[2] ?? 'http://127.0.0.1:8765/';
const out = path.resolve(process.argv[3] ?? '.');
const bin = path.resolve(process.env.LORABERT_BIN ?? 'target/release/lorabert');
const tinyModel = path.resolve(process.env.TINY_MODEL ?? 'dist/fixtures/tiny');
const dataDir = path.resolve(process.env.E2E_DATA ?? 'dist/fixtures/data');
const fail = (msg) => { console.error(`FIREFOX E2E FAIL: ${msg}`); process.exitCode = 1; throw new Error(msg); };
const check = (ok, msg) => { if (!ok) fail(msg); console.log(`ok - ${msg}`); };

const config = { rank: '2', alpha: '8', maxTrain: '96', maxDev: '32', batch: '8', maxLen: '32', steps: '8', lr: '0.01' };

const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
  headless: true,
  extraPrefsFirefox: { 'dom.webgpu.enabled': true, 'gfx.webgpu.ignore-blocklist': true },
});
const logs = [];
try {
  const page = await browser.newPage();
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  await page.goto(base, { waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('ready'), { timeout: 120_000 });
  await page.waitForFunction(() => document.getElementById('device')?.textContent !== '?', { timeout: 120_000 });
  const device = await page.$eval('#device', (e) => e.textContent);
  console.log(`device: ${device}`);
  check(device.startsWith('WebGPU') && device.includes('shader-f16'), `Firefox offers WebGPU with shader-f16 (${device})`);
  const set = (id, v) => page.evaluate((id, v) => {
    const e = document.getElementById(id);
    e.value = v;
    e.dispatchEvent(new Event('change'));
  }, id, v);
  const cases = (process.env.FF_CASES ?? 'dora:f16,lora:f16,dora:f32,lora:f32').split(',').map((c) => c.split(':'));
  for (const [adapter, precision] of cases) {
    const name = `${adapter} ${precision}`;
    for (const [id, v] of [['model-url', 'fixtures/tiny/'], ['data-url', 'fixtures/data/'], ['task', 'sst'],
      ['adapter', adapter], ['rank', config.rank], ['alpha', config.alpha], ['targets', 'all-linear'],
      ['precision', precision], ['max-train', config.maxTrain], ['max-dev', config.maxDev], ['batch', config.batch],
      ['max-len', config.maxLen], ['epochs', '1'], ['max-steps', config.steps], ['lr', config.lr]]) await set(id, v);
    await page.evaluate(() => { document.getElementById('dev-metric').textContent = ''; });
    const before = await page.evaluate(() => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length);
    const t0 = Date.now();
    await page.click('#start');
    await page.waitForFunction(
      () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
      { timeout: 900_000, polling: 500 });
    const err = await page.$eval('#error', (e) => e.textContent);
    check(!err, `${name}: training finished without error${err ? `: ${err}` : ''}`);
    // The run is recorded once its best checkpoint is kept in the browser's store.
    await page.waitForFunction((n) => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length > n, { timeout: 60_000, polling: 100 }, before);
    const wall = (Date.now() - t0) / 1000;
    const runs = JSON.parse(await page.evaluate(() => localStorage.getItem('lorabert.runs.v1')));
    const run = runs.at(-1);
    check(run.row.p === precision && run.row.a === adapter, `${name}: the page trained ${run.row.a} in ${run.row.p}`);
    const rate = await page.$eval('#rate', (e) => e.textContent);
    const losses = JSON.parse(await page.$eval('#loss-values', (e) => e.textContent));
    check(losses.length === Number(config.steps) && losses.every(Number.isFinite), `${name}: a finite loss for each of the ${config.steps} steps`);
    const third = Math.floor(losses.length / 3);
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    check(mean(losses.slice(-third)) < mean(losses.slice(0, third)), `${name}: the loss decreases (${mean(losses.slice(0, third)).toFixed(4)} -> ${mean(losses.slice(-third)).toFixed(4)})`);
    const metric = await page.$eval('#dev-metric', (e) => e.textContent);
    check(/SST accuracy [0-9.]+/.test(metric), `${name}: a dev metric is shown: ${metric}`);
    console.log(`${name}: page ${wall.toFixed(1)} s, ${run.examples_per_second.toFixed(2)} ex/s (${rate}); loss curve ${JSON.stringify(run.loss_curve)}`);
    await page.screenshot({ path: `${out}/firefox-${adapter}-${precision}.png`, fullPage: true });

    const native = `${out}/firefox-native-${adapter}-${precision}`;
    fs.rmSync(native, { recursive: true, force: true });
    execFileSync(bin, ['train', '--backend', 'wgpu', '--precision', precision, '--task', 'sst', '--adapter', adapter,
      '--r', config.rank, '--lora-alpha', config.alpha, '--lora-dropout', '0', '--target-modules', 'all-linear',
      '--epochs', '1', '--max-steps', config.steps, '--batch-size', config.batch, '--max-len', config.maxLen,
      '--max-train', config.maxTrain, '--max-eval', config.maxDev, '--eval-batch-size', '64', '--lr', config.lr,
      '--checkpoint-every', '0', '--model', tinyModel, '--data', dataDir, '--out', native], { stdio: ['ignore', 'ignore', 'inherit'] });
    const res = JSON.parse(fs.readFileSync(`${native}/results.json`, 'utf8'));
    console.log(`${name}: native wgpu (lavapipe) ${res.epochs[0].examples_per_second.toFixed(2)} ex/s; loss curve ${JSON.stringify(res.loss_curve)}`);
    check(res.config.precision === precision, `${name}: the native run trained in the same precision`);
    check(res.loss_curve.length === run.loss_curve.length, `${name}: as many loss-curve points natively as in the page (${res.loss_curve.length})`);
    const tol = precision === 'f16' ? 5e-3 : 1e-4;
    res.loss_curve.forEach(([step, l], i) => {
      const [pstep, pl] = run.loss_curve[i];
      const rel = Math.abs(pl - l) / Math.abs(l);
      check(pstep === step && Number.isFinite(l) && rel <= tol, `${name} step ${step}: mean loss page ${pl.toFixed(6)}, native ${l.toFixed(6)} (rel diff ${rel.toExponential(2)} <= ${tol})`);
    });
    console.log(`${name}: page / native examples/s: ${(run.examples_per_second / res.epochs[0].examples_per_second).toFixed(2)}`);
    console.log(stepSummary(await page.$eval('#step-seconds', (e) => e.textContent)));
  }
  console.log('FIREFOX E2E PASS');
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  fs.writeFileSync(`${out}/firefox-console.log`, logs.join('\n') + '\n');
  if (process.exitCode) console.error(logs.slice(-40).join('\n'));
  await browser.close();
}
