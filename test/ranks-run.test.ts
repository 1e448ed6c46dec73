import { copyFile, mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAir, startAir } from './helpers/cli.js';
import { slurmEnv, writePlantedInput } from './helpers/dup-shards.js';
import { SAMPLE, tempDir } from './helpers/duckdb.js';
import { writtenRows } from './helpers/output-rows.js';

/**
 * `air run --plan --rank auto` as a Slurm array would start it: 4 concurrent processes over a shared folder
 * write exactly the rows a single run writes, with dedupe global across ranks.
 */
let dir: string;
let cleanup: () => Promise<void>;
let single: string[];

const WORLD = 4;

/** Writes a documents-method config with `partRows` and plans `in/` into `output` for WORLD ranks. */
async function planJob(config: string, output: string, partRows: number): Promise<void> {
  await writeFile(
    path.join(dir, config),
    JSON.stringify({ method: 'documents', writer: { partRows }, progress: 'off' }),
  );
  const planned = await runAir(
    ['plan', '-c', config, '--input', 'in', '--output', output, '--world-size', String(WORLD)],
    dir,
  );
  expect(planned.code, planned.stderr).toBe(0);
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-ranks-run-'));
  await runAir(['--version']); // fails fast with a clear message when dist/ is not built
  await writePlantedInput(path.join(dir, 'in'));
  await planJob('air.json', 'job', 200);
  const alone = await runAir(['run', '-c', 'air.json', '--input', 'in', '--output', 'single'], dir);
  expect(alone.code, alone.stderr).toBe(0);
  single = await writtenRows([path.join(dir, 'single', '*.parquet')]);
}, 120_000);

afterAll(async () => {
  await cleanup?.();
});

