import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAir, startAir } from './helpers/cli.js';
import { writePlantedInput } from './helpers/dup-shards.js';
import { query, tempDir } from './helpers/duckdb.js';
import { startRedis, type RedisProcess } from './helpers/redis.js';

/**
 * Queue mode: `air enqueue` puts each shard of a plan in BullMQ (Redis), `air worker` processes run them into
 * attempt folders, and `air status` / `air merge` take exactly one complete attempt per unit.
 */
let dir: string;
let cleanup: () => Promise<void>;
let redis: RedisProcess;
let single: string[];

/** Every written row as `source_file#source_row id`, sorted. */
async function writtenRows(files: readonly string[]): Promise<string[]> {
  const list = files.map((f) => `'${f}'`).join(', ');
  const rows = await query(
    `SELECT source_file || '#' || source_row || ' ' || id FROM read_parquet([${list}]) ORDER BY 1`,
  );
  return rows.map(([r]) => r as string);
}

async function mergedRows(job: string): Promise<string[]> {
  const ledger = JSON.parse(await readFile(path.join(job, 'ledger.json'), 'utf8')) as {
    parts: Array<{ file: string }>;
  };
  return writtenRows(ledger.parts.map((p) => path.join(job, p.file)));
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-queue-'));
  await runAir(['--version']); // fails fast with a clear message when dist/ is not built
  redis = await startRedis(path.join(dir, 'redis'));
  await writePlantedInput(path.join(dir, 'in'));
  await writeFile(
    path.join(dir, 'air.json'),
    JSON.stringify({ method: 'documents', writer: { partRows: 200 }, progress: 'off' }),
  );
  const alone = await runAir(['run', '-c', 'air.json', '--input', 'in', '--output', 'single'], dir);
  expect(alone.code, alone.stderr).toBe(0);
  single = await writtenRows([path.join(dir, 'single', '*.parquet')]);
}, 120_000);

afterAll(async () => {
  await redis?.stop();
  await cleanup?.();
});

describe('air enqueue + air worker', () => {
  it('3 workers over one Redis write exactly the rows of a single run, deduped globally', async () => {
    const planned = await runAir(
      ['plan', '-c', 'air.json', '--input', 'in', '--output', 'job', '--world-size', '1'],
      dir,
    );
    expect(planned.code, planned.stderr).toBe(0);
    const refused = await runAir(['worker', '--queue', redis.url, '--plan', 'job/plan.json'], dir);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('not enqueued');

    const enqueued = await runAir(['enqueue', '--queue', redis.url, '--plan', 'job/plan.json'], dir);
    expect(enqueued.code, enqueued.stderr).toBe(0);
    expect(enqueued.stdout).toMatch(/5 units, 5 added/);
    const again = await runAir(['enqueue', '--queue', redis.url, '--plan', 'job'], dir);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/5 units, 0 added/);

    const before = await runAir(['status', 'job', '--json'], dir);
    expect(before.code).toBe(1);
    const queued = JSON.parse(before.stdout) as { mode: string; ranks: { state: string }[] };
    expect(queued.mode).toBe('queue');
    expect(queued.ranks.map((r) => r.state)).toEqual(Array(5).fill('not-started'));

    const args = ['worker', '--queue', redis.url, '--plan', 'job/plan.json', '--until-empty'];
    const workers = await Promise.all([1, 2, 3].map(() => startAir(args, dir).done));
    for (const w of workers) expect(w.code, w.stderr).toBe(0);
    const counted = workers.map((w) => Number(/done: (\d+) units counted/.exec(w.stderr)![1]));
    expect(counted.reduce((a, b) => a + b, 0)).toBe(5);

    const status = await runAir(['status', 'job'], dir);
    expect(status.code, status.stdout).toBe(0);
    expect(status.stdout).toContain('5 of 5 units complete');
    const merged = await runAir(['merge', 'job'], dir);
    expect(merged.code, merged.stderr).toBe(0);
    const rows = await mergedRows(path.join(dir, 'job'));
    expect(new Set(rows).size).toBe(rows.length);
    expect(rows).toEqual(single);
    const ledger = JSON.parse(await readFile(path.join(dir, 'job', 'ledger.json'), 'utf8')) as {
      totals: { read: number };
      plannedRows: number;
      units: Array<{ unit: number; attempt: string }>;
    };
    expect(ledger.totals.read).toBe(ledger.plannedRows);
    expect(ledger.units.map((u) => u.unit)).toEqual([0, 1, 2, 3, 4]);
    expect((await readdir(path.join(dir, 'job', 'units'))).length).toBe(5);

    // Everything is complete: a third enqueue adds nothing, a worker finds nothing to do.
    const third = await runAir(['enqueue', '--queue', redis.url, '--plan', 'job'], dir);
    expect(third.stdout).toMatch(/0 added, 0 failed ones handed back, 5 already complete/);
  }, 300_000);
});
