import { spawnSync } from 'node:child_process';
import { copyFile, cp, mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../job/config.js';
import {
  completionFile,
  heartbeatFile,
  isComplete,
  markComplete,
  rankDir,
  startHeartbeat,
} from '../job/plan/layout.js';
import { buildPlan, savePlan } from '../job/plan/plan-file.js';
import { jobStatus } from '../job/plan/status.js';
import { readManifest } from '../pipeline/io/manifest.js';
import { countRows } from '../pipeline/row-ranges.js';
import { jobStatusSchema, type Plan } from '../schemas/plan.js';
import { runAir, startAir } from './helpers/cli.js';
import { SAMPLE, tempDir, writeParquet } from './helpers/duckdb.js';

let dir: string;
let cleanup: () => Promise<void>;
let root: string;
let plan: Plan;
/** Rank by what it holds: the sample (largest), and the two generated shards. */
let full: number;
let partial: number;
let idle: number;

/** One rank run as `air run` runs it: the rank's planned shards into ranks/NNNNN. */
async function runRank(rank: number, extra: string[] = []): Promise<void> {
  const inputs = plan.shards.filter((s) => s.rank === rank).map((s) => s.path);
  const result = await runAir([
    'run',
    '-i',
    ...inputs,
    '-o',
    rankDir(root, rank),
    '--method',
    'documents',
    '--progress',
    'off',
    ...extra,
  ]);
  expect(result.code, result.stderr).toBe(0);
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-status-'));
  const shards = path.join(dir, 'shards');
  await mkdir(shards);
  await copyFile(SAMPLE, path.join(shards, 'sample.parquet'));
  const gen = (rows: number) =>
    `select i as id, 'doc ' || i::varchar || ' ' || repeat('alpha beta gamma ' || (i * 7)::varchar || ' ', 30) as text from range(${rows}) t(i)`;
  await writeParquet(path.join(shards, 'gen-a.parquet'), gen(400));
  await writeParquet(path.join(shards, 'gen-b.parquet'), gen(150));
  root = path.join(dir, 'job');
  await mkdir(root);
  plan = await buildPlan(parseRunConfig({ input: shards, output: root, method: 'documents' }), 3);
  await savePlan(root, plan);
  const rankOf = (label: string) => plan.shards.find((s) => s.label === label)!.rank;
  [full, partial, idle] = [rankOf('sample.parquet'), rankOf('gen-a.parquet'), rankOf('gen-b.parquet')];
  expect(new Set([full, partial, idle]).size).toBe(3);
  await runRank(full);
  await runRank(partial, ['--limit', '50']);
});
afterAll(() => cleanup());

describe('rank folders and completions', () => {
  it('names folders with 5 digits and counts a completion only under the plan fingerprint', async () => {
    expect(path.relative(root, rankDir(root, 7))).toBe(path.join('ranks', '00007'));
    expect(path.relative(root, completionFile(root, 12345))).toBe(path.join('completions', '12345'));
    const scratch = path.join(dir, 'scratch');
    expect(await isComplete(scratch, 0, plan.fingerprint)).toBe(false);
    await markComplete(scratch, 0, { fingerprint: '0123456789abcdef', rowsWritten: 3 });
    expect(await isComplete(scratch, 0, plan.fingerprint)).toBe(false);
    await markComplete(scratch, 0, { fingerprint: plan.fingerprint, rowsWritten: 3 });
    expect(await isComplete(scratch, 0, plan.fingerprint)).toBe(true);
    expect(await isComplete(scratch, 1, plan.fingerprint)).toBe(false);
    await writeFile(completionFile(scratch, 1), '{"fingerprint":');
    expect(await isComplete(scratch, 1, plan.fingerprint)).toBe(false);
  });
});

