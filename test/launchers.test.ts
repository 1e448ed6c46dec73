import { spawn, spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { EXIT } from '../cli/io.js';
import { runConfigSchema } from '../job/config.js';
import { resolveRank } from '../job/plan/rank-env.js';
import { AIR, ROOT, runAir } from './helpers/cli.js';
import { SAMPLE, tempDir } from './helpers/duckdb.js';

/**
 * The Slurm batch script and the Kubernetes Indexed Job of the README, tested as far as a machine without Slurm
 * or Kubernetes allows: the environment each launcher gives every task, the ranks air resolves from it, and the
 * script's own logic run for real with `srun` and `scontrol` stand-ins around the real air.
 */
let dir: string;
let cleanup: () => Promise<void>;
let readme: string;

const blocks = (lang: string): string[] =>
  [...readme.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
const sbatchScript = (): string => blocks('bash').find((b) => b.includes('#SBATCH'))!;
const sbatchOption = (script: string, name: string): string | undefined =>
  new RegExp(`^#SBATCH --${name}(?:=(\\S+))?`, 'm').exec(script)?.[1] ?? undefined;
const hasSbatchFlag = (script: string, name: string): boolean =>
  new RegExp(`^#SBATCH --${name}\\b`, 'm').test(script);

/** What Slurm sets in task `procId` of array element `id` (array `min`-`max`, `ntasks` tasks per element). */
function slurmTaskEnv(id: number, procId: number, array: { min: number; max: number }, ntasks: number) {
  return {
    SLURM_JOB_ID: String(1000 + id),
    SLURM_ARRAY_JOB_ID: '999',
    SLURM_ARRAY_TASK_ID: String(id),
    SLURM_ARRAY_TASK_MIN: String(array.min),
    SLURM_ARRAY_TASK_MAX: String(array.max),
    SLURM_ARRAY_TASK_COUNT: String(array.max - array.min + 1),
    SLURM_ARRAY_TASK_STEP: '1',
    SLURM_NTASKS: String(ntasks),
    SLURM_PROCID: String(procId),
  };
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-launchers-'));
  readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
}, 30_000);

afterAll(async () => {
  await cleanup?.();
});

describe('the README Slurm batch script', () => {
  it('is valid bash, requeueable, signals air before the time limit and runs air under srun', () => {
    const script = sbatchScript();
    expect(script.startsWith('#!/bin/bash\n')).toBe(true);
    const syntax = spawnSync('bash', ['-n'], { input: script });
    expect(syntax.status, syntax.stderr.toString()).toBe(0);
    expect(hasSbatchFlag(script, 'requeue')).toBe(true);
    // TERM (air's clean stop) to the job steps, early enough for air's grace period and checkpoint.
    const signal = /^(TERM)@(\d+)$/.exec(sbatchOption(script, 'signal') ?? '');
    expect(signal).not.toBeNull();
    const grace = runConfigSchema.parse({ input: 'x', output: 'y' }).engine.graceSeconds;
    expect(Number(signal![2])).toBeGreaterThan(grace * 2);
    expect(script).toMatch(/^srun .*"\$AIR" run --plan \S+ --rank auto$/m);
    expect(script).toContain(`-eq ${EXIT.sigterm}`);
  });

  it('gives every task of every array element its own rank: 0 to world size - 1, each once', () => {
    const script = sbatchScript();
    const [min, max] = sbatchOption(script, 'array')!.split('-').map(Number) as [number, number];
    const ntasks = Number(sbatchOption(script, 'ntasks'));
    const world = Number(/--world-size (\d+)/.exec(script)![1]);
    expect(world).toBe((max - min + 1) * ntasks);
    const ranks: number[] = [];
    for (let id = min; id <= max; id++) {
      for (let p = 0; p < ntasks; p++) {
        const resolved = resolveRank('auto', slurmTaskEnv(id, p, { min, max }, ntasks), world);
        expect(resolved.worldSize).toBe(world);
        ranks.push(resolved.rank);
      }
    }
    expect(ranks.sort((a, b) => a - b)).toEqual(Array.from({ length: world }, (_, i) => i));
  });

  it('run with srun and scontrol stand-ins around the real air: exits 0 on a complete rank, requeues after SIGTERM', async () => {
    const script = sbatchScript();
    const [min, max] = sbatchOption(script, 'array')!.split('-').map(Number) as [number, number];
    const ntasks = Number(sbatchOption(script, 'ntasks'));
    const world = Number(/--world-size (\d+)/.exec(script)![1]);
    // Four shards go to ranks 0-3 (balanced by bytes); the other ranks have none. Dedupe off: no barrier.
    const input = path.join(dir, 'in');
    await mkdir(input, { recursive: true });
    for (let i = 0; i < 4; i++) await copyFile(SAMPLE, path.join(input, `s${i}.parquet`));
    await writeFile(
      path.join(dir, 'air.json'),
      JSON.stringify({
        method: 'air',
        // 5 tokens/s: each call takes tens of seconds, so the ranks are mid-run when the signal comes.
        llm: { mode: 'sim', simulator: { decodeTokensPerSPerSequence: 5 } },
        dedupe: { ids: false, exact: false, near: { enabled: false } },
        engine: { graceSeconds: 2 },
        progress: 'off',
      }),
    );
    const job = path.join(dir, 'job');
    const planned = await runAir(
      ['plan', '-c', 'air.json', '--input', 'in', '--output', 'job', '--world-size', String(world)],
      dir,
    );
    expect(planned.code, planned.stderr).toBe(0);

    // srun: starts the command once per task with its SLURM_PROCID, records the pids, exits with the worst code.
    const bin = path.join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    await writeFile(
      path.join(bin, 'srun'),
      `#!/bin/bash
while [[ "$1" == -* ]]; do shift; done
pids=()
for ((p = 0; p < SLURM_NTASKS; p++)); do
  SLURM_PROCID=$p "$@" &
  pids+=($!)
  echo $! >> "$SRUN_PIDS"
done
worst=0
for pid in "\${pids[@]}"; do wait "$pid"; c=$?; (( c > worst )) && worst=$c; done
exit $worst
`,
    );
    await writeFile(path.join(bin, 'scontrol'), '#!/bin/bash\necho "$@" >> "$SCONTROL_LOG"\n');
    await chmod(path.join(bin, 'srun'), 0o755);
    await chmod(path.join(bin, 'scontrol'), 0o755);
    const runElement = (id: number, name: string) => {
      const env = {
        ...process.env,
        ...slurmTaskEnv(id, 0, { min, max }, ntasks),
        PATH: `${bin}:${process.env.PATH}`,
        AIR,
        SRUN_PIDS: path.join(dir, `${name}.pids`),
        SCONTROL_LOG: path.join(dir, `${name}.scontrol`),
      };
      const child = spawn('bash', ['-c', script.replaceAll('/shared/job', job)], { cwd: dir, env });
      let log = '';
      child.stdout.on('data', (d: Buffer) => (log += d.toString()));
      child.stderr.on('data', (d: Buffer) => (log += d.toString()));
      const done = new Promise<{ code: number | null; log: string }>((resolve) =>
        child.on('close', (code) => resolve({ code, log })),
      );
      return { env, done };
    };
    const read = (file: string): Promise<string> => readFile(file, 'utf8').catch(() => '');

    // Element 10 holds ranks 20 and 21: no shards, so both complete at once and nothing is requeued.
    const empty = runElement(10, 'empty');
    const emptyDone = await empty.done;
    expect(emptyDone.code, emptyDone.log).toBe(0);
    expect(await read(empty.env.SCONTROL_LOG)).toBe('');

    // Element 1 holds ranks 2 and 3, mid-run when Slurm's --signal sends SIGTERM to the tasks.
    const busy = runElement(1, 'busy');
    const heartbeats = ['00002', '00003'].map((r) => path.join(job, 'heartbeats', r));
    for (let waited = 0; waited < 120_000; waited += 100) {
      if ((await Promise.all(heartbeats.map(read))).every((h) => h !== '')) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const pids = (await read(busy.env.SRUN_PIDS)).trim().split('\n').map(Number);
    expect(pids).toHaveLength(ntasks);
    for (const pid of pids) process.kill(pid, 'SIGTERM');
    const busyDone = await busy.done;
    expect(busyDone.code, busyDone.log).toBe(EXIT.sigterm);
    expect((await read(busy.env.SCONTROL_LOG)).trim()).toBe(`requeue ${busy.env.SLURM_JOB_ID}`);
    const status = JSON.parse((await runAir(['status', 'job', '--json'], dir)).stdout) as {
      ranks: Array<{ rank: number; state: string }>;
    };
    expect(status.ranks.filter((r) => r.rank === 2 || r.rank === 3).map((r) => r.state)).toEqual([
      'interrupted',
      'interrupted',
    ]);
  }, 300_000);
});

describe('the README Kubernetes Indexed Job', () => {
  interface Manifest {
    kind: string;
    spec: {
      completionMode: string;
      completions: number;
      backoffLimitPerIndex?: number;
      podFailurePolicy: {
        rules: Array<{
          action: string;
          onExitCodes?: { containerName: string; operator: string; values: number[] };
        }>;
      };
      template: {
        spec: {
          restartPolicy: string;
          terminationGracePeriodSeconds: number;
          containers: Array<{ name: string; command: string[]; env: Array<{ name: string; value: string }> }>;
        };
      };
    };
  }
  const manifest = (): Manifest =>
    parse(blocks('yaml').find((b) => b.startsWith('apiVersion:'))!) as Manifest;

  it('is an Indexed Job that retries per index, fails an index on a usage error, and outwaits air', () => {
    const { kind, spec } = manifest();
    expect(kind).toBe('Job');
    expect(spec.completionMode).toBe('Indexed');
    expect(spec.backoffLimitPerIndex).toBeGreaterThan(0);
    const pod = spec.template.spec;
    expect(pod.restartPolicy).toBe('Never'); // a pod failure policy requires it
    const air = pod.containers.find((c) => c.name === 'air')!;
    const usage = spec.podFailurePolicy.rules.find((r) => r.action === 'FailIndex')!;
    expect(usage.onExitCodes).toEqual({ containerName: air.name, operator: 'In', values: [EXIT.usage] });
    const grace = runConfigSchema.parse({ input: 'x', output: 'y' }).engine.graceSeconds;
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(grace);
    // air is the container's first process, so SIGTERM reaches it.
    expect(air.command[0]).toMatch(/\/air$/);
    expect(air.command.slice(1)).toEqual(expect.arrayContaining(['run', '--plan', '--rank', 'auto']));
  });

  it('gives every pod its own rank from JOB_COMPLETION_INDEX, with the world size it sets', () => {
    const { spec } = manifest();
    const air = spec.template.spec.containers.find((c) => c.name === 'air')!;
    const env = Object.fromEntries(air.env.map((e) => [e.name, e.value]));
    expect(Number(env.AIR_WORLD_SIZE)).toBe(spec.completions);
    for (let index = 0; index < spec.completions; index++) {
      const resolved = resolveRank('auto', { ...env, JOB_COMPLETION_INDEX: String(index) }, spec.completions);
      expect(resolved).toMatchObject({ rank: index, worldSize: spec.completions });
    }
    // Without the world size the pods cannot know it: refused, not guessed.
    expect(() => resolveRank('auto', { JOB_COMPLETION_INDEX: '3' }, spec.completions + 1)).toThrow(
      /AIR_WORLD_SIZE/,
    );
  });
});
