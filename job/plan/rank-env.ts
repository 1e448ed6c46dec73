import { UsageError } from '../../pipeline/errors.js';

/** The process environment, or a test's stand-in. */
export type Env = Readonly<Record<string, string | undefined>>;

export interface ResolvedRank {
  readonly rank: number;
  readonly worldSize: number;
  /** Where the rank came from: `--rank`, `AIR_RANK`, `slurm-array`, `srun`, `kubernetes`, `torchrun`, or several joined by `+`. */
  readonly source: string;
  /** The variables it was computed from, as NAME=value (for logs and messages). */
  readonly variables: readonly string[];
}

/** One launcher's reading of the environment. */
interface Reading {
  readonly source: string;
  readonly rank: number;
  /** Undefined when the launcher does not say (Kubernetes without AIR_WORLD_SIZE is refused before this). */
  readonly worldSize: number | undefined;
  readonly variables: readonly string[];
}

/** Every variable a launcher sets that we read, for "what was seen" in messages. */
const KNOWN = [
  'AIR_RANK',
  'AIR_WORLD_SIZE',
  'SLURM_ARRAY_TASK_ID',
  'SLURM_ARRAY_TASK_MIN',
  'SLURM_ARRAY_TASK_MAX',
  'SLURM_ARRAY_TASK_STEP',
  'SLURM_ARRAY_TASK_COUNT',
  'SLURM_PROCID',
  'SLURM_NTASKS',
  'JOB_COMPLETION_INDEX',
  'RANK',
  'WORLD_SIZE',
] as const;

/**
 * The rank this process runs and the world size, from `--rank <n>` or, with `--rank auto`, the environment:
 *
 * 1. `--rank <n>` wins; then `AIR_RANK` (world: `AIR_WORLD_SIZE`, else the plan's): explicit settings override
 *    whatever launcher variables are also present (e.g. torchrun started inside a Slurm step).
 * 2. Otherwise every launcher whose variables are present is read:
 *    - Slurm job array (`SLURM_ARRAY_TASK_ID`): rank = element x SLURM_NTASKS + SLURM_PROCID, where element =
 *      (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP; world = SLURM_ARRAY_TASK_COUNT x
 *      SLURM_NTASKS (SLURM_NTASKS unset: 1 task per element). SLURM_PROCID keeps the tasks of a multi-node
 *      element apart; the element index alone would run one rank on every node.
 *    - `srun` without an array (`SLURM_PROCID`): rank = SLURM_PROCID, world = SLURM_NTASKS.
 *    - Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`): rank = the index; it carries no world size, so
 *      `AIR_WORLD_SIZE` (the Job's spec.completions) is required.
 *    - torchrun-style (`RANK`): rank = RANK, world = WORLD_SIZE.
 *    `AIR_WORLD_SIZE`, when set, must agree with every launcher's world size.
 * 3. Ambiguous, refused: two launchers that give different ranks or world sizes (say SLURM_PROCID=0 and RANK=1
 *    under torchrun inside srun); set AIR_RANK to choose. Launchers that agree are fine. Also refused: no
 *    launcher variable at all, a value that is not a whole number, an array index outside the array.
 * 4. The world size must equal the plan's, and the rank must be below it.
 *
 * Every refusal is a UsageError (exit 2), one line naming the variables seen.
 */
export function resolveRank(spec: 'auto' | number, env: Env, planWorldSize: number): ResolvedRank {
  if (spec !== 'auto') {
    checkInPlan(spec, planWorldSize, `--rank ${spec}`);
    return { rank: spec, worldSize: planWorldSize, source: '--rank', variables: [] };
  }
  const readings = readLaunchers(env);
  if (readings.length === 0) {
    throw new UsageError(
      `--rank auto: no rank in the environment (${seen(env)}); set AIR_RANK, or start air under ` +
        'srun, a Slurm job array, a Kubernetes Indexed Job or torchrun',
    );
  }
  const first = readings[0]!;
  const disagree = readings.some((r) => r.rank !== first.rank || r.worldSize !== first.worldSize);
  if (disagree) {
    const what = readings.map((r) => `${r.variables.join(', ')} give ${describe(r)}`).join('; ');
    throw new UsageError(`--rank auto: the environment is ambiguous: ${what}; set AIR_RANK to choose`);
  }
  const worldSize = first.worldSize ?? planWorldSize;
  const variables = [...new Set(readings.flatMap((r) => r.variables))];
  if (worldSize !== planWorldSize) {
    throw new UsageError(
      `--rank auto: the environment's world size ${worldSize} (${variables.join(', ')}) differs from the ` +
        `plan's ${planWorldSize}; start ${planWorldSize} ranks or plan again with --world-size ${worldSize}`,
    );
  }
  checkInPlan(first.rank, planWorldSize, variables.join(', '));
  return { rank: first.rank, worldSize, source: readings.map((r) => r.source).join('+'), variables };
}

