import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAir } from './helpers/cli.js';
import { FINEWEB, SAMPLE, tempDir } from './helpers/duckdb.js';

// SIGTERM stops air within its grace period in every phase of a run, not only while it reads input: during
// diversity selection (a blocking stage working on everything read) and while LLM calls are in flight (each far
// longer than the grace period). Model resolution is covered in model-download.test.ts.

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir('air-stop-')));
afterAll(() => cleanup());

interface Ledger {
  status: string;
  stages: { name: string; in: number; out: number }[];
  totals: { read: number; written: number; abandoned: number; dropped: Record<string, number> };
}

/** Runs air with `config`, sends SIGTERM once a progress line matches `when`, and returns what it left. */
async function stopWhen(name: string, input: string, config: object, when: RegExp) {
  const file = path.join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify({ engine: { graceSeconds: 2 }, ...config }));
  const out = path.join(dir, name);
  const run = startAir([
    'run',
    '-i',
    input,
    '-o',
    out,
    '-c',
    file,
    '--progress',
    'log',
    '--progress-interval',
    '0.2',
  ]);
  let sent = false;
  let lines = '';
  run.child.stderr!.on('data', (d: Buffer) => {
    lines += d.toString();
    if (!sent && when.test(lines)) {
      sent = true;
      run.child.kill('SIGTERM');
    }
  });
  const result = await run.done;
  expect(sent, result.stderr).toBe(true);
  expect(result.code, result.stderr).toBe(143);
  const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as Ledger;
  expect(ledger.status).toBe('interrupted');
  const t = ledger.totals;
  expect(t.read).toBe(t.written + Object.values(t.dropped).reduce((a, b) => a + b, 0) + t.abandoned);
  return ledger;
}

const stage = (ledger: Ledger, name: string) => ledger.stages.find((s) => s.name === name)!;

describe('SIGTERM in each phase of a run', () => {
  it('during diversity selection: the selection is abandoned, nothing selected is sent on', async () => {
    const input = path.join(dir, 'shards');
    await mkdir(input, { recursive: true });
    for (let i = 0; i < 12; i++)
      await copyFile(FINEWEB, path.join(input, `s${String(i).padStart(2, '0')}.parquet`));
    const ledger = await stopWhen(
      'diversity',
      input,
      {
        method: 'documents',
        dedupe: { ids: false, exact: false, near: { enabled: false } },
        sample: { diversity: { enabled: true, keep: 10_000 } },
      },
      // Everything read and past the filters, nothing out of the selection yet: it is selecting.
      /read 20,412\/20,412 rows .*diversity_select [\d,]+→0/,
    );
    const selection = stage(ledger, 'diversity_select');
    expect(selection.in).toBeGreaterThan(10_000);
    expect(selection.out).toBe(0);
    // Every document past the filters was in the selection or queued for it: all abandoned, none written.
    expect(ledger.totals.abandoned).toBe(stage(ledger, 'quality_filter').out);
    expect(ledger.totals.written).toBe(0);
  });

  it('while LLM calls are in flight, each far longer than the grace period', async () => {
    const ledger = await stopWhen(
      'llm',
      SAMPLE,
      // 5 tokens/s: a 200-token reply takes 40 s, the grace period is 2 s.
      { llm: { mode: 'sim', simulator: { decodeTokensPerSPerSequence: 5 } } },
      /generate [1-9][\d,]*→/,
    );
    expect(stage(ledger, 'generate').in).toBeGreaterThan(0);
    expect(ledger.totals.abandoned).toBeGreaterThan(0);
  });
});