describe('jobStatus', () => {
  it('tells not started, interrupted and complete apart, counting settled rows from the manifests', async () => {
    const before = await jobStatus(root);
    const byRank = (s: typeof before, r: number) => s.ranks[r]!;
    // A finished `air run` that did not mark itself: its rows are all settled, the rank is not complete.
    expect(byRank(before, full)).toMatchObject({ state: 'interrupted', settledRows: plan.ranks[full]!.rows });
    expect(byRank(before, full).note).toMatch(/manifest is complete but it wrote no completion/);
    expect(byRank(before, partial)).toMatchObject({ state: 'interrupted', settledRows: 50 });
    expect(byRank(before, partial).plannedRows).toBe(400);
    expect(byRank(before, idle)).toMatchObject({ state: 'not-started', settledRows: 0, startedAt: null });
    expect(before.complete).toBe(false);

    const manifest = (await readManifest(rankDir(root, full)))!;
    const written = manifest.commits.reduce((n, c) => n + c.rows, 0);
    expect(byRank(before, full).rowsWritten).toBe(written);
    await markComplete(root, full, { fingerprint: plan.fingerprint, rowsWritten: written });
    const after = await jobStatus(root);
    expect(byRank(after, full)).toMatchObject({ state: 'complete', rowsWritten: written, etaSeconds: 0 });
    expect(after.totals).toMatchObject({ complete: 1, interrupted: 1, notStarted: 1, running: 0 });
    expect(after.totals.settledRows).toBe(plan.ranks[full]!.rows + 50);
    expect(jobStatusSchema.parse(after)).toEqual(after);
  });

  it('a fresh heartbeat makes a rank running, with its own rate and ETA; stale or dead, interrupted', async () => {
    const beat = await startHeartbeat(root, partial);
    try {
      const manifest = (await readManifest(rankDir(root, partial)))!;
      const started = new Date(manifest.header.createdAt);
      const now = new Date(started.getTime() + 10_000);
      const status = await jobStatus(root, { now });
      const rank = status.ranks[partial]!;
      expect(rank).toMatchObject({ state: 'running', settledRows: 50, note: null });
      expect(rank.heartbeat).toMatchObject({ pid: process.pid, host: os.hostname() });
      expect(rank.rowsPerSecond).toBeCloseTo(5, 6); // 50 rows in 10 s
      expect(rank.etaSeconds).toBeCloseTo(350 / 5, 6);
      expect(status.totals.rowsPerSecond).toBeCloseTo(5, 6);
      // The job ends with its slowest rank: the idle one, assumed started now at the mean of the known rates.
      const rates = status.ranks.map((r) => r.rowsPerSecond).filter((x): x is number => x !== null);
      const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
      expect(status.totals.etaSeconds).toBeCloseTo(Math.max(70, 150 / mean), 6);

      const later = await jobStatus(root, { now: new Date(Date.now() + 120_000) });
      expect(later.ranks[partial]).toMatchObject({ state: 'interrupted', rowsPerSecond: null });
      expect(later.ranks[partial]!.note).toMatch(/last sign of life 1\d\ds ago/);
      expect(later.totals.etaSeconds).not.toBeNull();
    } finally {
      await beat.stop();
    }
    // A heartbeat left by a process of this machine that is gone (a SIGKILLed rank): interrupted at once.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const at = new Date().toISOString();
    await mkdir(path.dirname(heartbeatFile(root, partial)), { recursive: true });
    await writeFile(
      heartbeatFile(root, partial),
      JSON.stringify({ pid: dead, host: os.hostname(), startedAt: at, updatedAt: at }),
    );
    const gone = await jobStatus(root);
    expect(gone.ranks[partial]).toMatchObject({ state: 'interrupted' });
    expect(gone.ranks[partial]!.note).toBe(`process ${dead} on ${os.hostname()} is gone`);
    await rm(heartbeatFile(root, partial));
  });

  it('a rank with a heartbeat but no folder yet is running; a completion of another plan does not count', async () => {
    const beat = await startHeartbeat(root, idle);
    expect((await jobStatus(root)).ranks[idle]).toMatchObject({
      state: 'running',
      settledRows: 0,
      rowsPerSecond: null,
    });
    await beat.stop();
    expect((await jobStatus(root)).ranks[idle]!.state).toBe('not-started');
    await markComplete(root, idle, { fingerprint: 'ffffffffffffffff', rowsWritten: 0 });
    const status = await jobStatus(root);
    expect(status.ranks[idle]).toMatchObject({ state: 'not-started' });
    expect(status.ranks[idle]!.note).toMatch(/completions\/\d{5} is of another plan \(fingerprint f{16}\)/);
  });
});