function describe(r: Reading): string {
  return `rank ${r.rank}${r.worldSize === undefined ? '' : ` of ${r.worldSize}`}`;
}

function checkInPlan(rank: number, planWorldSize: number, from: string): void {
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= planWorldSize) {
    throw new UsageError(`${from}: rank ${rank} is not in the plan (ranks 0-${planWorldSize - 1})`);
  }
}

/** The explicit setting alone, or every launcher present. */
function readLaunchers(env: Env): Reading[] {
  const airWorld = optionalInt(env, 'AIR_WORLD_SIZE');
  const airWorldVar = airWorld === undefined ? [] : [`AIR_WORLD_SIZE=${airWorld}`];
  if (env.AIR_RANK !== undefined) {
    const rank = requiredInt(env, 'AIR_RANK');
    return [
      { source: 'AIR_RANK', rank, worldSize: airWorld, variables: [`AIR_RANK=${rank}`, ...airWorldVar] },
    ];
  }
  const readings = [slurm(env), kubernetes(env, airWorld), torchrun(env, airWorld)].filter(
    (r): r is Reading => r !== undefined,
  );
  if (airWorld === undefined) return readings;
  // AIR_WORLD_SIZE states the world size for every launcher: one that says otherwise is a mistake somewhere.
  for (const r of readings) {
    if (r.worldSize !== undefined && r.worldSize !== airWorld) {
      throw new UsageError(
        `--rank auto: the environment is ambiguous: ${r.variables.join(', ')} give a world size of ` +
          `${r.worldSize}, AIR_WORLD_SIZE=${airWorld}; unset one`,
      );
    }
  }
  return readings.map((r) =>
    r.worldSize === undefined || r.variables.includes(airWorldVar[0]!)
      ? r
      : { ...r, variables: [...r.variables, ...airWorldVar] },
  );
}

function slurm(env: Env): Reading | undefined {
  if (env.SLURM_ARRAY_TASK_ID !== undefined) {
    const id = requiredInt(env, 'SLURM_ARRAY_TASK_ID');
    const min = requiredInt(env, 'SLURM_ARRAY_TASK_MIN');
    const count = requiredInt(env, 'SLURM_ARRAY_TASK_COUNT');
    const step = optionalInt(env, 'SLURM_ARRAY_TASK_STEP') ?? 1;
    const tasks = optionalInt(env, 'SLURM_NTASKS') ?? 1;
    const procid = optionalInt(env, 'SLURM_PROCID') ?? 0;
    const variables = present(env, [
      'SLURM_ARRAY_TASK_ID',
      'SLURM_ARRAY_TASK_MIN',
      'SLURM_ARRAY_TASK_STEP',
      'SLURM_ARRAY_TASK_COUNT',
      'SLURM_NTASKS',
      'SLURM_PROCID',
    ]);
    const offset = id - min;
    // A list (--array=1,3,7) or a gap leaves indexes that do not count 0..COUNT-1: ranks would be skipped.
    if (step < 1 || offset < 0 || offset % step !== 0 || offset / step >= count) {
      throw new UsageError(
        `--rank auto: ${variables.join(', ')}: the array index is not one of ${count} consecutive elements; ` +
          'submit a contiguous range (--array=0-N) or set AIR_RANK',
      );
    }
    if (tasks < 1 || procid >= tasks) {
      throw new UsageError(`--rank auto: ${variables.join(', ')}: SLURM_PROCID is not below SLURM_NTASKS`);
    }
    return {
      source: 'slurm-array',
      rank: (offset / step) * tasks + procid,
      worldSize: count * tasks,
      variables,
    };
  }
  if (env.SLURM_PROCID !== undefined) {
    const procid = requiredInt(env, 'SLURM_PROCID');
    const variables = present(env, ['SLURM_PROCID', 'SLURM_NTASKS']);
    if (env.SLURM_NTASKS === undefined) {
      throw new UsageError(
        `--rank auto: SLURM_PROCID=${procid} without SLURM_NTASKS: start air with srun -n <ranks>`,
      );
    }
    const tasks = requiredInt(env, 'SLURM_NTASKS');
    if (procid >= tasks) {
      throw new UsageError(`--rank auto: ${variables.join(', ')}: SLURM_PROCID is not below SLURM_NTASKS`);
    }
    return { source: 'srun', rank: procid, worldSize: tasks, variables };
  }
  return undefined;
}

