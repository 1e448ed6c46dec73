import { copyFile, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../job/config.js';
import { configFingerprint } from '../job/fingerprint.js';
import { assignByBytes, imbalance } from '../job/plan/assign.js';
import { planFile } from '../job/plan/layout.js';
import { buildPlan, planDifference, readPlan, savePlan } from '../job/plan/plan-file.js';
import { AirError, ConfigError } from '../pipeline/errors.js';
import { shardIdentity } from '../pipeline/io/manifest.js';
import { resolveShards } from '../pipeline/io/shards.js';
import { runAir } from './helpers/cli.js';
import { DOLMA, FINEWEB, SAMPLE, scalar, tempDir, writeParquet } from './helpers/duckdb.js';

let dir: string;
let cleanup: () => Promise<void>;
let shards: string;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-plan-'));
  shards = path.join(dir, 'shards');
  await mkdir(path.join(shards, 'web'), { recursive: true });
  for (const file of [FINEWEB, DOLMA]) await copyFile(file, path.join(shards, 'web', path.basename(file)));
  await copyFile(SAMPLE, path.join(shards, 'sample.parquet'));
  // Skewed sizes: one large generated shard and several small ones.
  const gen = (rows: number) =>
    `select i as id, repeat('word ' || i::varchar || ' ', 60 + i % 7) as text from range(${rows}) t(i)`;
  await writeParquet(path.join(shards, 'big.parquet'), gen(40_000));
  for (const n of [1, 2, 3, 4, 5]) await writeParquet(path.join(shards, `small-${n}.parquet`), gen(200 * n));
});
afterAll(() => cleanup());

const configFor = (output: string, extra: Record<string, unknown> = {}) =>
  parseRunConfig({ input: shards, output, ...extra });

describe('assignByBytes', () => {
  it('longest first, each to the lightest rank (ties to the lowest), kept in listing order within a rank', () => {
    const listing = [
      { label: 'a', size: 5 },
      { label: 'b', size: 9 },
      { label: 'c', size: 5 },
      { label: 'd', size: 2 },
      { label: 'e', size: 4 },
    ];
    const { rankOf, shardsOf, bytes } = assignByBytes(listing, 2);
    // b→0 (9); a→1 (5); c→1 (10); e→0 (13); d→1 (12).
    expect(rankOf).toEqual([1, 0, 1, 1, 0]);
    expect(shardsOf).toEqual([
      [1, 4],
      [0, 2, 3],
    ]);
    expect(bytes).toEqual([13, 12]);
  });

  it('depends only on labels and sizes, not on the order they come in', () => {
    const listing = Array.from({ length: 200 }, (_, i) => ({
      label: `s${String(i).padStart(3, '0')}`,
      size: (i * 7919) % 1000,
    }));
    const a = assignByBytes(listing, 16);
    const shuffled = [...listing].reverse();
    const b = assignByBytes(shuffled, 16);
    const rankByLabel = (list: typeof listing, rankOf: readonly number[]) =>
      Object.fromEntries(list.map((s, i) => [s.label, rankOf[i]]));
    expect(rankByLabel(shuffled, b.rankOf)).toEqual(rankByLabel(listing, a.rankOf));
    expect(imbalance(a.bytes)).toBeLessThan(1.01);
  });

  it('refuses a config with source.limit, which ranks cannot split', async () => {
    await expect(
      buildPlan(configFor(path.join(dir, 'limited'), { source: { limit: 10 } }), 2),
    ).rejects.toThrow(/source\.limit cannot be split across ranks/);
  });

  it('refuses diversity selection, which selects among all documents at once', async () => {
    await expect(
      buildPlan(
        configFor(path.join(dir, 'diverse'), { sample: { diversity: { enabled: true, keep: 5 } } }),
        2,
      ),
    ).rejects.toThrow(/sample\.diversity selects among all documents at once/);
  });

  it('more ranks than shards leaves ranks empty; a bad world size is refused', () => {
    const { shardsOf, bytes } = assignByBytes([{ label: 'x', size: 3 }], 3);
    expect(shardsOf).toEqual([[0], [], []]);
    expect(bytes).toEqual([3, 0, 0]);
    expect(() => assignByBytes([], 0)).toThrow(RangeError);
  });
});

