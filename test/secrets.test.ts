import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../llm/simulator/index.js';
import { SAMPLE, tempDir } from './helpers/duckdb.js';
import { startAir } from './helpers/cli.js';

// A planted API key must appear nowhere a run writes: parts, failure rows, ledger, manifest, stats, report,
// dataset card, cache, duplicate notes, logs, nor in what it prints when it fails.

const SECRET = 'sk-planted-9f8e7d6c5b4a3921';

let dir: string;
let cleanup: () => Promise<void>;
let sim: Simulator;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-secrets-'));
  sim = await startSimulator({
    models: ['g', 's'],
    apiKey: SECRET,
    decodeTokensPerSPerSequence: 4000,
    rateMalformed: 0.05,
  });
});
afterAll(async () => {
  await sim.close();
  await cleanup();
});

async function everyFile(folder: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(folder)) {
    const full = path.join(folder, entry);
    if ((await stat(full)).isDirectory()) files.push(...(await everyFile(full)));
    else files.push(full);
  }
  return files;
}

async function run(args: string[]): Promise<string> {
  const { child, done } = startAir(args);
  void child;
  const result = await done;
  return `${result.stdout}\n${result.stderr}\nexit ${result.code}`;
}

describe('secrets', () => {
  it('a planted API key is in no file a run writes and in nothing it prints, also when it fails', async () => {
    const out = path.join(dir, 'run');
    process.env.AIR_SECRET_TEST_KEY = SECRET;
    const args = ['run', '--input', SAMPLE, '--output', out, '--limit', '80', '--progress', 'log'];
    const endpoints = ['--guidance-url', sim.url, '--guidance-model', 'g', '--student-url', sim.url];
    const printed = [
      await run([...args, ...endpoints, '--student-model', 's', '--api-key-env', 'AIR_SECRET_TEST_KEY']),
      // A refused key (wrong variable) and an unknown model: errors must name the endpoint, never the key.
      await run([
        ...args.slice(0, 4),
        path.join(dir, 'bad'),
        ...endpoints,
        '--student-model',
        'nope',
        '--api-key-env',
        'AIR_SECRET_TEST_KEY',
      ]),
    ];
    const files = [...(await everyFile(out)), ...(await everyFile(path.join(dir, 'bad')))];
    expect(files.map((f) => path.basename(f))).toEqual(
      expect.arrayContaining([
        'ledger.json',
        'manifest.jsonl',
        'stats.json',
        'report.html',
        'README.md',
        'llm-cache.sqlite',
      ]),
    );
    const haystack = [...printed];
    for (const file of files) haystack.push((await readFile(file)).toString('latin1'));
    for (const text of haystack) expect(text.includes(SECRET)).toBe(false);
    expect(printed[0]).toMatch(/exit 0/);
    expect(printed[1]).toMatch(/student \(nope at/);
  }, 300_000);
});
