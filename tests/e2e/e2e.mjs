// End-to-end test of the lorabert page in real headless Chromium (WebGPU on SwiftShader).
// Usage: node e2e.mjs <base-url> <artefact-dir>
// The page must be served with the tiny model under fixtures/tiny/ and a few minBERT rows under
// fixtures/data/ (tests/e2e/run.sh sets this up). Exits non-zero on the first failed check.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { CHROMIUM_ARGS, downloadCheckpoint, openPage, stepSummary } from './steps.mjs';

const base = process.argv[2] ?? 'http://127.0.0.1:8765/';
const out = path.resolve(process.argv[3] ?? '.');
const bin = path.resolve(process.env.LORABERT_BIN ?? 'target/release/lorabert');
const tinyModel = path.resolve(process.env.TINY_MODEL ?? 'dist/fixtures/tiny');
const shots = `${out}/screens`;
fs.mkdirSync(shots, { recursive: true });
const shot = async (page, id, name) => page.locator(`#${id}`).screenshot({ path: `${shots}/${name}.png` });
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const fail = (msg) => { console.error(`E2E FAIL: ${msg}`); process.exitCode = 1; throw new Error(msg); };
const check = (ok, msg) => { if (!ok) fail(msg); console.log(`ok - ${msg}`); };

const browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
const logs = [];
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
  const page = await openPage(ctx, base, logs);
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

  // Trains `adapter` (r = 2, 12 steps) in the page and the same configuration natively on the same
  // software GPU (wgpu on Chromium's SwiftShader Vulkan driver): the page's loss curve within the
  // CPU/wgpu parity bound of tests/mixed.rs (1e-4 relative); prints both examples/s.
  const trainAndCompare = async (adapter) => {
    await page.selectOption('#adapter', adapter);
    await page.evaluate(() => { document.getElementById('dev-metric').textContent = ''; });
    const recorded = () => page.evaluate(() => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length);
    const before = await recorded();
    const t0 = Date.now();
    await page.click('#start');
    check(await page.locator('#start').isDisabled() && await page.locator('#sweep').isDisabled() && await page.locator('#stop').isEnabled(),
      `${adapter}: while it trains, Start and Sweep wait and Stop can be pressed`);
    await page.waitForFunction(
      () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
      null, { timeout: 600_000, polling: 500 });
    const err = await page.textContent('#error');
    check(!err, `${adapter}: training finished without error${err ? `: ${err}` : ''}`);
    console.log(`${adapter}: training took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const losses = JSON.parse(await page.textContent('#loss-values'));
    check(losses.length >= 10, `${adapter}: a loss was shown for every step (${losses.length})`);
    check(losses.every(Number.isFinite), `${adapter}: all losses are finite`);
    const third = Math.floor(losses.length / 3);
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    const first = mean(losses.slice(0, third)), last = mean(losses.slice(-third));
    check(last < first, `${adapter}: the loss decreases (first third ${first.toFixed(4)}, last third ${last.toFixed(4)})`);
    const metric = await page.textContent('#dev-metric');
    check(/SST accuracy [0-9.]+/.test(metric), `${adapter}: a dev metric is shown: ${metric}`);
    // The run is recorded once its best checkpoint is kept in the browser's store.
    await page.waitForFunction((n) => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length > n, before, { timeout: 60_000, polling: 100 });
    const pageRun = JSON.parse(await page.evaluate(() => localStorage.getItem('lorabert.runs.v1'))).at(-1);
    check(pageRun.row.a === adapter, `${adapter}: the run is recorded as ${pageRun.row.a}`);
    const nativeDir = `${out}/chromium-native-${adapter}`;
    fs.rmSync(nativeDir, { recursive: true, force: true });
    execFileSync(bin, ['train', '--backend', 'wgpu', '--task', 'sst', '--adapter', adapter, '--r', '2', '--lora-alpha', '8',
      '--lora-dropout', '0', '--epochs', '1', '--max-steps', '12', '--batch-size', '8', '--max-len', '32', '--max-train', '96',
      '--max-eval', '32', '--eval-batch-size', '64', '--lr', '0.01', '--checkpoint-every', '0', '--model', tinyModel,
      '--data', path.resolve(process.env.E2E_DATA ?? 'dist/fixtures/data'), '--out', nativeDir],
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, VK_ICD_FILENAMES: process.env.SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json' } });
    const nat = JSON.parse(fs.readFileSync(`${nativeDir}/results.json`, 'utf8'));
    check(nat.loss_curve.length === pageRun.loss_curve.length, `${adapter}: page and native have ${nat.loss_curve.length} loss points`);
    nat.loss_curve.forEach(([step, l], i) => {
      const rel = Math.abs(pageRun.loss_curve[i][1] - l) / Math.abs(l);
      check(Number.isFinite(l) && rel <= 1e-4, `${adapter} step ${step}: mean loss page ${pageRun.loss_curve[i][1].toFixed(6)} = native wgpu on SwiftShader ${l.toFixed(6)} (rel ${rel.toExponential(2)} <= 1e-4)`);
    });
    console.log(`${adapter} examples/s: page ${pageRun.examples_per_second.toFixed(2)}, native wgpu on SwiftShader ${nat.epochs[0].examples_per_second.toFixed(2)}, ratio ${(pageRun.examples_per_second / nat.epochs[0].examples_per_second).toFixed(2)}`);
    console.log(stepSummary(await page.textContent('#step-seconds')));
    return pageRun;
  };
  // DoRA first: it failed at its first step in Chromium (Dawn refused an aliased writable
  // binding, issue 33) while Firefox's wgpu-based WebGPU ran it.
  const doraRun = await trainAndCompare('dora');
  await page.screenshot({ path: `${out}/e2e-trained-dora.png`, fullPage: true });
  await trainAndCompare('lora');
  check(await page.locator('#loss-plot svg').count() === 1, 'the loss plot SVG exists');
  await page.waitForFunction(() => document.querySelectorAll('#results tr').length >= 3, null, { timeout: 30_000 });
  check(await page.locator('#rank-plot svg').count() >= 1, 'the rank plot SVG exists');

  // The rank sweep button: LoRA and DoRA at ranks 1 and 3 (3 steps each), four more rows.
  const rowsBefore = await page.locator('#results tr').count();
  await page.fill('#max-steps', '3');
  await page.fill('#sweep-ranks', '1,3');
  await page.click('#sweep');
  await page.waitForFunction((n) => document.querySelectorAll('#results tr').length >= n + 4 || document.getElementById('error')?.textContent,
    rowsBefore, { timeout: 600_000, polling: 500 });
  check(!(await page.textContent('#error')), `the rank sweep runs LoRA and DoRA at r = 1, 3: ${await page.textContent('#error')}`);
  const swept = JSON.parse(await page.evaluate(() => localStorage.getItem('lorabert.runs.v1'))).slice(-4);
  check(swept.map((r) => `${r.row.a}${r.row.r}`).join(',') === 'lora1,lora3,dora1,dora3'
    && swept.every((r) => r.loss_curve.every(([, l]) => Number.isFinite(l))),
    `the sweep recorded lora and dora at r = 1, 3 with finite losses (${swept.map((r) => `${r.row.a} r${r.row.r} ${r.row.s.toFixed(3)}`).join('; ')})`);
  // Stop mid-run: the button says stopping… until the step in progress ends, and the epoch the
  // run finished is kept as a result.
  const runsBefore = JSON.parse(await page.evaluate(() => localStorage.getItem('lorabert.runs.v1'))).length;
  for (const [id, v] of [['#epochs', '3'], ['#max-steps', ''], ['#max-train', '32']]) await page.fill(id, v);
  await page.evaluate(() => { document.getElementById('dev-metric').textContent = ''; });
  await page.click('#start');
  await page.waitForFunction(() => /epoch 1: dev/.test(document.getElementById('dev-metric')?.textContent ?? '') || document.getElementById('error')?.textContent,
    null, { timeout: 600_000, polling: 100 });
  await page.click('#stop');
  check(await page.textContent('#stop') === 'stopping…' && await page.locator('#stop').isDisabled(), 'Stop says stopping… until the step ends');
  await page.waitForFunction(() => document.getElementById('status')?.textContent.includes('stopped'), null, { timeout: 120_000, polling: 100 });
  const afterStop = JSON.parse(await page.evaluate(() => localStorage.getItem('lorabert.runs.v1')));
  check(afterStop.length === runsBefore + 1 && afterStop.at(-1).loss_curve.length >= 1 && await page.locator('#start').isEnabled(),
    `the stopped run's finished epoch is kept (${afterStop.length - runsBefore} run, score ${afterStop.at(-1).row.s.toFixed(4)}) and Start is back`);
  for (const [id, v] of [['#epochs', '1'], ['#max-steps', '12'], ['#max-train', '96']]) await page.fill(id, v);
  const table = await page.textContent('#results');
  await page.screenshot({ path: `${out}/e2e-trained.png`, fullPage: true });
  await shot(page, 'model-section', '1-model');
  await shot(page, 'train-section', '3-train');
  await shot(page, 'results-section', '4-results');

  // Try it: two sentences through the page's model, against `lorabert predict --sentence` on
  // the checkpoint the page offers for download.
  const ckpt = `${out}/page-checkpoint`;
  const names = await downloadCheckpoint(page, ckpt);
  check(['adapter_config.json', 'adapter_model.safetensors', 'heads.safetensors', 'heads_config.json'].every((n) => names.includes(n)),
    `the checkpoint downloads (${names.join(', ')})`);
  const sentences = ['A gripping, beautifully acted film.', 'Dull and far too long; I wanted my money back.'];
  const pageRows = [];
  for (const sentence of sentences) {
    await page.fill('#try-text', sentence);
    await page.fill('#try-pair', '');
    await page.evaluate(() => { document.getElementById('try-json').textContent = ''; });
    await page.click('#try-run');
    await page.waitForFunction(() => document.getElementById('try-json')?.textContent || document.getElementById('error')?.textContent, null, { timeout: 60_000 });
    check(!(await page.textContent('#error')), `Try it predicts without error: ${await page.textContent('#error')}`);
    const rows = JSON.parse(await page.textContent('#try-json'));
    console.log(`Try it: "${sentence}" -> ${JSON.stringify(rows)} in ${await page.textContent('#try-time')}`);
    pageRows.push(...rows);
  }
  await shot(page, 'try-section', '5-try-it');
  const cli = execFileSync(bin, ['predict', '--checkpoint', ckpt, '--model', tinyModel,
    ...sentences.flatMap((s) => ['--sentence', s])], { encoding: 'utf8' })
    .trim().split('\n').map((l) => JSON.parse(l));
  check(cli.length === pageRows.length, `the CLI predicts the same heads (${cli.length} rows)`);
  let worst = 0;
  cli.forEach((c, i) => {
    const p = pageRows[i];
    check(c.task === p.task && c.label === p.label, `row ${i + 1}: label ${p.label} as the CLI's ${c.label}`);
    for (const [k, v] of Object.entries(c.probabilities)) worst = Math.max(worst, Math.abs(v - p.probabilities[k]));
    worst = Math.max(worst, Math.abs(c.score - p.score));
  });
  check(worst <= 1e-4, `Try it's probabilities equal lorabert predict --sentence (max |diff| ${worst.toExponential(2)} <= 1e-4)`);

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

  // Re-run of a shared link: the link carries the run's settings (batch, steps, max length, row
  // limits, lr, alpha, model and data URLs), and Re-run trains it again as it was: the same loss
  // at every step as the DoRA run above.
  const sharedPayload = JSON.parse(Buffer.from(link.split('#v1.')[1], 'base64url').toString());
  const first = sharedPayload.rows.find((r) => r.a === 'dora' && r.r === 2);
  check(first?.c?.batch === 8 && first.c.max_steps === 12 && first.c.max_len === 32 && first.c.lr === 0.01
    && first.c.max_train === 96 && first.c.max_dev === 32 && sharedPayload.model_url === 'fixtures/tiny/',
    `the link carries the run's settings: ${JSON.stringify(first?.c)}, model_url ${sharedPayload.model_url}`);
  const one = Buffer.from(JSON.stringify({ ...sharedPayload, rows: [first] })).toString('base64url');
  const rerun = await ctx.newPage();
  rerun.on('console', (m) => logs.push(`[rerun console.${m.type()}] ${m.text()}`));
  await rerun.goto(`${base}#v1.${one}`, { waitUntil: 'load' });
  await rerun.waitForFunction(() => document.getElementById('shared')?.textContent.includes('Shared results'), null, { timeout: 60_000 });
  check(await rerun.inputValue('#batch') === '8' && await rerun.inputValue('#max-steps') === '12' && await rerun.inputValue('#adapter') === 'dora',
    'the shared view fills the form with the shared settings');
  const before = JSON.parse(await rerun.evaluate(() => localStorage.getItem('lorabert.runs.v1')) ?? '[]').length;
  await rerun.click('#rerun');
  await rerun.waitForFunction((n) => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length > n || document.getElementById('error')?.textContent,
    before, { timeout: 600_000, polling: 500 });
  check(!(await rerun.textContent('#error')), `Re-run trains: ${await rerun.textContent('#error')}`);
  const again = JSON.parse(await rerun.evaluate(() => localStorage.getItem('lorabert.runs.v1'))).at(-1);
  check(again.row.a === 'dora' && again.row.r === 2 && again.loss_curve.length === doraRun.loss_curve.length
    && again.loss_curve.every(([st, l], i) => st === doraRun.loss_curve[i][0] && Math.abs(l - doraRun.loss_curve[i][1]) <= 1e-6 * Math.abs(l)),
    `Re-run reproduces the shared run's loss curve (${JSON.stringify(again.loss_curve.slice(0, 3))}... = ${JSON.stringify(doraRun.loss_curve.slice(0, 3))}...)`);
  await rerun.screenshot({ path: `${out}/e2e-rerun.png`, fullPage: true });
  await rerun.close();

  const bad = await ctx.newPage();
  await bad.goto(base + '#v1.@@not-base64@@', { waitUntil: 'load' });
  await bad.waitForFunction(() => document.getElementById('error')?.textContent.includes('share link'), null, { timeout: 60_000 });
  check(true, `a corrupt share link gives an error: ${await bad.textContent('#error')}`);

  // Own data: a CSV picked from disk (string labels), its preview and task, trained; accuracy
  // and F1 shown; the share link names the file and row counts.
  await page.check('#source-own');
  await page.setInputFiles('#own-file', `${out}/sst2-slice.csv`);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent || document.getElementById('error')?.textContent, null, { timeout: 30_000 });
  check(!(await page.textContent('#error')), `the own file is read: ${await page.textContent('#error')}`);
  const summary = await page.textContent('#own-summary');
  check(/classification with 2 classes \(negative, positive\) of texts `text`, label `sentiment`/.test(summary), `the own file's task is detected: ${summary}`);
  check(await page.locator('#own-preview tr').count() === 6, 'a preview of the first 5 rows');
  await shot(page, 'data-section', '2-data-own');
  await page.fill('#max-train', '');
  await page.fill('#max-dev', '');
  await page.fill('#max-steps', '10');
  await page.evaluate(() => { document.getElementById('dev-metric').textContent = ''; });
  await page.click('#start');
  await page.waitForFunction(
    () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
    null, { timeout: 600_000, polling: 500 });
  check(!(await page.textContent('#error')), `own data trains: ${await page.textContent('#error')}`);
  const ownMetric = await page.textContent('#dev-metric');
  check(/accuracy [0-9.]+/.test(ownMetric) && /f1 [0-9.]+/.test(ownMetric), `accuracy and F1 are shown: ${ownMetric}`);
  await page.waitForFunction(() => document.getElementById('results')?.textContent.includes('sst2-slice (accuracy)'), null, { timeout: 30_000 });
  const plots = await page.textContent('#rank-plot');
  check(plots.includes('dev score vs rank: sst2-slice (accuracy)') && plots.includes('dev score vs rank: sst'),
    'one dev-score plot per task and metric (SST 5-class accuracy and the own file\'s accuracy apart)');
  await page.click('#share');
  await page.waitForFunction(() => document.getElementById('share-link')?.value.includes('#v1.'), null, { timeout: 10_000 });
  const ownLink = await page.inputValue('#share-link');
  const ownPayload = JSON.parse(Buffer.from(ownLink.split('#v1.')[1], 'base64url').toString());
  check(ownPayload.data?.file === 'sst2-slice.csv' && ownPayload.data.train_rows === 144 && ownPayload.data.validation_rows === 16,
    `the share link names the file and row counts: ${JSON.stringify(ownPayload.data)}`);
  check(!ownLink.includes('gripping') && !JSON.stringify(ownPayload).includes('hide new secretions'), 'the share link holds no rows of the file');

  // A bad file after a good one: the error is shown and nothing of the previous file stays to be
  // trained on (preview, pickers, summary cleared; Start disabled until a file reads).
  fs.writeFileSync(`${out}/array.jsonl`, JSON.stringify([{ text: 'a fine film', label: 1 }, { text: 'dull', label: 0 }]) + '\n');
  await page.evaluate(() => { document.getElementById('error').textContent = ''; });
  await page.setInputFiles('#own-file', `${out}/array.jsonl`);
  await page.waitForFunction(() => document.getElementById('error')?.textContent, null, { timeout: 30_000 });
  const badErr = await page.textContent('#error');
  check(badErr.includes('array.jsonl'), `a JSON array file is refused naming it: ${badErr}`);
  const badSummary = await page.textContent('#own-summary');
  check(await page.locator('#own-preview tr').count() === 0 && badSummary.startsWith('error: array.jsonl line 1')
    && await page.locator('#own-label option').count() === 0,
    `the previous file's preview, pickers and summary are cleared; the Data section says: ${badSummary}`);
  check(await page.locator('#start').isDisabled() && await page.locator('#sweep').isDisabled(), 'Start and Sweep are disabled until a file reads');
  await shot(page, 'data-section', '2-data-bad-file');
  // A file with no label column: said in the page's words, and no run until one is picked.
  fs.writeFileSync(`${out}/texts-only.csv`, 'text\na fine film\ndull\n');
  await page.setInputFiles('#own-file', `${out}/texts-only.csv`);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent, null, { timeout: 30_000 });
  const noLabel = await page.textContent('#own-summary');
  check(noLabel.includes('no label column found: pick one') && !noLabel.includes('--'), `a missing label column is said plainly: ${noLabel}`);
  check(await page.locator('#start').isDisabled(), 'Start stays disabled without a label column');
  await page.setInputFiles('#own-file', `${out}/sst2-slice.csv`);
  await page.waitForFunction(() => /classification with 2 classes/.test(document.getElementById('own-summary')?.textContent ?? ''), null, { timeout: 30_000 });
  check(await page.locator('#start').isEnabled(), 'a good file enables Start again');

  // Second visit: the model and data come from the browser's store, not the network.
  const fetched = [];
  page.on('request', (r) => { if (r.url().includes('/fixtures/')) fetched.push(r.url()); });
  await page.reload({ waitUntil: 'load' });
  await page.check('#source-minbert');
  await page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('ready'), null, { timeout: 120_000 });
  await page.waitForFunction(() => document.querySelectorAll('#stored button.del').length >= 2, null, { timeout: 30_000 });
  const stored = await page.textContent('#stored');
  check(stored.includes('fixtures/tiny/') && stored.includes('fixtures/data/'), `the stored list shows the model and data folders`);
  // The reload kept the form's settings and the last run's checkpoint: Try it answers at once.
  const kept = {};
  for (const id of ['batch', 'max-len', 'max-steps', 'rank', 'lr', 'sweep-ranks']) kept[id] = await page.inputValue(`#${id}`);
  check(kept.batch === '8' && kept['max-len'] === '32' && kept['max-steps'] === '10' && kept.rank === '2' && kept.lr === '0.01' && kept['sweep-ranks'] === '1,3',
    `the form's settings survive a reload (${JSON.stringify(kept)})`);
  await page.waitForFunction(() => document.getElementById('try-model')?.textContent.includes('kept in this browser'), null, { timeout: 30_000 });
  check(true, `Try it offers the last run after a reload: ${await page.textContent('#try-model')}`);
  await page.fill('#try-text', 'A gripping, beautifully acted film.');
  await page.evaluate(() => { document.getElementById('try-json').textContent = ''; document.getElementById('error').textContent = ''; });
  await page.click('#try-run');
  await page.waitForFunction(() => document.getElementById('try-json')?.textContent || document.getElementById('error')?.textContent, null, { timeout: 60_000 });
  check(!(await page.textContent('#error')), `Try it works after a reload: ${await page.textContent('#error')}`);
  const afterReload = JSON.parse(await page.textContent('#try-json'));
  check(afterReload.length === 1 && ['positive', 'negative'].includes(afterReload[0].label), `Try it predicts with the kept checkpoint: ${JSON.stringify(afterReload)}`);
  await shot(page, 'try-section', '5-try-it-after-reload');
  await page.evaluate(() => { document.querySelector('#model-section details').open = true; });
  await shot(page, 'model-section', '1-model-stored');
  await page.fill('#model-url', 'fixtures/tiny/');
  await page.fill('#data-url', 'fixtures/data/');
  await page.selectOption('#task', 'sst');
  for (const [id, v] of [['#max-train', '32'], ['#max-dev', '16'], ['#batch', '8'], ['#max-len', '32'], ['#max-steps', '2'], ['#rank', '1']]) await page.fill(id, v);
  await page.click('#start');
  await page.waitForFunction(
    () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
    null, { timeout: 600_000, polling: 500 });
  check(!(await page.textContent('#error')), `training after a reload: ${await page.textContent('#error')}`);
  check(fetched.length === 0, `after a reload nothing under fixtures/ is fetched again (${fetched.length}: ${fetched.join(', ')})`);
  const logText = await page.textContent('#log');
  check(logText.includes("model.safetensors: ") && logText.includes("from the browser's store"), 'the log says the model came from the store');
  await page.screenshot({ path: `${out}/e2e-page.png`, fullPage: true });

  // Offline: the page's own files come from its service worker, the model and data from the store.
  await ctx.setOffline(true);
  await page.reload({ waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('ready'), null, { timeout: 120_000 });
  check(true, 'the page opens offline');
  await page.check('#source-minbert');
  for (const [id, v] of [['#model-url', 'fixtures/tiny/'], ['#data-url', 'fixtures/data/'], ['#max-train', '32'], ['#max-dev', '16'], ['#batch', '8'], ['#max-len', '32'], ['#max-steps', '2']]) await page.fill(id, v);
  await page.click('#start');
  await page.waitForFunction(
    () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
    null, { timeout: 600_000, polling: 500 });
  check(!(await page.textContent('#error')), `it trains offline from the stored model and data: ${await page.textContent('#error')}`);
  await ctx.setOffline(false);

  // A Hugging Face entry of the model list, without the network: huggingface.co's resolve URLs
  // are answered here with the tiny model's files and the CORS header huggingface.co sends; a
  // repo whose config.json names another architecture gets a message naming it. (huggingface.co
  // answers large files with a redirect to its CDN, which the browser's fetch follows; a redirect
  // from Playwright's interception fails in Chromium, so that hop is not simulated.)
  const cors = { 'access-control-allow-origin': '*' };
  const hf = [];
  await page.route('https://huggingface.co/**', (route) => {
    const url = route.request().url();
    hf.push(url);
    const m = url.match(/^https:\/\/huggingface\.co\/([^/]+\/[^/]+)\/resolve\/main\/([^/?]+)$/);
    if (!m) return route.fulfill({ status: 404, headers: cors, body: 'not found' });
    if (m[1] === 'e2e/not-bert' && m[2] === 'config.json') {
      return route.fulfill({ status: 200, headers: cors, body: JSON.stringify({ model_type: 'roberta', hidden_size: 32 }) });
    }
    return route.fulfill({ status: 200, headers: cors, body: fs.readFileSync(path.join(tinyModel, m[2])) });
  });
  const bge = 'https://huggingface.co/BAAI/bge-small-en-v1.5/resolve/main/';
  await page.selectOption('#model-pick', bge);
  check(await page.inputValue('#model-url') === bge, 'picking a Hugging Face list entry fills the model URL');
  await page.click('#load-model');
  await page.waitForFunction(
    () => /model loaded|error/.test(document.getElementById('status')?.textContent ?? ''), null, { timeout: 120_000, polling: 200 });
  const hfStatus = await page.textContent('#status');
  const tinyCfg = JSON.parse(fs.readFileSync(path.join(tinyModel, 'config.json'), 'utf8'));
  check(hfStatus.startsWith(`model loaded: ${tinyCfg.num_hidden_layers} layers, hidden ${tinyCfg.hidden_size}`),
    `the list entry loads from huggingface.co: ${hfStatus}`);
  check(['config.json', 'tokenizer.json', 'model.safetensors'].every((f) => hf.includes(bge + f)),
    `it asked huggingface.co's resolve URL for each file (${hf.length} requests)`);
  await page.waitForFunction((u) => document.getElementById('stored')?.textContent.includes(u), bge, { timeout: 30_000 });
  check(true, 'the stored list shows the Hugging Face folder');
  await page.fill('#model-url', 'https://huggingface.co/e2e/not-bert/resolve/main/');
  await page.click('#load-model');
  await page.waitForFunction(() => document.getElementById('error')?.textContent.includes('roberta'), null, { timeout: 60_000, polling: 200 });
  const archErr = await page.textContent('#error');
  check(archErr.includes('model_type `roberta` is not BERT') && !hf.some((u) => u.includes('not-bert/model.safetensors')),
    `another architecture is named before its weights are fetched: ${archErr}`);
  await page.unrouteAll();

  // A GPU device lost mid-run (destroyed from the page's side, as a driver reset or a timeout
  // loses it): a message in the page's words, not a Rust panic; the results and the last
  // finished run's checkpoint stay.
  const lost = await ctx.newPage();
  lost.on('console', (m) => logs.push(`[lost console.${m.type()}] ${m.text()}`));
  await lost.addInitScript(() => {
    const request = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function (...args) {
      const d = await request.apply(this, args);
      window.__lorabertDevice = d;
      return d;
    };
  });
  await lost.goto(base, { waitUntil: 'load' });
  await lost.waitForFunction(() => document.getElementById('status')?.textContent.startsWith('ready'), null, { timeout: 120_000 });
  await lost.waitForFunction(() => document.getElementById('device')?.textContent !== '?', null, { timeout: 120_000 });
  const rowsKept = await lost.locator('#results tr').count();
  await lost.check('#source-minbert');
  for (const [id, v] of [['#model-url', 'fixtures/tiny/'], ['#data-url', 'fixtures/data/'], ['#max-train', '96'], ['#max-dev', '32'], ['#batch', '8'], ['#max-len', '32'], ['#max-steps', '40']]) await lost.fill(id, v);
  await lost.click('#start');
  await lost.waitForFunction(() => JSON.parse(document.getElementById('loss-values')?.textContent || '[]').length >= 2, null, { timeout: 120_000, polling: 100 });
  await lost.evaluate(() => window.__lorabertDevice.destroy());
  await lost.waitForFunction(() => document.getElementById('error')?.textContent, null, { timeout: 120_000, polling: 200 });
  const lostErr = await lost.textContent('#error');
  check(lostErr.startsWith('The GPU device failed') && lostErr.includes('reload the page') && !lostErr.includes('panicked'),
    `a lost device is said plainly: ${lostErr}`);
  check(await lost.locator('#results tr').count() >= rowsKept, `the results table is kept (${rowsKept - 1} runs)`);
  const keptFiles = [];
  lost.on('download', (d) => keptFiles.push(d.suggestedFilename()));
  await lost.click('#download-adapter');
  for (let i = 0; i < 50 && keptFiles.length < 4; i++) await lost.waitForTimeout(100);
  check(keptFiles.includes('adapter_model.safetensors'), `the last finished run's checkpoint still downloads (${keptFiles.join(', ')})`);
  await lost.screenshot({ path: `${out}/e2e-device-lost.png`, fullPage: true });
  await lost.close();

  // Clear results removes the runs and the checkpoints the browser kept for them.
  const storedCheckpoints = () => page.evaluate(() => [...document.querySelectorAll('#stored tr')].filter((r) => r.textContent.includes('checkpoints/')).length);
  await page.evaluate(() => { document.querySelector('#model-section details').open = true; });
  const keptBefore = await storedCheckpoints();
  await page.click('#clear');
  await page.waitForFunction((n) => [...document.querySelectorAll('#stored tr')].filter((r) => r.textContent.includes('checkpoints/')).length < n,
    keptBefore, { timeout: 30_000, polling: 200 });
  check(await page.locator('#results tr').count() <= 1, `Clear results removes the runs and their kept checkpoints (${keptBefore} -> ${await storedCheckpoints()} stored)`);

  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${shots}/phone.png`, fullPage: false });
  console.log('E2E PASS');
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  fs.writeFileSync(`${out}/e2e-console.log`, logs.join('\n') + '\n');
  if (process.exitCode) console.error(logs.slice(-40).join('\n'));
  await browser.close();
}
