import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { main } from '../cli/air.js';
import { parseRunConfig } from '../job/config.js';
import { runJob } from '../job/run-job.js';
import { barChartSvg } from '../report/bar-chart.js';
import { CARD_MARKER } from '../report/card/dataset-card.js';
import { readStatsFile } from '../report/stats/stats-file.js';
import { SAMPLE, query, tempDir } from './helpers/duckdb.js';

// The run's report.html opened in headless Chromium (Debian's `chromium` package; `npm test` installs it): no
// console error, nothing fetched from a network, every plot present with marks in it, a screenshot kept in
// test-artifacts/. Then the dataset card: Hugging Face front matter and every output column.

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.resolve(import.meta.dirname, '../test-artifacts');

let dir: string;
let cleanup: () => Promise<void>;
let browser: Browser;
const run = (): string => path.join(dir, 'run');

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium), as scripts/test-deps.sh does when npm test starts`,
    );
  }
  ({ dir, cleanup } = await tempDir('air-report-'));
  const result = await runJob(
    parseRunConfig({ input: SAMPLE, output: run(), llm: { mode: 'sim' }, progress: 'off' }),
  );
  expect(result.report.status, result.report.error).toBe('completed');
  if (!existsSync(path.join(run(), 'report.html'))) {
    throw new Error(
      `${run()}/report.html is missing: job/run-job.ts must call writeRunStats() at the end of a run`,
    );
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}, 600_000);
afterAll(async () => {
  await browser?.close();
  await cleanup?.();
});

/** The little of the DOM the checks use (the test is compiled without the DOM library). */
interface DomElement {
  getAttribute(name: string): string | null;
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): Iterable<DomElement> & { readonly length: number };
  getBoundingClientRect(): { readonly width: number; readonly height: number };
}

interface PageCheck {
  errors: string[];
  requests: string[];
  figures: Record<string, number>;
  svgsWithoutMarks: number;
  svgs: number;
}

/** Opens a report, collects console errors and requests, counts the marks of each figure, saves a screenshot. */
async function openReport(file: string, screenshot: string): Promise<PageCheck> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`file://${file}`, { waitUntil: 'load' });
  const check = await page.evaluate(() => {
    const document = (globalThis as unknown as { document: DomElement }).document;
    const figures: Record<string, number> = {};
    for (const figure of document.querySelectorAll('figure[data-figure]')) {
      const svg = figure.querySelector('svg');
      const box = svg?.getBoundingClientRect();
      figures[figure.getAttribute('data-figure')!] =
        svg === null || box === undefined || box.width === 0 || box.height === 0
          ? -1
          : svg.querySelectorAll('.mark').length;
    }
    const svgs = [...document.querySelectorAll('svg')];
    return {
      figures,
      svgs: svgs.length,
      svgsWithoutMarks: svgs.filter((s) => s.querySelectorAll('.mark').length === 0).length,
    };
  });
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, screenshot), fullPage: true });
  await page.close();
  return { errors, requests: requests.filter((u) => !u.startsWith('file://')), ...check };
}

describe('report.html', () => {
  it('opens in Chromium with no console error, fetches nothing, and every plot has marks', async () => {
    const page = await openReport(path.join(run(), 'report.html'), 'report.png');
    expect(page.errors).toEqual([]);
    expect(page.requests).toEqual([]);
    expect(page.svgsWithoutMarks).toBe(0);
    // The simulator's rows: the tagger finds nothing in them, and AIR rows carry no document length.
    for (const id of [
      'funnel',
      'losses',
      'length-instruction',
      'length-output',
      'constraint-types',
      'domains',
      'complexity-quality',
      'scores',
      'depth',
      'throughput',
      'latency-time',
      'latency-models',
    ]) {
      expect(page.figures[id], id).toBeGreaterThan(0);
    }
    expect(page.figures['length-document'], 'length-document').toBeGreaterThan(0); // AIR rows carry document_words
    expect(page.svgs).toBeGreaterThanOrEqual(12);
  });

  it('puts AIR output and a baseline dataset side by side (air stats --compare)', async () => {
    const baseline = path.join(dir, 'alpaca-like.jsonl');
    await writeFile(
      baseline,
      [
        'Write a formal email to a client in under 100 words.',
        'List three fruits as a JSON array.',
        'Explain photosynthesis to a five-year-old, without using technical terms.',
        'Summarize the article in exactly three bullet points.',
      ]
        .map((instruction, i) => JSON.stringify({ instruction, output: `answer ${i} `.repeat(i + 3) }))
        .join('\n'),
    );
    const file = path.join(dir, 'compare.html');
    let stdout = '';
    const io = { stdout: (t: string) => (stdout += t), stderr: (t: string) => (stdout += t), isTTY: false };
    const code = await main(
      ['stats', '--compare', run(), baseline, '--labels', 'air,baseline', '--out', file],
      io,
    );
    expect(code, stdout).toBe(0);
    expect(stdout).toMatch(/air: \d+ rows \(its stats\.json\)/);
    expect(stdout).toMatch(/baseline: 4 rows \(read from the files\)/);
    const page = await openReport(file, 'report-compare.png');
    expect(page.errors).toEqual([]);
    expect(page.requests).toEqual([]);
    expect(page.svgsWithoutMarks).toBe(0);
    for (const id of ['length-instruction', 'length-output', 'tagged-types', 'complexity-quality']) {
      expect(page.figures[id], id).toBeGreaterThan(0);
    }
    const html = await readFile(file, 'utf8');
    expect(html).toContain('air vs baseline');
    // The baseline has no ledger: its funnel cell says so instead of showing zeros.
    expect(html).toMatch(/input documents read<\/th><td class="n">300<\/td><td>-<\/td>/);
  });

  it('escapes text from the data in its plots', () => {
    const svg = barChartSvg({
      title: 'hosts <&>',
      valueLabel: 'rows',
      categories: ['<script>alert(1)</script>'],
      series: [{ name: 'a "b"', values: [3] }],
    });
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;script&gt;');
    expect(svg).toContain('hosts &lt;&amp;&gt;');
  });
});