describe('buildPlan and plan.json', () => {
  it('freezes each shard: identity as a resume checks it, rows from the footer, rank balanced by bytes', async () => {
    const root = path.join(dir, 'job-a');
    const config = configFor(root);
    const plan = await buildPlan(config, 3);
    const listed = await resolveShards([shards]);
    expect(plan.shards.map((s) => s.label)).toEqual(listed.map((s) => s.label));
    expect(plan.shards.map((s) => s.index)).toEqual(listed.map((_, i) => i));
    for (const [i, shard] of listed.entries()) {
      const planned = plan.shards[i]!;
      const identity = await shardIdentity(shard);
      expect(planned).toMatchObject({ ...identity, path: shard.path });
      expect(planned.rows).toBe(Number(await scalar(`select count(*) from read_parquet('${shard.path}')`)));
    }
    expect(plan.fingerprint).toBe(configFingerprint(config));
    expect(plan.totals.rows).toBe(plan.shards.reduce((n, s) => n + s.rows, 0));
    // The big shard is alone on its rank; the rest share the other two.
    const big = plan.shards.find((s) => s.label === 'big.parquet')!;
    expect(plan.ranks[big.rank]!.shards).toEqual(['big.parquet']);
    for (const rank of plan.ranks) {
      const own = plan.shards.filter((s) => s.rank === rank.rank);
      expect(rank.shards).toEqual(own.map((s) => s.label)); // plan (label) order
      expect(rank.bytes).toBe(own.reduce((n, s) => n + s.size, 0));
      expect(rank.rows).toBe(own.reduce((n, s) => n + s.rows, 0));
    }
    // The same listing gives the same plan.
    expect(planDifference(plan, await buildPlan(config, 3))).toBeUndefined();
  });

  it('writes plan.json once; the same plan again is kept, another one refused naming what differs', async () => {
    const root = path.join(dir, 'job-b');
    await mkdir(root);
    const plan = await buildPlan(configFor(root), 2);
    expect(await savePlan(root, plan)).toBe('written');
    const written = await readFile(planFile(root), 'utf8');
    expect(await savePlan(root, await buildPlan(configFor(root), 2))).toBe('unchanged');
    expect(await readFile(planFile(root), 'utf8')).toBe(written);
    expect((await readPlan(root)).shards).toEqual(plan.shards);

    const refused = async (next: Promise<Awaited<typeof plan>>): Promise<string> => {
      const error = await savePlan(root, await next).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AirError);
      expect((error as AirError).code).toBe('AIR_PLAN_MISMATCH');
      return (error as Error).message;
    };
    expect(await refused(buildPlan(configFor(root), 4))).toMatch(
      /another plan is here \(world size 2 -> 4\)/,
    );
    expect(await refused(buildPlan(configFor(root, { filter: { minWords: 3 } }), 2))).toMatch(
      /config fingerprint \w{16} -> \w{16} \(filter\.minWords\)/,
    );
    const touched = path.join(shards, 'small-1.parquet');
    await utimes(touched, new Date(), new Date(Date.now() + 5_000));
    expect(await refused(buildPlan(configFor(root), 2))).toMatch(
      /shard listing differs: changed small-1\.parquet \(mtimeMs\)/,
    );
    const extra = path.join(shards, 'small-6.parquet');
    await copyFile(path.join(shards, 'small-2.parquet'), extra);
    expect(await refused(buildPlan(configFor(root), 2))).toMatch(
      /added small-6\.parquet; changed small-1\.parquet/,
    );
    // --force replaces it.
    const replacement = await buildPlan(configFor(root), 2);
    expect(await savePlan(root, replacement, true)).toBe('replaced');
    expect((await readPlan(planFile(root))).totals).toEqual(replacement.totals);
  });

  it('readPlan validates and names the file', async () => {
    const root = path.join(dir, 'job-c');
    await mkdir(root);
    await expect(readPlan(root)).rejects.toThrow(new RegExp(`${planFile(root)}: no plan here`));
    await writeFile(planFile(root), '{"version": 1');
    await expect(readPlan(root)).rejects.toThrow(ConfigError);
    await expect(readPlan(root)).rejects.toThrow(/plan\.json: not JSON/);
    const plan = await buildPlan(configFor(root), 2);
    await writeFile(planFile(root), JSON.stringify({ ...plan, worldSize: 3 }));
    await expect(readPlan(root)).rejects.toThrow(
      /plan\.json: not an air plan version 1 at ranks: expected 3 ranks/,
    );
    await writeFile(planFile(root), JSON.stringify({ ...plan, version: 2 }));
    await expect(readPlan(root)).rejects.toThrow(/not an air plan version 1 at version/);
    // A shard moved to another rank by hand, its rank lists left as they were: runs and merge would disagree.
    const moved = { ...plan, shards: plan.shards.map((s, i) => (i === 0 ? { ...s, rank: 1 - s.rank } : s)) };
    await writeFile(planFile(root), JSON.stringify(moved));
    await expect(readPlan(root)).rejects.toThrow(/at ranks\.\d: disagrees with the shards assigned to it/);
  });

  it('names an input that is not Parquet', async () => {
    const bad = path.join(dir, 'bad');
    await mkdir(bad);
    await writeFile(path.join(bad, 'x.parquet'), 'not parquet at all');
    await expect(buildPlan(parseRunConfig({ input: bad, output: dir }), 1)).rejects.toThrow(
      /x\.parquet: cannot read its Parquet footer/,
    );
  });
});

