import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimProcess, stopSimProcess, type SimProcess } from '../bench/sim-process.js';
import { parse } from 'yaml';
import { ROOT, runAir, startAir } from './helpers/cli.js';
import { simAirConfig } from './helpers/air-sim-config.js';
import { rewriteFinewebInRowGroups, writePlantedInput } from './helpers/dup-shards.js';
import { FINEWEB, tempDir } from './helpers/duckdb.js';
import { startRedis, type RedisProcess } from './helpers/redis.js';
import { markUnitComplete, readUnitCompletion } from '../job/queue/units.js';
import { instructionRows, mergedParts, writtenRows } from './helpers/output-rows.js';

/**
 * Queue mode: `air enqueue` puts each shard of a plan in BullMQ (Redis), `air worker` processes run them into
 * attempt folders, and `air status` / `air merge` take exactly one complete attempt per unit.
 */
let dir: string;
let cleanup: () => Promise<void>;
let redis: RedisProcess;
let single: string[];

/**
 * `air merge <job>`: its rows, each once, are `expected`, and its ledger has read every planned row.
 * Returns the merged ledger.
 */
async function mergeAndCompare(
  job: string,
  expected: readonly string[],
): Promise<{ units: Array<{ unit: number; attempt: string }> }> {
  const merged = await runAir(['merge', job], dir);
  expect(merged.code, merged.stderr).toBe(0);
  const rows = await writtenRows(await mergedParts(path.join(dir, job)));
  expect(new Set(rows).size).toBe(rows.length);
  expect(rows).toEqual(expected);
  const ledger = JSON.parse(await readFile(path.join(dir, job, 'ledger.json'), 'utf8')) as {
    totals: { read: number };
    plannedRows: number;
    units: Array<{ unit: number; attempt: string }>;
  };
  expect(ledger.totals.read).toBe(ledger.plannedRows);
  return ledger;
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
    const inBucket = await runAir(['enqueue', '--queue', redis.url, '--plan', 's3://b/job/plan.json'], dir);
    expect(inBucket.code).toBe(2);
    expect(inBucket.stderr).toContain("queue mode needs the plan's root on a shared file system");

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
    const ledger = await mergeAndCompare('job', single);
    expect(ledger.units.map((u) => u.unit)).toEqual([0, 1, 2, 3, 4]);
    expect((await readdir(path.join(dir, 'job', 'units'))).length).toBe(5);

    // Everything is complete: a third enqueue adds nothing, a worker finds nothing to do.
    const third = await runAir(['enqueue', '--queue', redis.url, '--plan', 'job'], dir);
    expect(third.stdout).toMatch(/0 added, 0 failed ones handed back, 5 already complete/);
  }, 300_000);
});