describe('README.md dataset card', () => {
  it('has Hugging Face front matter and lists every output column', async () => {
    const card = await readFile(path.join(run(), 'README.md'), 'utf8');
    const match = /^---\n([\s\S]*?)\n---\n/.exec(card);
    expect(match).not.toBeNull();
    const front = parseYaml(match![1]!) as {
      license: string;
      task_categories: string[];
      language: string[];
      size_categories: string[];
      configs: Array<{ config_name: string; data_files: Array<{ split: string; path: string }> }>;
      dataset_info: { features: Array<{ name: string }>; splits: Array<{ num_examples: number }> };
    };
    const columns = (await query(`describe select * from read_parquet('${run()}/part-*.parquet')`)).map((r) =>
      String(r[0]),
    );
    const stats = (await readStatsFile(path.join(run(), 'stats.json')))!;
    expect(front.license).toBe('other');
    expect(front.task_categories).toEqual(['text-generation']);
    expect(front.language).toEqual(['en']);
    expect(front.size_categories).toEqual(['n<1K']);
    expect(front.configs).toEqual([
      { config_name: 'default', data_files: [{ split: 'train', path: 'part-*.parquet' }] },
    ]);
    expect(front.dataset_info.features.map((f) => f.name)).toEqual(columns);
    expect(front.dataset_info.splits[0]!.num_examples).toBe(stats.rows);
    for (const column of columns) expect(card, column).toMatch(new RegExp(`^\\| \`${column}\` \\| `, 'm'));
    expect(card).toContain(CARD_MARKER);
    for (const heading of ['## Dataset structure', '## How it was made', '## Statistics', '## Licence']) {
      expect(card).toContain(heading);
    }
    expect(card).toContain('air-sim-guidance');
    expect(card).toMatch(/Prompt version: `v2\+/);
    // The settings block: those that decide the rows (schemas/settings.ts), never addresses or concurrency.
    const settings = /```yaml\n([\s\S]*?)\n```/.exec(card)![1]!;
    expect(settings).toMatch(/^method: "air"$/m);
    expect(settings).toMatch(/^air\.seed: /m);
    expect(settings).not.toMatch(/^(output|engine\.|writer\.|progress)|baseUrl|maxConcurrency|llm\.cache:/m);
  });

  it('leaves a README.md that air did not write alone', async () => {
    const folder = path.join(dir, 'foreign');
    await mkdir(folder);
    await writeFile(path.join(folder, 'README.md'), '# my notes\n');
    await writeFile(
      path.join(folder, 'data.jsonl'),
      `${JSON.stringify({ instruction: 'Say hi.', output: 'Hi.' })}\n`,
    );
    let stdout = '';
    const io = { stdout: (t: string) => (stdout += t), stderr: (t: string) => (stdout += t), isTTY: false };
    expect(await main(['stats', folder], io), stdout).toBe(0);
    expect(await readFile(path.join(folder, 'README.md'), 'utf8')).toBe('# my notes\n');
    expect(await readFile(path.join(folder, 'README.air.md'), 'utf8')).toContain(CARD_MARKER);
  });
});