describe('air plan (CLI)', () => {
  it('plans, keeps the same plan, refuses another with exit 2 in one line, replaces it with --force', async () => {
    const root = path.join(dir, 'job-cli');
    const args = ['plan', '--input', path.join(shards, 'web'), '--output', root];
    const first = await runAir([...args, '--world-size', '2']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/2 shards, [\d,]+ rows, [\d.]+ MB over 2 ranks/);
    expect(first.stdout).toMatch(/written .*plan\.json/);
    expect((await readPlan(root)).worldSize).toBe(2);

    const again = await runAir([...args, '--world-size', '2']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/the same plan is already there \(kept\)/);

    const other = await runAir([...args, '--world-size', '3']);
    expect(other.code).toBe(2);
    expect(other.stderr.trim().split('\n')).toHaveLength(1);
    expect(other.stderr).toMatch(/another plan is here \(world size 2 -> 3\).*--force/);

    const config = path.join(dir, 'air.yaml');
    await writeFile(config, 'method: documents\nfilter:\n  minWords: 5\n');
    const otherConfig = await runAir([...args, '--world-size', '2', '--config', config]);
    expect(otherConfig.code).toBe(2);
    expect(otherConfig.stderr).toMatch(/config fingerprint .*\(filter\.minWords, method\)/);

    const forced = await runAir([...args, '--world-size', '3', '--force']);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/replaced .*plan\.json/);
    expect((await readPlan(root)).worldSize).toBe(3);
  });

  it('usage errors exit 2', async () => {
    const missing = await runAir(['plan', '--input', shards, '--output', path.join(dir, 'x')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--world-size/);
    const noInput = await runAir(['plan', '--output', path.join(dir, 'x'), '--world-size', '2']);
    expect(noInput.code).toBe(2);
    expect(noInput.stderr).toMatch(/no input/);
    const zero = await runAir([
      'plan',
      '--input',
      shards,
      '--output',
      path.join(dir, 'x'),
      '--world-size',
      '0',
    ]);
    expect(zero.code).toBe(2);
  });
});
