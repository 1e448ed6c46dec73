import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../job/config.js';
import { runJob } from '../job/run-job.js';
import { startSimulator } from '../llm/simulator/index.js';
import { SHARED, query, tempDir } from './helpers/duckdb.js';

// Stage 0 of the method wired into the job, on the real samples: quality filters, a seeded reservoir per
// shard, diversity selection as a blocking stage, and a resume that replays settled rows so the selection
// comes out the same.

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir('air-sample-job-')));
afterAll(() => cleanup());

const config = (output: string) =>
  parseRunConfig({
    input: path.join(SHARED, 'data/web'),
    output,
    method: 'documents',
    sample: {
      preSample: { mode: 'reservoir', perShard: 500, seed: 1 },
      diversity: { enabled: true, keep: 300 },
    },
    writer: { partRows: 50 },
    progress: 'off',
  });

const ids = async (out: string): Promise<string[]> =>
  (await query(`select id from read_parquet('${out}/part-*.parquet') order by id`)).map((r) => String(r[0]));

describe('sampling stages in the job', () => {
  it('filters, pre-samples per shard and keeps exactly K diverse documents; a resumed run selects the same', async () => {
    const whole = path.join(dir, 'whole');
    const result = await runJob(config(whole));
    expect(result.report.status).toBe('completed');
    const stages = Object.fromEntries(result.report.stages.map((s) => [s.name, s]));
    expect(stages['quality_filter']!.dropped).toHaveProperty('duplicate_lines');
    expect(stages['pre_sample']!.out).toBeLessThanOrEqual(2 * 500);
    expect(stages['diversity_select']!.out).toBe(300);
    expect(result.report.totals.rowsWritten).toBe(300);
    const expected = await ids(whole);

    // Interrupted after some parts were committed (graceSeconds 0), then resumed.
    const resumed = path.join(dir, 'resumed');
    const stop = new AbortController();
    const first = runJob(
      { ...config(resumed), engine: { ...config(resumed).engine, graceSeconds: 0 } },
      {
        signal: stop.signal,
        onStart: (run) => {
          const timer = setInterval(() => {
            if (run.snapshot().rowsWritten >= 100) {
              clearInterval(timer);
              stop.abort();
            }
          }, 1);
        },
      },
    );
    const interrupted = await first;
    expect(interrupted.report.status, interrupted.report.error).toBe('interrupted');
    const again = await runJob(config(resumed));
    expect(again.report.status).toBe('completed');
    expect(await ids(resumed)).toEqual(expected);
    const replayed =
      again.report.stages.find((s) => s.name === 'diversity_select')!.counters['replayed'] ?? 0;
    expect(replayed).toBeGreaterThan(0);
  }, 300_000);

  it('accounts the embedding calls of diversity selection in the ledger and stats, in the documents method', async () => {
    const simulator = await startSimulator({ zeroLatency: true, models: ['air-embed'] });
    try {
      const out = path.join(dir, 'embedded');
      const base = config(out);
      const result = await runJob(
        parseRunConfig({
          input: path.join(SHARED, 'data/web'),
          output: out,
          method: 'documents',
          sample: {
            preSample: base.sample.preSample,
            diversity: {
              enabled: true,
              keep: 100,
              embeddings: { baseUrl: simulator.url, model: 'air-embed', batchSize: 50 },
            },
          },
          progress: 'off',
        }),
      );
      expect(result.report.status, result.report.error).toBe('completed');
      const selected = result.report.stages.find((s) => s.name === 'diversity_select')!;
      const entry = result.llm!.accounting.entries.find((e) => e.role === 'embeddings')!;
      expect(entry.model).toBe('air-embed');
      expect(entry.calls).toBe(Math.ceil(selected.in / 50));
      expect(entry.promptTokens).toBeGreaterThan(selected.in);
      const ledger = JSON.parse(await readFile(result.ledgerFile, 'utf8')) as {
        llm: { accounting: { totals: { calls: number } } };
      };
      expect(ledger.llm.accounting.totals.calls).toBe(entry.calls);
    } finally {
      await simulator.close();
    }
  });
});