describe('a big shard cut into slices of row groups', () => {
  it('runs each slice as a unit; status counts slices; the merged rows are a single run’s', async () => {
    // The planted input with FineWeb rewritten in row groups of 250 rows (~0.45 MB each): with --slice-mb 1
    // it is cut into slices of two row groups, while the smaller shards stay whole.
    const input = path.join(dir, 'in-sliced');
    await writePlantedInput(input);
    const rowCount = await rewriteFinewebInRowGroups(input, 250);
    const alone = await runAir(['run', '-c', 'air.json', '--input', input, '--output', 'single-sliced'], dir);
    expect(alone.code, alone.stderr).toBe(0);
    const expected = await writtenRows([path.join(dir, 'single-sliced', '*.parquet')]);

    const planned = await runAir(
      ['plan', '-c', 'air.json', '--input', input, '--output', 'sliced', '--world-size', '1'],
      dir,
    );
    expect(planned.code, planned.stderr).toBe(0);
    const enqueue = ['enqueue', '--queue', redis.url, '--plan', 'sliced', '--slice-mb', '1'];
    const enqueued = await runAir(enqueue, dir);
    expect(enqueued.code, enqueued.stderr).toBe(0);
    const queue = JSON.parse(await readFile(path.join(dir, 'sliced', 'queue.json'), 'utf8')) as {
      units: Array<{ unit: number; label: string; start: number; end: number; slice: boolean }>;
    };
    const slices = queue.units.filter((u) => u.slice);
    expect(slices.length).toBeGreaterThanOrEqual(2);
    expect(slices.every((u) => u.label === path.basename(FINEWEB))).toBe(true);
    // The slices cover the shard once, in order, on row-group boundaries, each under 1 MB of row groups.
    expect(slices[0]!.start).toBe(0);
    expect(slices.at(-1)!.end).toBe(rowCount);
    slices.slice(1).forEach((u, i) => expect(u.start).toBe(slices[i]!.end));
    for (const u of slices) expect(u.start % 250, `${u.start}`).toBe(0);
    expect(queue.units.length).toBe(5 + slices.length - 1);
    expect(enqueued.stdout).toContain(`${queue.units.length} units (${slices.length} of them slices`);
    const otherSize = await runAir([...enqueue.slice(0, -1), '2'], dir);
    expect(otherSize.code).toBe(2);
    expect(otherSize.stderr).toContain('was enqueued with slices of at most 1 MB');

    const args = ['worker', '--queue', redis.url, '--plan', 'sliced', '--until-empty'];
    const workers = await Promise.all([1, 2].map(() => startAir(args, dir).done));
    for (const w of workers) expect(w.code, w.stderr).toBe(0);
    expect(workers.map((w) => w.stderr).join('')).toMatch(
      /unit fineweb-sample\.snappy\.parquet rows \d+-\d+: attempt-1 complete/,
    );
    const status = await runAir(['status', 'sliced', '--json'], dir);
    expect(status.code, status.stdout).toBe(0);
    const units = (JSON.parse(status.stdout) as { ranks: Array<{ plannedRows: number; state: string }> })
      .ranks;
    expect(units.map((u) => u.state)).toEqual(Array(queue.units.length).fill('complete'));
    expect(units.map((u) => u.plannedRows)).toEqual(queue.units.map((u) => u.end - u.start));
    await mergeAndCompare('sliced', expected);
  }, 300_000);
});

/** Who made an attempt (the .owner file beside its folder). */
interface Attempt {
  readonly unit: string;
  readonly name: string;
  readonly pid: number;
  readonly committedPart: boolean;
}

