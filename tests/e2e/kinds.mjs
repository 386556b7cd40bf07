// End-to-end test of the page's sentence-embedding kind in headless Chromium (WebGPU on
// SwiftShader): an anchor/positive file picked as own data, its columns and loss detected,
// trained with LoRA and DoRA (each loss curve against the same run of the native program on the
// same software GPU), the epoch-0 and epoch retrieval metrics shown, and "Try it" as semantic
// search: the base model's and the adapter's top hits side by side, against `lorabert search`
// on the downloaded checkpoint.
// Usage: node kinds.mjs <base-url> <artefact-dir>   (tests/e2e/run.sh sets up the fixtures:
// the tiny model under fixtures/tiny/ and $OUT/quora-pairs.csv)
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const base = process.argv[2] ?? 'http://127.0.0.1:8765/';
const out = path.resolve(process.argv[3] ?? '.');
const bin = path.resolve(process.env.LORABERT_BIN ?? 'target/release/lorabert');
const tinyModel = path.resolve(process.env.TINY_MODEL ?? 'dist/fixtures/tiny');
const pairs = `${out}/quora-pairs.csv`;
const shots = `${out}/screens`;
fs.mkdirSync(shots, { recursive: true });
const fail = (msg) => { console.error(`E2E FAIL: ${msg}`); process.exitCode = 1; throw new Error(msg); };
const check = (ok, msg) => { if (!ok) fail(msg); console.log(`ok - ${msg}`); };
const swiftshader = { ...process.env, VK_ICD_FILENAMES: process.env.SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json' };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
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
  check((await page.textContent('#device')).startsWith('WebGPU'), 'the page trains on WebGPU');
  for (const [id, v] of [['#model-url', 'fixtures/tiny/'], ['#max-train', ''], ['#max-dev', ''], ['#batch', '8'], ['#max-len', '32'],
    ['#epochs', '1'], ['#max-steps', '12'], ['#lr', '0.01'], ['#rank', '2'], ['#alpha', '8']]) await page.fill(id, v);

  // The file: anchor/positive columns, so embeddings with MultipleNegativesRankingLoss, no label.
  await page.check('#source-own');
  await page.setInputFiles('#own-file', pairs);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent, null, { timeout: 30_000 });
  const summary = await page.textContent('#own-summary');
  check(summary.startsWith('embedding: anchor/positive pairs, MultipleNegativesRankingLoss, scale 20 of pairs `anchor` + `positive`: 120 rows')
    && summary.includes('ndcg@10'), `the file is detected as embedding pairs: ${summary}`);
  check(await page.inputValue('#own-label') === '' && await page.locator('#own-loss-row').isVisible(),
    'no label column is picked and the loss list is shown');
  check(await page.locator('#start').isEnabled(), 'Start is enabled');
  // A loss that does not fit the data is refused before training, in the summary.
  await page.selectOption('#own-loss', 'cosent');
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('error'), null, { timeout: 10_000 });
  check((await page.textContent('#own-summary')).includes('cosent'), `CoSENTLoss without scores is refused: ${await page.textContent('#own-summary')}`);
  await page.selectOption('#own-loss', 'mnrl-symmetric');
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.includes('MultipleNegativesSymmetricRankingLoss'), null, { timeout: 10_000 });
  await page.selectOption('#own-loss', '');
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('embedding'), null, { timeout: 10_000 });
  await page.locator('#data-section').screenshot({ path: `${shots}/2-data-embedding.png` });

  const trainAndCompare = async (adapter) => {
    await page.selectOption('#adapter', adapter);
    await page.evaluate(() => { document.getElementById('dev-metric').textContent = ''; document.getElementById('error').textContent = ''; });
    const before = await page.evaluate(() => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length);
    await page.click('#start');
    await page.waitForFunction(
      () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
      null, { timeout: 600_000, polling: 500 });
    check(!(await page.textContent('#error')), `${adapter}: embeddings train in the page: ${await page.textContent('#error')}`);
    const epoch0 = await page.textContent('#dev-before');
    const metric = await page.textContent('#dev-metric');
    check(/epoch 0 \(before training\): dev ndcg@10 [0-9.]+/.test(epoch0), `${adapter}: the model before training is evaluated: ${epoch0}`);
    check(/epoch 1: dev ndcg@10 [0-9.]+/.test(metric) && metric.includes('mrr@10') && metric.includes('recall@1'),
      `${adapter}: retrieval metrics are shown: ${metric}`);
    await page.waitForFunction((n) => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length > n, before, { timeout: 60_000, polling: 100 });
    const run = JSON.parse(await page.evaluate(() => localStorage.getItem('lorabert.runs.v1'))).at(-1);
    const dir = `${out}/kinds-native-${adapter}`;
    fs.rmSync(dir, { recursive: true, force: true });
    execFileSync(bin, ['train', '--backend', 'wgpu', '--train-file', pairs, '--adapter', adapter, '--r', '2', '--lora-alpha', '8',
      '--lora-dropout', '0', '--epochs', '1', '--max-steps', '12', '--batch-size', '8', '--max-len', '32', '--eval-batch-size', '64',
      '--lr', '0.01', '--checkpoint-every', '0', '--model', tinyModel, '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'], env: swiftshader });
    const nat = JSON.parse(fs.readFileSync(`${dir}/results.json`, 'utf8'));
    check(nat.loss_curve.length === run.loss_curve.length, `${adapter}: page and native have ${nat.loss_curve.length} loss points`);
    nat.loss_curve.forEach(([step, l], i) => {
      const rel = Math.abs(run.loss_curve[i][1] - l) / Math.abs(l);
      check(Number.isFinite(l) && rel <= 1e-4, `${adapter} step ${step}: MNRL loss page ${run.loss_curve[i][1].toFixed(6)} = native ${l.toFixed(6)} (rel ${rel.toExponential(2)})`);
    });
    const ndcg = nat.epochs[0].dev.own['ndcg@10'];
    check(Math.abs(run.row.s - ndcg) <= 1e-4, `${adapter}: the recorded score is NDCG@10 ${run.row.s.toFixed(4)} as native ${ndcg.toFixed(4)}`);
  };
  await trainAndCompare('lora');
  await trainAndCompare('dora');
  await page.waitForFunction(() => document.getElementById('results')?.textContent.includes('quora-pairs (ndcg@10)'), null, { timeout: 30_000 });
  check(true, 'the results table names the file and NDCG@10');

  // Try it: semantic search, base model and adapter side by side.
  check(await page.locator('#try-search').isVisible() && !(await page.locator('#try-classify').isVisible()),
    'Try it offers search for an embedding run, not Predict');
  const corpus = await page.inputValue('#try-corpus');
  const query = await page.inputValue('#try-query');
  const docs = corpus.split('\n');
  check(docs.length > 50 && query.length > 0, `the training file's positives are offered as the corpus (${docs.length} texts), its first anchor as the query: ${query}`);
  await page.fill('#try-top-k', '5');
  await page.click('#try-search-run');
  await page.waitForFunction(() => document.getElementById('try-hits-json')?.textContent || document.getElementById('error')?.textContent, null, { timeout: 120_000 });
  check(!(await page.textContent('#error')), `Search runs: ${await page.textContent('#error')}`);
  const hits = JSON.parse(await page.textContent('#try-hits-json'));
  check(hits.base.length === 5 && hits.adapter.length === 5 && await page.locator('#try-hits tr').count() === 6,
    `five hits of each model, side by side: ${hits.adapter.map((h) => h.score.toFixed(3)).join(', ')}`);
  await page.locator('#try-section').screenshot({ path: `${shots}/5-try-it-search.png` });

  // The same search with `lorabert search` on the downloaded checkpoint and on the base model.
  const ckpt = `${out}/kinds-checkpoint`;
  fs.rmSync(ckpt, { recursive: true, force: true });
  fs.mkdirSync(ckpt, { recursive: true });
  const saved = [];
  const onDownload = (d) => saved.push(d.saveAs(`${ckpt}/${d.suggestedFilename()}`));
  page.on('download', onDownload);
  await page.click('#download-adapter');
  for (let i = 0; i < 100 && saved.length < 4; i++) await page.waitForTimeout(100);
  await Promise.all(saved);
  page.off('download', onDownload);
  fs.writeFileSync(`${out}/kinds-corpus.txt`, corpus + '\n');
  const cli = (extra) => execFileSync(bin, ['search', '--model', tinyModel, '--corpus', `${out}/kinds-corpus.txt`, '--query', query,
    '--top-k', '5', '--json', '--cache-dir', `${out}/kinds-search-cache`, ...extra], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .trim().split('\n').map((l) => JSON.parse(l));
  for (const [side, want] of [['adapter', cli(['--checkpoint', ckpt])], ['base', cli([])]]) {
    const got = hits[side];
    const worst = Math.max(...want.map((w, i) => Math.abs(w.score - got[i].score)));
    // Ids may swap only between hits whose cosines are within the tolerance.
    const same = want.every((w, i) => w.corpus_id === got[i].corpus_id || Math.abs(w.score - got[i].score) <= 1e-4);
    check(worst <= 1e-4 && same, `${side}: the page's hits are lorabert search's (ids ${got.map((h) => h.corpus_id).join(',')}; max |cos diff| ${worst.toExponential(2)} <= 1e-4)`);
  }

  // After a reload the kept checkpoint is tried by search again.
  await page.reload({ waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('try-model')?.textContent.includes('kept in this browser'), null, { timeout: 60_000 });
  check(await page.locator('#try-search').isVisible(), 'after a reload, Try it offers search for the kept embedding run');
  console.log('E2E KINDS PASS');
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  fs.writeFileSync(`${out}/kinds-console.log`, logs.join('\n') + '\n');
  if (process.exitCode) console.error(logs.slice(-40).join('\n'));
  await browser.close();
}