function kubernetes(env: Env, airWorld: number | undefined): Reading | undefined {
  if (env.JOB_COMPLETION_INDEX === undefined) return undefined;
  const index = requiredInt(env, 'JOB_COMPLETION_INDEX');
  if (airWorld === undefined) {
    throw new UsageError(
      `--rank auto: JOB_COMPLETION_INDEX=${index} comes without a world size: set AIR_WORLD_SIZE to the Job's spec.completions`,
    );
  }
  return {
    source: 'kubernetes',
    rank: index,
    worldSize: airWorld,
    variables: [`JOB_COMPLETION_INDEX=${index}`, `AIR_WORLD_SIZE=${airWorld}`],
  };
}

function torchrun(env: Env, airWorld: number | undefined): Reading | undefined {
  if (env.RANK === undefined) return undefined;
  const rank = requiredInt(env, 'RANK');
  const world = optionalInt(env, 'WORLD_SIZE') ?? airWorld;
  if (world === undefined) {
    throw new UsageError(`--rank auto: RANK=${rank} without WORLD_SIZE: set WORLD_SIZE or AIR_WORLD_SIZE`);
  }
  return { source: 'torchrun', rank, worldSize: world, variables: present(env, ['RANK', 'WORLD_SIZE']) };
}

function present(env: Env, names: readonly string[]): string[] {
  return names.filter((n) => env[n] !== undefined).map((n) => `${n}=${env[n]}`);
}

function seen(env: Env): string {
  const vars = present(env, KNOWN);
  return vars.length === 0 ? 'none of its variables is set' : `seen: ${vars.join(', ')}`;
}

function optionalInt(env: Env, name: string): number | undefined {
  return env[name] === undefined ? undefined : requiredInt(env, name);
}

function requiredInt(env: Env, name: string): number {
  const value = env[name];
  if (value === undefined) throw new UsageError(`--rank auto: ${name} is not set (${seen(env)})`);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new UsageError(`--rank auto: ${name}=${JSON.stringify(value)} is not a whole number ≥ 0`);
  }
  return Number(value);
}

/** `--rank`: `auto` or a whole number. */
export function parseRankSpec(text: string): 'auto' | number {
  if (text === 'auto') return 'auto';
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`--rank ${text}: expected auto or a whole number ≥ 0`);
  }
  return Number(text);
}

/** `--ranks 0-15` or `--ranks 0,3,5-7`: a sorted list without repeats, every rank below `worldSize`. */
export function parseRanks(text: string, worldSize: number): number[] {
  const ranks = new Set<number>();
  for (const raw of text.split(',')) {
    const part = raw.trim();
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (match === null) {
      throw new UsageError(`--ranks ${text}: "${part}" is not a rank or a range a-b (e.g. 0,3,5-7)`);
    }
    const from = Number(match[1]);
    const to = match[2] === undefined ? from : Number(match[2]);
    if (to < from) throw new UsageError(`--ranks ${text}: the range ${part} runs backwards`);
    if (to >= worldSize) {
      throw new UsageError(`--ranks ${text}: rank ${to} is not in the plan (ranks 0-${worldSize - 1})`);
    }
    for (let r = from; r <= to; r++) ranks.add(r);
  }
  return [...ranks].sort((a, b) => a - b);
}
