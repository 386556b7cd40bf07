// End-to-end test of the page's sentence-embedding and token-classification kinds in headless
// Chromium (WebGPU on SwiftShader). Embeddings: an anchor/positive file picked as own data, its columns and loss detected,
// trained with LoRA and DoRA (each loss curve against the same run of the native program on the
// same software GPU), the epoch-0 and epoch retrieval metrics shown, and "Try it" as semantic
// search: the base model's and the adapter's top hits side by side, against `lorabert search`
// on the downloaded checkpoint. Tokens: a CoNLL-2003 slice previewed with its entities
// coloured, trained against native, and Try it's entities against `lorabert predict --sentence`.
// Usage: node kinds.mjs <base-url> <artefact-dir>   (tests/e2e/run.sh sets up the fixtures:
// the tiny model under fixtures/tiny/, $OUT/quora-pairs.csv and $OUT/ner-slice.conll)
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { CHROMIUM_ARGS, downloadCheckpoint, openPage } from './steps.mjs';

const base = process.argv[2] ?? 'http://127.0.0.1:8765/';
const out = path.resolve(process.argv[3] ?? '.');
const bin = path.resolve(process.env.LORABERT_BIN ?? 'target/release/lorabert');
const tinyModel = path.resolve(process.env.TINY_MODEL ?? 'dist/fixtures/tiny');
const pairs = `${out}/quora-pairs.csv`;
const scored = `${out}/sts-scored.csv`;
const shots = `${out}/screens`;
fs.mkdirSync(shots, { recursive: true });
const fail = (msg) => { console.error(`E2E FAIL: ${msg}`); process.exitCode = 1; throw new Error(msg); };
const check = (ok, msg) => { if (!ok) fail(msg); console.log(`ok - ${msg}`); };
const swiftshader = { ...process.env, VK_ICD_FILENAMES: process.env.SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json' };

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
const logs = [];

// Trains `adapter` on the page's own file `file` (r = 2, 12 steps; the form already filled) and
// the same run natively on the same software GPU: the loss at every recorded step within 1e-4
// relative, and the recorded score the native run's `metric` (`nativeFlags`: what the page's
// fields set beyond the form). Returns the page's run record.
const trainAndCompare = async (page, adapter, file, metric, nativeFlags = []) => {
  await page.selectOption('#adapter', adapter);
  await page.evaluate(() => { document.getElementById('dev-metric').textContent = ''; document.getElementById('error').textContent = ''; });
  const before = await page.evaluate(() => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length);
  await page.click('#start');
  await page.waitForFunction(
    () => document.getElementById('dev-metric')?.textContent.includes('dev') || document.getElementById('error')?.textContent,
    null, { timeout: 600_000, polling: 500 });
  check(!(await page.textContent('#error')), `${adapter}: ${path.basename(file)} trains in the page: ${await page.textContent('#error')}`);
  await page.waitForFunction((n) => JSON.parse(localStorage.getItem('lorabert.runs.v1') ?? '[]').length > n, before, { timeout: 60_000, polling: 100 });
  const run = JSON.parse(await page.evaluate(() => localStorage.getItem('lorabert.runs.v1'))).at(-1);
  const dir = `${out}/kinds-native-${path.basename(file)}-${adapter}`;
  fs.rmSync(dir, { recursive: true, force: true });
  execFileSync(bin, ['train', '--backend', 'wgpu', '--train-file', file, '--adapter', adapter, '--r', '2', '--lora-alpha', '8',
    '--lora-dropout', '0', '--epochs', '1', '--max-steps', '12', '--batch-size', '8', '--max-len', '32', '--eval-batch-size', '64',
    '--lr', '0.01', '--checkpoint-every', '0', '--model', tinyModel, '--out', dir, ...nativeFlags], { stdio: ['ignore', 'ignore', 'inherit'], env: swiftshader });
  const nat = JSON.parse(fs.readFileSync(`${dir}/results.json`, 'utf8'));
  check(nat.loss_curve.length === run.loss_curve.length, `${adapter}: page and native have ${nat.loss_curve.length} loss points`);
  nat.loss_curve.forEach(([step, l], i) => {
    const rel = Math.abs(run.loss_curve[i][1] - l) / Math.abs(l);
    check(Number.isFinite(l) && rel <= 1e-4, `${adapter} step ${step}: loss page ${run.loss_curve[i][1].toFixed(6)} = native ${l.toFixed(6)} (rel ${rel.toExponential(2)})`);
  });
  const want = nat.epochs[0].dev.own[metric];
  check(Math.abs(run.row.s - want) <= 1e-4, `${adapter}: the recorded score is ${metric} ${run.row.s.toFixed(4)} as native ${want.toFixed(4)}`);
  return run;
};

// Tags `sentence` with Try it's Predict; returns what the page shows as `lorabert predict
// --sentence` JSON (one object).
const tagWithTryIt = async (page, sentence) => {
  await page.fill('#try-text', sentence);
  await page.evaluate(() => { document.getElementById('try-json').textContent = ''; });
  await page.click('#try-run');
  await page.waitForFunction(() => document.getElementById('try-json')?.textContent || document.getElementById('error')?.textContent, null, { timeout: 60_000 });
  check(!(await page.textContent('#error')), `Try it tags "${sentence}": ${await page.textContent('#error')}`);
  return JSON.parse(await page.textContent('#try-json'))[0];
};

// `lorabert predict --sentence` on `checkpoint`, parsed.
const predictCli = (checkpoint, sentence) => JSON.parse(execFileSync(bin, ['predict', '--checkpoint', checkpoint, '--model', tinyModel,
  '--sentence', sentence], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
  const page = await openPage(ctx, base, logs);
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

  for (const adapter of ['lora', 'dora']) {
    await trainAndCompare(page, adapter, pairs, 'ndcg@10');
    const epoch0 = await page.textContent('#dev-before');
    const metric = await page.textContent('#dev-metric');
    check(/epoch 0 \(before training\): dev ndcg@10 [0-9.]+/.test(epoch0), `${adapter}: the model before training is evaluated: ${epoch0}`);
    check(/epoch 1: dev ndcg@10 [0-9.]+/.test(metric) && metric.includes('mrr@10') && metric.includes('recall@1'),
      `${adapter}: retrieval metrics are shown: ${metric}`);
  }
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
  await downloadCheckpoint(page, ckpt);
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

  // Scored pairs (STS-B, 0..5): read as regression until the task says sentence embeddings; the
  // scores' range is asked for, then CoSENTLoss trains and Pearson/Spearman of the cosine score.
  await page.check('#source-own');
  await page.setInputFiles('#own-file', scored);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('regression'), null, { timeout: 30_000 });
  await page.selectOption('#own-type', 'embedding');
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('error'), null, { timeout: 10_000 });
  const outside = await page.textContent('#own-summary');
  check(outside.includes('outside the declared range 0..1') && outside.includes('score range field') && await page.locator('#own-loss-row').isVisible(),
    `scores outside 0..1 ask for the score range: ${outside}`);
  // A range that does not read keeps its field on screen to be corrected.
  await page.fill('#own-score-range', 'a,b');
  await page.locator('#own-score-range').dispatchEvent('change');
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.includes('score range: `a,b`'), null, { timeout: 10_000 });
  check(await page.locator('#own-score-range').isVisible() && await page.locator('#start').isDisabled(),
    `a bad score range is said and its field stays: ${await page.textContent('#own-summary')}`);
  // A file with a header and no rows is refused in the summary, not at Start.
  fs.writeFileSync(`${out}/header-only.csv`, 'anchor,positive\n');
  await page.setInputFiles('#own-file', `${out}/header-only.csv`);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.includes('no rows'), null, { timeout: 10_000 });
  check(await page.locator('#start').isDisabled(), `a file without rows is refused before Start: ${await page.textContent('#own-summary')}`);
  await page.setInputFiles('#own-file', scored);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('error'), null, { timeout: 30_000 });
  await page.fill('#own-score-range', '0,5');
  await page.locator('#own-score-range').dispatchEvent('change');
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('embedding'), null, { timeout: 10_000 });
  const scoredSummary = await page.textContent('#own-summary');
  check(scoredSummary.startsWith('embedding: scored pairs (0..5), CoSENTLoss, scale 20 of pairs `sentence1` + `sentence2`, label `score`'),
    `scored pairs train with CoSENTLoss: ${scoredSummary}`);
  await trainAndCompare(page, 'lora', scored, 'spearman', ['--task-type', 'embedding', '--score-range', '0,5']);
  const stsMetric = await page.textContent('#dev-metric');
  check(/epoch 1: dev pearson [0-9.-]+, spearman [0-9.-]+/.test(stsMetric) && /epoch 0 \(before training\): dev pearson/.test(await page.textContent('#dev-before')),
    `the cosine's Pearson and Spearman are shown, before training and after: ${stsMetric}`);
  await page.selectOption('#own-type', '');

  // Token classification: a CoNLL-2003 slice (IOB1), previewed with its entities coloured,
  // trained (loss curve against native wgpu), F1 shown, and Try it highlighting entities as
  // `lorabert predict --sentence` finds them.
  const conll = `${out}/ner-slice.conll`;
  await page.check('#source-own');
  await page.setInputFiles('#own-file', conll);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('token'), null, { timeout: 30_000 });
  const tokSummary = await page.textContent('#own-summary');
  check(/^token classification with \d+ tags \(B-[A-Z]+.*\), IOB1 .*of the words of a CoNLL file: \d+ sentences, \d+ entities \(LOC: \d+/.test(tokSummary)
    && tokSummary.includes('metrics f1, precision, recall, accuracy'), `the CoNLL file's tags, scheme and entities are shown: ${tokSummary}`);
  check(await page.locator('#own-columns').isHidden() && await page.locator('#own-loss-row').isHidden() && await page.locator('#own-preview mark.ent').count() > 0,
    `no column pickers; the preview colours ${await page.locator('#own-preview mark.ent').count()} entities`);
  check(await page.locator('#start').isEnabled(), 'Start is enabled for tagged words');
  await page.locator('#data-section').screenshot({ path: `${shots}/2-data-tokens.png` });
  // A token line with another column count than the rest: the error names file and line, and
  // nothing of the good file stays to be trained on.
  fs.writeFileSync(`${out}/bad-columns.conll`, 'EU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\nGerman JJ I-MISC\n');
  await page.setInputFiles('#own-file', `${out}/bad-columns.conll`);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('error'), null, { timeout: 30_000 });
  const badTok = await page.textContent('#own-summary');
  check(badTok.includes('bad-columns.conll line 4') && await page.locator('#own-preview tr').count() === 0 && await page.locator('#start').isDisabled(),
    `a CoNLL line with another column count is named and Start waits: ${badTok}`);
  await page.setInputFiles('#own-file', conll);
  await page.waitForFunction(() => document.getElementById('own-summary')?.textContent.startsWith('token'), null, { timeout: 30_000 });
  await trainAndCompare(page, 'lora', conll, 'f1');
  const tokMetric = await page.textContent('#dev-metric');
  check(/epoch 1: dev f1 [0-9.]+/.test(tokMetric) && tokMetric.includes('precision') && /F1 by class: LOC [0-9.]+, MISC [0-9.]+, ORG [0-9.]+, PER [0-9.]+/.test(tokMetric),
    `entity F1, overall and per type, is shown: ${tokMetric}`);

  check(await page.locator('#try-classify').isVisible() && await page.locator('#try-search').isHidden(), 'Try it offers a sentence to tag');
  const sentence = 'Angela Merkel visited Paris and met officials of the European Union in Brussels.';
  const tagged = await tagWithTryIt(page, sentence);
  check(await page.locator('#try-out mark.ent').count() === tagged.entities.length,
    `the ${tagged.entities.length} entities are highlighted: ${tagged.entities.map((e) => `${e.entity_group} ${e.word}`).join('; ')}`);
  const tokCkpt = `${out}/kinds-token-checkpoint`;
  await downloadCheckpoint(page, tokCkpt);
  const want = predictCli(tokCkpt, sentence);
  const worstTag = Math.max(0, ...want.words.map((w, i) => Math.abs(w.score - tagged.words[i].score)));
  check(want.words.length === tagged.words.length && want.words.every((w, i) => w.word === tagged.words[i].word && w.tag === tagged.words[i].tag)
    && JSON.stringify(want.entities.map((e) => [e.entity_group, e.start, e.end])) === JSON.stringify(tagged.entities.map((e) => [e.entity_group, e.start, e.end]))
    && worstTag <= 1e-4,
    `Try it's words, tags and entities are lorabert predict --sentence's (max |score diff| ${worstTag.toExponential(2)} <= 1e-4)`);

  // Twelve steps on a tiny random BERT find no entity yet: a checkpoint that does (full
  // fine-tuning of the same model on the slice, natively) is loaded from disk and tried.
  const fullDir = `${out}/kinds-native-tokens-full`;
  fs.rmSync(fullDir, { recursive: true, force: true });
  execFileSync(bin, ['train', '--train-file', conll, '--adapter', 'none', '--epochs', '15', '--batch-size', '8', '--max-len', '32',
    '--lr', '0.003', '--checkpoint-every', '0', '--model', tinyModel, '--out', fullDir], { stdio: ['ignore', 'ignore', 'inherit'] });
  const best = `${fullDir}/best`;
  await page.setInputFiles('#ckpt-files', fs.readdirSync(best).map((f) => `${best}/${f}`));
  await page.click('#load-ckpt');
  await page.waitForFunction(() => /checkpoint loaded/.test(document.getElementById('status')?.textContent ?? '') || document.getElementById('error')?.textContent, null, { timeout: 60_000 });
  check(!(await page.textContent('#error')), `a token-classification checkpoint loads from disk: ${await page.textContent('#try-model')}`);
  const seen = 'EU rejects German call to boycott British lamb.';
  const found = await tagWithTryIt(page, seen);
  const cliFound = predictCli(best, seen);
  const marks = await page.locator('#try-out mark.ent').allTextContents();
  const worstEnt = Math.max(0, ...cliFound.entities.map((e, i) => Math.abs(e.score - (found.entities[i]?.score ?? -1))));
  check(found.entities.length >= 2 && marks.length === found.entities.length
    && JSON.stringify(cliFound.entities.map((e) => [e.entity_group, e.word, e.start, e.end])) === JSON.stringify(found.entities.map((e) => [e.entity_group, e.word, e.start, e.end]))
    && worstEnt <= 1e-4,
    `the entities are highlighted with type and score as lorabert predict finds them: ${marks.join('; ')} (max |score diff| ${worstEnt.toExponential(2)})`);
  await page.locator('#try-section').screenshot({ path: `${shots}/5-try-it-tokens.png` });
  console.log('E2E KINDS PASS');
} catch (e) {
  process.exitCode = 1;
  console.error(e.message);
} finally {
  fs.writeFileSync(`${out}/kinds-console.log`, logs.join('\n') + '\n');
  if (process.exitCode) console.error(logs.slice(-40).join('\n'));
  await browser.close();
}
