import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimProcess, stopSimProcess, type SimProcess } from '../bench/sim-process.js';
import { LLM_CACHE_FILE } from '../job/llm.js';
import { runAir, startAir } from './helpers/cli.js';
import { simAirConfig } from './helpers/air-sim-config.js';
import { slurmEnv, writePlantedInput } from './helpers/dup-shards.js';
import { tempDir } from './helpers/duckdb.js';
import { instructionRows, mergedParts } from './helpers/output-rows.js';

/**
 * The contract of a distributed job with the AIR method: 4 ranks started as a Slurm array of 2 elements of 2
 * tasks, against one `air sim`, two of them SIGKILLed mid-run and started again, then merged, write the rows a
 * single `air run` of the same config writes over the same shards, each once.
 */
let dir: string;
let cleanup: () => Promise<void>;
let sim: SimProcess;

const WORLD = 4;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-ranks-air-'));
  await runAir(['--version']); // fails fast with a clear message when dist/ is not built
  await writePlantedInput(path.join(dir, 'in'));
  // 2,000 tokens/s per sequence: a reply takes ~0.1 s, so a rank is still writing when it is killed.
  sim = await startSimProcess(['--model', 'guide', 'student', '--decode-tps', '2000']);
  await writeFile(path.join(dir, 'air.json'), JSON.stringify(simAirConfig(sim.url)));
}, 120_000);

afterAll(async () => {
  if (sim !== undefined && sim.child.exitCode === null) await stopSimProcess(sim.child);
  await cleanup?.();
});

describe('a planned AIR job over 4 ranks', () => {
  it('killed and restarted ranks, merged, equal a single run: same (document, depth, instruction), each once', async () => {
    const planned = await runAir(
      ['plan', '-c', 'air.json', '--input', 'in', '--output', 'job', '--world-size', String(WORLD)],
      dir,
    );
    expect(planned.code, planned.stderr).toBe(0);
    const before = await runAir(['status', 'job', '--json'], dir);
    expect(before.code).toBe(1);
    const notStarted = JSON.parse(before.stdout) as { ranks: { state: string }[] };
    expect(notStarted.ranks.map((r) => r.state)).toEqual(Array(WORLD).fill('not-started'));

    const args = ['run', '--plan', 'job/plan.json', '--rank', 'auto'];
    const ranks = Array.from({ length: WORLD }, (_, rank) => {
      const started = startAir(args, dir, slurmEnv(rank));
      const state = { ...started, exited: false };
      void started.done.then(() => (state.exited = true));
      return state;
    });
    // The two ranks with the most rows (FineWeb's and Dolma's) die once they committed a part of LLM rows:
    // mid-run, with answers in their caches.
    const plan = JSON.parse(await readFile(path.join(dir, 'job', 'plan.json'), 'utf8')) as {
      ranks: Array<{ rank: number; rows: number }>;
    };
    const victims = [...plan.ranks]
      .sort((a, b) => b.rows - a.rows)
      .slice(0, 2)
      .map((r) => r.rank)
      .sort();
    const killed: number[] = [];
    const manifest = (rank: number): Promise<string> =>
      readFile(path.join(dir, 'job', 'ranks', `0000${rank}`, 'manifest.jsonl'), 'utf8').catch(() => '');
    for (let waited = 0; killed.length < victims.length && waited < 240_000; waited += 25) {
      for (const r of victims) {
        if (killed.includes(r) || ranks[r]!.exited) continue;
        if ((await manifest(r)).includes('"part":"part-')) {
          ranks[r]!.child.kill('SIGKILL');
          killed.push(r);
        }
      }
      if (ranks.every((r) => r.exited)) break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const first = await Promise.all(ranks.map((r) => r.done));
    expect(killed.sort()).toEqual(victims);
    for (const r of victims) expect(first[r]!.signal).toBe('SIGKILL');
    for (let r = 0; r < WORLD; r++)
      if (!victims.includes(r)) expect(first[r]!.code, first[r]!.stderr).toBe(0);
    const between = await runAir(['status', 'job'], dir);
    expect(between.code).toBe(1);
    const refused = await runAir(['merge', 'job'], dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `2 of 4 ranks are not complete (${victims.map((r) => `0000${r}`).join(', ')})`,
    );

    const again = await Promise.all(victims.map((rank) => startAir(args, dir, slurmEnv(rank)).done));
    for (const r of again) expect(r.code, r.stderr).toBe(0);
    expect((await readdir(path.join(dir, 'job', 'completions'))).length).toBe(WORLD);
    expect((await runAir(['status', 'job'], dir)).code).toBe(0);

    const merged = await runAir(['merge', 'job', '--cache'], dir);
    expect(merged.code, merged.stderr).toBe(0);
    expect(merged.stdout).toMatch(/instruction dedupe across ranks: 0 of [\d,]+ rows dropped/);
    const ledger = JSON.parse(await readFile(path.join(dir, 'job', 'ledger.json'), 'utf8')) as {
      totals: { read: number; rowsWritten: number };
      plannedRows: number;
      parts: Array<{ file: string; rows: number }>;
      instructionDedupe: { rows: number; dropped: number };
    };
    const rows = await instructionRows(await mergedParts(path.join(dir, 'job')));
    expect(new Set(rows).size).toBe(rows.length);
    expect(ledger.totals.read).toBe(ledger.plannedRows);
    expect(ledger.totals.rowsWritten).toBe(rows.length);

    // The same config over the same shards in one process, against the same server.
    const alone = await runAir(['run', '-c', 'air.json', '--input', 'in', '--output', 'single'], dir);
    expect(alone.code, alone.stderr).toBe(0);
    const single = await instructionRows([path.join(dir, 'single', '*.parquet')]);
    expect(single.length).toBeGreaterThan(15);
    expect(rows).toEqual(single);

    // --cache: the union of the ranks' caches answers every call of the job again, with the server gone.
    expect(merged.stdout).toMatch(/llm-cache\.sqlite: [\d,]+ answers \([\d,]+ added from 4 rank caches\)/);
    await mkdir(path.join(dir, 'replay'));
    await copyFile(path.join(dir, 'job', LLM_CACHE_FILE), path.join(dir, 'replay', LLM_CACHE_FILE));
    await stopSimProcess(sim.child);
    const replay = await runAir(['run', '-c', 'air.json', '--input', 'in', '--output', 'replay'], dir);
    expect(replay.code, replay.stderr).toBe(0);
    const replayLedger = JSON.parse(await readFile(path.join(dir, 'replay', 'ledger.json'), 'utf8')) as {
      llm: { cache: { hits: number; misses: number } };
    };
    expect(replayLedger.llm.cache.misses).toBe(0);
    expect(replayLedger.llm.cache.hits).toBeGreaterThan(rows.length);
    expect(await instructionRows([path.join(dir, 'replay', '*.parquet')])).toEqual(single);
  }, 600_000);
});