describe('a rank killed mid-way', () => {
  it('is interrupted once its manifest is stale or its dead process left a heartbeat, with the rows it settled', async () => {
    const shards = path.join(dir, 'kill-shards');
    await mkdir(shards);
    await writeParquet(
      path.join(shards, 'many.parquet'),
      `select i as id, 'doc ' || i::varchar || ' ' || repeat('alpha beta gamma ' || (i * 7)::varchar || ' ', 20) as text from range(60000) t(i)`,
    );
    const killRoot = path.join(dir, 'kill-job');
    await mkdir(killRoot);
    const killPlan = await buildPlan(parseRunConfig({ input: shards, output: killRoot }), 1);
    await savePlan(killRoot, killPlan);
    const config = path.join(dir, 'checkpoint-often.yaml');
    await writeFile(config, 'engine:\n  checkpointSeconds: 0.2\n');
    const out = rankDir(killRoot, 0);
    const { child, done } = startAir([
      'run',
      '-i',
      killPlan.shards[0]!.path,
      '-o',
      out,
      '--method',
      'documents',
      '--progress',
      'off',
      '--config',
      config,
      '--part-rows',
      '2000',
    ]);
    const manifestText = () => readFile(path.join(out, 'manifest.jsonl'), 'utf8').catch(() => '');
    while (!(await manifestText()).includes('"kind":"commit"')) {
      if (child.exitCode !== null) throw new Error('the run ended before its first commit');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');

    const settled = (await readManifest(out))!.commits.reduce(
      (n, c) => n + Object.values(c.settled).reduce((m, ranges) => m + countRows(ranges), 0),
      0,
    );
    expect(settled).toBeGreaterThan(0);
    expect(settled).toBeLessThan(60_000);
    // Without a heartbeat, its manifest's last write is all there is: just written, so it looks alive…
    const soon = (await jobStatus(killRoot)).ranks[0]!;
    expect(soon).toMatchObject({ state: 'running', settledRows: settled, plannedRows: 60_000 });
    expect(soon.note).toBe('no heartbeat: judged by its manifest.jsonl');
    // …until the stale window has passed.
    const stale = (await jobStatus(killRoot, { staleAfterSeconds: 0 })).ranks[0]!;
    expect(stale).toMatchObject({ state: 'interrupted', settledRows: settled, rowsPerSecond: null });
    // A heartbeat the killed process left behind says so at once.
    const at = new Date().toISOString();
    await mkdir(path.dirname(heartbeatFile(killRoot, 0)), { recursive: true });
    await writeFile(
      heartbeatFile(killRoot, 0),
      JSON.stringify({ pid: child.pid, host: os.hostname(), startedAt: at, updatedAt: at }),
    );
    const gone = (await jobStatus(killRoot)).ranks[0]!;
    expect(gone).toMatchObject({
      state: 'interrupted',
      note: `process ${child.pid} on ${os.hostname()} is gone`,
    });
    const cli = await runAir(['status', killRoot]);
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/0 of 1 ranks complete, 0 running, 1 interrupted/);
  });
});

describe('a rank that stopped', () => {
  it('is interrupted at once, by its ledger, even when its manifest was written after the ledger (an s3:// output uploads them so)', async () => {
    const copyRoot = path.join(dir, 'stopped-job');
    await mkdir(copyRoot);
    await savePlan(copyRoot, plan);
    await cp(rankDir(root, partial), rankDir(copyRoot, partial), { recursive: true });
    const ledgerFile = path.join(rankDir(copyRoot, partial), 'ledger.json');
    const ledger = JSON.parse(await readFile(ledgerFile, 'utf8')) as Record<string, unknown>;
    const finishedAt = new Date().toISOString();
    await writeFile(ledgerFile, JSON.stringify({ ...ledger, status: 'interrupted', finishedAt }));
    // The manifest's last write after the ledger's, as a bucket's objects have them.
    const later = new Date(Date.now() + 2000);
    await utimes(path.join(rankDir(copyRoot, partial), 'manifest.jsonl'), later, later);
    const rank = (await jobStatus(copyRoot)).ranks[partial]!;
    expect(rank).toMatchObject({ state: 'interrupted' });
    expect(rank.note).toContain(`it stopped (ledger.json: interrupted at ${finishedAt})`);
  });
});

describe('air status (CLI)', () => {
  it('exits 1 while a rank is unfinished, 0 when all are complete, 2 without a plan', async () => {
    const text = await runAir(['status', root]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/1 of 3 ranks complete, 0 running, 1 interrupted, 1 not started/);
    expect(text.stdout).toMatch(/\n0000\d\s+not-started/);
    const json = await runAir(['status', root, '--json']);
    expect(json.code).toBe(1);
    const status = jobStatusSchema.parse(JSON.parse(json.stdout));
    expect(status.ranks.map((r) => r.state).sort()).toEqual(['complete', 'interrupted', 'not-started']);

    // Run the partial rank again in full (--limit decides results, so a resume without it is refused), then mark.
    await rm(rankDir(root, partial), { recursive: true });
    await runRank(partial);
    // The idle rank is run for real too: a completion for a rank that never read a row would prove nothing.
    await runRank(idle);
    for (const rank of [partial, idle]) {
      const manifest = await readManifest(rankDir(root, rank));
      const rows = manifest?.commits.reduce((n, c) => n + c.rows, 0) ?? 0;
      await markComplete(root, rank, { fingerprint: plan.fingerprint, rowsWritten: rows });
    }
    const done = await runAir(['status', root, '--json']);
    expect(done.code).toBe(0);
    const final = jobStatusSchema.parse(JSON.parse(done.stdout));
    expect(final.complete).toBe(true);
    expect(final.totals).toMatchObject({ complete: 3, settledRows: plan.totals.rows, etaSeconds: 0 });

    const bad = await runAir(['status', path.join(dir, 'nowhere')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/nowhere: no plan here/);
  });
});