describe('air run --plan --rank auto', () => {
  it('4 concurrent ranks write exactly the rows of a single run, deduped globally', async () => {
    const results = await Promise.all(
      Array.from(
        { length: WORLD },
        (_, rank) => startAir(['run', '--plan', 'job/plan.json', '--rank', 'auto'], dir, slurmEnv(rank)).done,
      ),
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    // Exactly one rank ran the global step.
    expect(results.filter((r) => r.stderr.includes('running the global dedupe step'))).toHaveLength(1);

    const ranks = await writtenRows([path.join(dir, 'job', 'ranks', '*', '*.parquet')]);
    expect(new Set(ranks).size).toBe(ranks.length);
    expect(ranks).toEqual(single);
    const ids = ranks.map((r) => r.split(' ')[1]);
    expect(new Set(ids).size).toBe(ids.length);

    const summary = JSON.parse(await readFile(path.join(dir, 'job', 'dedupe', 'summary.json'), 'utf8')) as {
      drops: Record<string, number>;
    };
    expect(summary.drops.exact_duplicate).toBeGreaterThanOrEqual(20);
    expect(summary.drops.near_duplicate).toBeGreaterThanOrEqual(25);
    expect((await readdir(path.join(dir, 'job', 'completions'))).sort()).toEqual([
      '00000',
      '00001',
      '00002',
      '00003',
    ]);
    await expect(readdir(path.join(dir, 'job', 'dedupe'))).resolves.not.toContain('lock');

    const again = await runAir(['run', '--plan', 'job/plan.json', '--rank', 'auto'], dir, slurmEnv(2));
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('rank 00002 is already complete');
    const status = await runAir(['status', 'job'], dir);
    expect(status.code, status.stdout).toBe(0);
  }, 300_000);

  it('air merge writes the job ledger, stats, report and card over the ranks; refuses an incomplete rank', async () => {
    const merged = await runAir(['merge', 'job'], dir);
    expect(merged.code, merged.stderr).toBe(0);
    const job = path.join(dir, 'job');
    const plan = JSON.parse(await readFile(path.join(job, 'plan.json'), 'utf8')) as {
      totals: { rows: number };
    };
    const ledger = JSON.parse(await readFile(path.join(job, 'ledger.json'), 'utf8')) as {
      totals: { read: number; rowsWritten: number; dropped: Record<string, number> };
      parts: Array<{ file: string; rows: number }>;
      ranks: unknown[];
    };
    const singleLedger = JSON.parse(await readFile(path.join(dir, 'single', 'ledger.json'), 'utf8')) as {
      totals: { read: number; dropped: Record<string, number> };
    };
    expect(ledger.totals.read).toBe(plan.totals.rows);
    expect(ledger.totals.rowsWritten).toBe(single.length);
    expect(ledger.totals.dropped).toEqual(singleLedger.totals.dropped);
    expect(ledger.ranks).toHaveLength(WORLD);
    expect(ledger.parts.reduce((n, p) => n + p.rows, 0)).toBe(single.length);
    // Each rank ran told that WORLD processes share the LLM servers (its share of a queueing one).
    const rankLedger = JSON.parse(
      await readFile(path.join(job, 'ranks', '00001', 'ledger.json'), 'utf8'),
    ) as {
      config: { llm: { processes: number } };
    };
    expect(rankLedger.config.llm.processes).toBe(WORLD);
    const stats = JSON.parse(await readFile(path.join(job, 'stats.json'), 'utf8')) as { rows: number };
    expect(stats.rows).toBe(single.length);
    await expect(readFile(path.join(job, 'report.html'), 'utf8')).resolves.toContain('<html');
    const card = await readFile(path.join(job, 'README.md'), 'utf8');
    for (const part of ledger.parts) {
      expect(part.file).toMatch(/^ranks\/0000[0-3]\/part-\d+\.parquet$/);
      expect(card).toContain(`- ${part.file}`);
    }
    // (a rank whose rows were all dropped has no part file: sample.parquet's ids repeat FineWeb's)

    await rm(path.join(job, 'completions', '00001'));
    const refused = await runAir(['merge', 'job'], dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('1 of 4 ranks are not complete (00001)');
    // Its output is complete: running it again only marks it.
    const rerun = await runAir(['run', '--plan', 'job/plan.json', '--ranks', '1'], dir);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stderr).toContain('already complete');
    expect((await runAir(['merge', 'job'], dir)).code).toBe(0);
  }, 120_000);

  it('exactly once across SIGKILL: the global step lock holder and a writing rank, killed and restarted', async () => {
    await planJob('air-kill.json', 'kill', 50);
    const args = ['run', '--plan', 'kill/plan.json', '--rank', 'auto'];
    const ranks = Array.from({ length: WORLD }, (_, rank) => {
      const started = startAir(args, dir, slurmEnv(rank));
      const state = { ...started, log: '', exited: false };
      started.child.stderr!.on('data', (d: Buffer) => (state.log += d.toString()));
      void started.done.then(() => (state.exited = true));
      return state;
    });
    const killed: number[] = [];
    const manifest = (rank: number): Promise<string> =>
      readFile(path.join(dir, 'kill', 'ranks', `0000${rank}`, 'manifest.jsonl'), 'utf8').catch(() => '');
    for (let waited = 0; killed.length < 2 && waited < 120_000; waited += 20) {
      if (ranks.every((r) => r.exited)) break;
      if (killed.length === 0) {
        // The rank that took the dedupe lock dies in (or right after) the global step: the lock is left behind.
        const holder = ranks.findIndex((r) => r.log.includes('running the global dedupe step'));
        if (holder >= 0) {
          ranks[holder]!.child.kill('SIGKILL');
          killed.push(holder);
        }
      } else {
        for (let r = 0; r < WORLD && killed.length < 2; r++) {
          if (killed.includes(r) || ranks[r]!.exited) continue;
          if ((await manifest(r)).includes('"part":"part-')) {
            ranks[r]!.child.kill('SIGKILL');
            killed.push(r);
          }
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const first = await Promise.all(ranks.map((r) => r.done));
    expect(killed).toHaveLength(2);
    for (const r of killed) expect(first[r]!.signal).toBe('SIGKILL');
    for (let r = 0; r < WORLD; r++) if (!killed.includes(r)) expect(first[r]!.code, first[r]!.stderr).toBe(0);

    // air status over the real ranks: the killed ones left their heartbeats, with pids now dead.
    const between = await runAir(['status', 'kill', '--json'], dir);
    expect(between.code).toBe(1);
    const states = (JSON.parse(between.stdout) as { ranks: { rank: number; state: string }[] }).ranks;
    for (const { rank, state } of states)
      expect(state, `rank ${rank}`).toBe(killed.includes(rank) ? 'interrupted' : 'complete');

    const again = await Promise.all(killed.map((rank) => startAir(args, dir, slurmEnv(rank)).done));
    // The dead holder's lock was taken over, unless it had written the summary before the kill landed.
    const logs = [...ranks.map((r) => r.log), ...again.map((r) => r.stderr)].join('\n');
    const holderDone = ranks[killed[0]!]!.log.includes('global dedupe: drop_lists');
    expect(holderDone || logs.includes('taking over the dedupe lock')).toBe(true);
    for (const r of again) expect(r.code, r.stderr).toBe(0);
    const rows = await writtenRows([path.join(dir, 'kill', 'ranks', '*', '*.parquet')]);
    expect(rows).toEqual(single);
    expect((await readdir(path.join(dir, 'kill', 'completions'))).length).toBe(WORLD);
    expect((await runAir(['status', 'kill'], dir)).code).toBe(0);
    const merged = await runAir(['merge', 'kill'], dir);
    expect(merged.code, merged.stderr).toBe(0);
  }, 300_000);

  it('takes over a dedupe lock left by a dead holder, or an old one from another host, exactly once', async () => {
    // A process that has exited: its pid is dead on this host.
    const gone = startAir(['--version'], dir);
    await gone.done;
    const cases = [
      { name: 'stale-dead', host: hostname(), pid: gone.child.pid!, ageS: 0, extra: [] as string[] },
      { name: 'stale-old', host: 'another-host', pid: 1, ageS: 600, extra: ['--dedupe-lock-stale', '60'] },
    ];
    for (const c of cases) {
      await planJob('air.json', c.name, 200);
      const lock = path.join(dir, c.name, 'dedupe', 'lock');
      await mkdir(path.dirname(lock), { recursive: true });
      const at = new Date(Date.now() - c.ageS * 1000);
      await writeFile(
        lock,
        JSON.stringify({
          pid: c.pid,
          host: c.host,
          startedAt: at.toISOString(),
          updatedAt: at.toISOString(),
        }),
      );
      await utimes(lock, at, at);
      const args = ['run', '--plan', `${c.name}/plan.json`, '--rank', 'auto', ...c.extra];
      const runs = await Promise.all(
        Array.from({ length: WORLD }, (_, rank) => startAir(args, dir, slurmEnv(rank)).done),
      );
      for (const r of runs) expect(r.code, r.stderr).toBe(0);
      const logs = runs.map((r) => r.stderr).join('\n');
      expect(logs, c.name).toContain('taking over the dedupe lock');
      expect(logs.match(/running the global dedupe step/g), c.name).toHaveLength(1);
      expect(await writtenRows([path.join(dir, c.name, 'ranks', '*', '*.parquet')])).toEqual(single);
    }
  }, 300_000);

  it('--ranks 0-3 runs every rank in one process, keying them all before the barrier', async () => {
    const planned = await runAir(
      ['plan', '-c', 'air.json', '--input', 'in', '--output', 'seq', '--world-size', String(WORLD)],
      dir,
    );
    expect(planned.code, planned.stderr).toBe(0);
    const run = await runAir(
      ['run', '--plan', 'seq/plan.json', '--ranks', '0-3', '--dedupe-wait', '60'],
      dir,
    );
    expect(run.code, run.stderr).toBe(0);
    expect(await writtenRows([path.join(dir, 'seq', 'ranks', '*', '*.parquet')])).toEqual(single);
    expect((await readdir(path.join(dir, 'seq', 'completions'))).length).toBe(WORLD);
  }, 120_000);

  it('refuses every flag that would set what the plan holds, naming each (exit 2)', async () => {
    const refused = await runAir(
      ['run', '--plan', 'job/plan.json', '--rank', '0', '--guidance-model', 'm', '--force', '--seed', '3'],
      dir,
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--force, --guidance-model, --seed with --plan');
    const display = await runAir(['run', '--plan', 'job/plan.json', '--rank', '0', '--progress', 'off'], dir);
    expect(display.code, display.stderr).toBe(0);
  });

  it('refuses an environment without a rank, and a plan whose shards changed (exit 2)', async () => {
    const env = { ...process.env, SLURM_ARRAY_TASK_ID: undefined, SLURM_PROCID: undefined, RANK: undefined };
    const none = await runAir(['run', '--plan', 'job/plan.json', '--rank', 'auto'], dir, env);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--rank auto: no rank in the environment');

    const other = path.join(dir, 'other');
    await mkdir(path.join(other, 'in'), { recursive: true });
    const shard = path.join(other, 'in', 'sample.parquet');
    await copyFile(SAMPLE, shard);
    const planned = await runAir(
      ['plan', '-c', 'air.json', '--input', 'other/in', '--output', 'other/job', '--world-size', '1'],
      dir,
    );
    expect(planned.code, planned.stderr).toBe(0);
    await utimes(shard, new Date(), new Date(Date.now() + 60_000));
    const stale = await runAir(['run', '--plan', 'other/job', '--ranks', '0'], dir);
    expect(stale.code).toBe(2);
    expect(stale.stderr).toContain('shards changed since the plan was made: sample.parquet (mtimeMs)');
  }, 120_000);
});