async function attempts(job: string): Promise<Attempt[]> {
  const out: Attempt[] = [];
  for (const unit of await readdir(path.join(job, 'units')).catch(() => [] as string[])) {
    const files = await readdir(path.join(job, 'units', unit));
    for (const name of files.filter((f) => /^attempt-\d+$/.test(f))) {
      const owner = await readFile(path.join(job, 'units', unit, `${name}.owner`), 'utf8').catch(() => '');
      if (owner === '') continue;
      const manifest = await readFile(path.join(job, 'units', unit, name, 'manifest.jsonl'), 'utf8').catch(
        () => '',
      );
      const pid = (JSON.parse(owner) as { pid: number }).pid;
      out.push({ unit, name, pid, committedPart: manifest.includes('"part":"part-') });
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('workers that die, freeze, and a Redis that restarts', () => {
  let sim: SimProcess;
  afterAll(async () => {
    if (sim !== undefined && sim.child.exitCode === null) await stopSimProcess(sim.child);
  });

  it('a SIGKILLed worker, a worker frozen past its lock, Redis restarted: one counted attempt per unit, rows of a single run', async () => {
    // 1,000 tokens/s per sequence: a reply takes ~0.2 s, so the large units run for tens of seconds.
    sim = await startSimProcess(['--model', 'guide', 'student', '--decode-tps', '1000']);
    await writeFile(path.join(dir, 'air-llm.json'), JSON.stringify(simAirConfig(sim.url)));
    const planned = await runAir(
      ['plan', '-c', 'air-llm.json', '--input', 'in', '--output', 'llm-job', '--world-size', '1'],
      dir,
    );
    expect(planned.code, planned.stderr).toBe(0);
    const enqueued = await runAir(['enqueue', '--queue', redis.url, '--plan', 'llm-job'], dir);
    expect(enqueued.code, enqueued.stderr).toBe(0);

    const job = path.join(dir, 'llm-job');
    const args = ['worker', '--queue', redis.url, '--plan', 'llm-job', '--until-empty'];
    const start = () => {
      const started = startAir(args, dir);
      const state = { ...started, exited: false };
      void started.done.then(() => (state.exited = true));
      return state;
    };
    const workers = [start(), start(), start()];
    const byPid = (pid: number) => workers.find((w) => w.child.pid === pid);
    const running = async (exclude: readonly number[]) =>
      (await attempts(job)).filter((a) => {
        const w = byPid(a.pid);
        return a.committedPart && w !== undefined && !w.exited && !exclude.includes(a.pid);
      });

    // 1. A worker dies mid-unit (it committed part of the unit); a new one joins, as on a preemptible fleet.
    let killed: Attempt | undefined;
    while (killed === undefined && !workers.every((w) => w.exited)) {
      killed = (await running([])).find(() => true);
      if (killed === undefined) await sleep(25);
    }
    expect(killed).toBeDefined();
    byPid(killed!.pid)!.child.kill('SIGKILL');
    workers.push(start());

    // 2. Another worker's event loop stops past its lock (SIGSTOP, 9 s against a 5 s lock): its unit is taken
    //    over and run again while the frozen attempt later goes on and finishes too.
    let frozen: Attempt | undefined;
    while (frozen === undefined && !workers.every((w) => w.exited)) {
      frozen = (await running([killed!.pid])).find((a) => a.unit !== killed!.unit);
      if (frozen === undefined) await sleep(25);
    }
    expect(frozen).toBeDefined();
    const frozenWorker = byPid(frozen!.pid)!;
    frozenWorker.child.kill('SIGSTOP');
    await sleep(9000);
    // 3. Redis restarts (AOF on) while units run and the frozen worker is still catching up.
    frozenWorker.child.kill('SIGCONT');
    await redis.restart();

    const results = await Promise.all(workers.map((w) => w.done));
    const logs = results.map((r) => r.stderr).join('\n');
    for (const [i, r] of results.entries()) {
      if (workers[i]!.child.pid === killed!.pid) expect(r.signal).toBe('SIGKILL');
      else expect(r.code, r.stderr).toBe(0);
    }
    // The frozen unit ran twice: the attempt that finished second was discarded, not counted.
    expect(logs).toMatch(/already counts: attempt-\d+ is discarded/);
    const all = await attempts(job);
    expect(all.filter((a) => a.unit === frozen!.unit).length).toBeGreaterThanOrEqual(2);
    // The killed unit was handed over and continued from the dead worker's commits.
    const killedUnit = all.filter((a) => a.unit === killed!.unit);
    expect(killedUnit.length).toBeGreaterThanOrEqual(2);
    const marker = JSON.parse(await readFile(path.join(job, 'units', killed!.unit, 'complete'), 'utf8')) as {
      attempt: string;
    };
    expect(marker.attempt).not.toBe(killed!.name);
    const counted = await readFile(
      path.join(job, 'units', killed!.unit, marker.attempt, 'manifest.jsonl'),
      'utf8',
    );
    expect(counted).toContain('"kind":"resume"');

    const status = await runAir(['status', 'llm-job'], dir);
    expect(status.code, status.stdout).toBe(0);
    const merged = await runAir(['merge', 'llm-job'], dir);
    expect(merged.code, merged.stderr).toBe(0);
    const ledger = JSON.parse(await readFile(path.join(job, 'ledger.json'), 'utf8')) as {
      totals: { read: number; rowsWritten: number };
      plannedRows: number;
      parts: Array<{ file: string }>;
    };
    expect(ledger.totals.read).toBe(ledger.plannedRows);
    const rows = await instructionRows(await mergedParts(job));
    expect(new Set(rows).size).toBe(rows.length);
    expect(ledger.totals.rowsWritten).toBe(rows.length);

    const alone = await runAir(['run', '-c', 'air-llm.json', '--input', 'in', '--output', 'single-llm'], dir);
    expect(alone.code, alone.stderr).toBe(0);
    const one = await instructionRows([path.join(dir, 'single-llm', '*.parquet')]);
    expect(one.length).toBeGreaterThan(15);
    expect(rows).toEqual(one);
  }, 600_000);
});

describe('air worker on SIGTERM', () => {
  it('commits, hands its unit back (exit 143), and the next worker continues it from the commits', async () => {
    const sim = await startSimProcess(['--model', 'guide', 'student', '--decode-tps', '1000']);
    try {
      await writeFile(path.join(dir, 'air-term.json'), JSON.stringify(simAirConfig(sim.url)));
      const input = path.join('in', 'fineweb-sample.snappy.parquet');
      const planned = await runAir(
        ['plan', '-c', 'air-term.json', '--input', input, '--output', 'term-job', '--world-size', '1'],
        dir,
      );
      expect(planned.code, planned.stderr).toBe(0);
      expect((await runAir(['enqueue', '--queue', redis.url, '--plan', 'term-job'], dir)).code).toBe(0);
      const args = ['worker', '--queue', redis.url, '--plan', 'term-job', '--until-empty'];
      const first = startAir(args, dir);
      const manifest = path.join(dir, 'term-job', 'units', '00000', 'attempt-1', 'manifest.jsonl');
      while (!(await readFile(manifest, 'utf8').catch(() => '')).includes('"part":"part-')) await sleep(25);
      first.child.kill('SIGTERM');
      const stopped = await first.done;
      expect(stopped.code, stopped.stderr).toBe(143);
      expect(stopped.stderr).toContain('attempt-1 stopped; unit handed back to the queue');
      const between = JSON.parse((await runAir(['status', 'term-job', '--json'], dir)).stdout) as {
        ranks: Array<{ state: string; note: string }>;
      };
      expect(between.ranks[0]!.state).toBe('interrupted');

      const second = await runAir(args, dir);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).toContain('attempt-2 (continued from attempt-1) complete');
      const marker = JSON.parse(
        await readFile(path.join(dir, 'term-job', 'units', '00000', 'complete'), 'utf8'),
      ) as { attempt: string };
      expect(marker.attempt).toBe('attempt-2');
      expect((await runAir(['merge', 'term-job'], dir)).code).toBe(0);
      const alone = await runAir(
        ['run', '-c', 'air-term.json', '--input', input, '--output', 'single-term'],
        dir,
      );
      expect(alone.code, alone.stderr).toBe(0);
      const rows = await instructionRows(await mergedParts(path.join(dir, 'term-job')));
      expect(rows).toEqual(await instructionRows([path.join(dir, 'single-term', '*.parquet')]));
    } finally {
      await stopSimProcess(sim.child);
    }
  }, 300_000);
});

describe('the README Deployment of workers', () => {
  it('is a Deployment running air worker with flags air accepts, and a grace period longer than air’s', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const manifest = parse(blocks.find((b) => /^kind: Deployment$/m.test(b))!) as {
      kind: string;
      spec: {
        template: {
          spec: { terminationGracePeriodSeconds: number; containers: Array<{ command: string[] }> };
        };
      };
    };
    expect(manifest.kind).toBe('Deployment');
    const pod = manifest.spec.template.spec;
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(30);
    const command = pod.containers[0]!.command;
    expect(command[0]).toBe('./node_modules/.bin/air');
    expect(command[1]).toBe('worker');
    const help = await runAir(['worker', '--help']);
    for (const flag of command.filter((c) => c.startsWith('--'))) expect(help.stdout).toContain(flag);
    expect(command).toContain('--queue');
    expect(command).toContain('--plan');
  });
});

describe('the completion marker of a unit', () => {
  it('is created once: of attempts completing at the same moment, exactly one counts, and it stays', async () => {
    const root = path.join(dir, 'marker');
    await mkdir(path.join(root, 'units', '00007'), { recursive: true });
    const done = (attempt: string) => ({
      unit: 7,
      label: 'x.parquet',
      attempt,
      fingerprint: 'f',
      finishedAt: new Date().toISOString(),
      rowsWritten: 1,
    });
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, i) => markUnitComplete(root, done(`attempt-${i + 1}`))),
    );
    const winners = outcomes.filter((o) => o.counted);
    expect(winners).toHaveLength(1);
    for (const o of outcomes) expect(o.completion.attempt).toBe(winners[0]!.completion.attempt);
    const late = await markUnitComplete(root, done('attempt-9'));
    expect(late.counted).toBe(false);
    expect((await readUnitCompletion(root, 7))!.attempt).toBe(winners[0]!.completion.attempt);
    // No temporary left behind by the losers.
    expect(await readdir(path.join(root, 'units', '00007'))).toEqual(['complete']);
  });
});
