import { describe, expect, it } from 'vitest';
import { UsageError } from '../pipeline/errors.js';
import { parseRanks, parseRankSpec, resolveRank, type Env } from '../job/plan/rank-env.js';

const rankOf = (env: Env, world: number) => resolveRank('auto', env, world);
const refusal = (fn: () => unknown): string => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('expected a refusal');
};

/** What `sbatch --array=<min>-<max> --ntasks=<tasks>` + `srun` give each task of element `id`. */
function slurmArrayTask(
  id: number,
  procid: number,
  o: { min: number; count: number; tasks?: number; step?: number },
): Env {
  return {
    SLURM_JOB_ID: '9001',
    SLURM_ARRAY_JOB_ID: '9000',
    SLURM_ARRAY_TASK_ID: String(id),
    SLURM_ARRAY_TASK_MIN: String(o.min),
    SLURM_ARRAY_TASK_MAX: String(o.min + (o.count - 1) * (o.step ?? 1)),
    SLURM_ARRAY_TASK_COUNT: String(o.count),
    ...(o.step === undefined ? {} : { SLURM_ARRAY_TASK_STEP: String(o.step) }),
    ...(o.tasks === undefined ? {} : { SLURM_NTASKS: String(o.tasks), SLURM_PROCID: String(procid) }),
  };
}

describe('resolveRank', () => {
  it('--rank <n> is taken as given, checked against the plan', () => {
    expect(resolveRank(3, { RANK: '1', WORLD_SIZE: '2' }, 4)).toMatchObject({
      rank: 3,
      worldSize: 4,
      source: '--rank',
    });
    expect(refusal(() => resolveRank(4, {}, 4))).toMatch(/rank 4 is not in the plan \(ranks 0-3\)/);
  });

  it('AIR_RANK/AIR_WORLD_SIZE override every launcher', () => {
    const env = {
      AIR_RANK: '5',
      AIR_WORLD_SIZE: '8',
      SLURM_PROCID: '0',
      SLURM_NTASKS: '2',
      RANK: '1',
      WORLD_SIZE: '2',
    };
    expect(rankOf(env, 8)).toMatchObject({ rank: 5, worldSize: 8, source: 'AIR_RANK' });
    expect(rankOf({ AIR_RANK: '2' }, 3)).toMatchObject({ rank: 2, worldSize: 3 });
    expect(refusal(() => rankOf({ AIR_RANK: '2', AIR_WORLD_SIZE: '4' }, 8))).toMatch(
      /world size 4 \(AIR_RANK=2, AIR_WORLD_SIZE=4\) differs from the plan's 8/,
    );
    expect(refusal(() => rankOf({ AIR_RANK: 'x' }, 8))).toMatch(/AIR_RANK="x" is not a whole number/);
    expect(refusal(() => rankOf({ AIR_RANK: '-1' }, 8))).toMatch(/AIR_RANK="-1"/);
    expect(refusal(() => rankOf({ AIR_RANK: '8' }, 8))).toMatch(/rank 8 is not in the plan/);
  });

  it('a Slurm array of one task per element: rank = index - min, world = count', () => {
    // sbatch --array=3-6 (no srun): SLURM_NTASKS unset.
    const ranks = [3, 4, 5, 6].map((id) => rankOf(slurmArrayTask(id, 0, { min: 3, count: 4 }), 4));
    expect(ranks.map((r) => r.rank)).toEqual([0, 1, 2, 3]);
    expect(ranks[0]!.source).toBe('slurm-array');
    // SLURM_NTASKS=1 is the same thing.
    expect(rankOf(slurmArrayTask(5, 0, { min: 3, count: 4, tasks: 1 }), 4).rank).toBe(2);
    // --array=0-6:2 steps over indexes 0,2,4,6.
    const stepped = [0, 2, 4, 6].map(
      (id) => rankOf(slurmArrayTask(id, 0, { min: 0, count: 4, step: 2 }), 4).rank,
    );
    expect(stepped).toEqual([0, 1, 2, 3]);
  });

  it('a 2-element Slurm array of 2 tasks each: 4 distinct ranks, one per task', () => {
    const seen = [];
    for (const id of [0, 1])
      for (const procid of [0, 1])
        seen.push(rankOf(slurmArrayTask(id, procid, { min: 0, count: 2, tasks: 2 }), 4));
    expect(seen.map((r) => r.rank)).toEqual([0, 1, 2, 3]);
    expect(seen.every((r) => r.worldSize === 4)).toBe(true);
    expect(seen[3]!.variables).toContain('SLURM_PROCID=1');
  });

  it('a multi-node element runs each rank once: SLURM_PROCID tells its nodes apart', () => {
    // Element 1 of --array=0-2 --nodes=2 --ntasks=2: srun starts one task per node, same array index on both.
    const node0 = rankOf(slurmArrayTask(1, 0, { min: 0, count: 3, tasks: 2 }), 6);
    const node1 = rankOf(slurmArrayTask(1, 1, { min: 0, count: 3, tasks: 2 }), 6);
    expect([node0.rank, node1.rank]).toEqual([2, 3]);
    // The element index alone would have given both nodes rank 1 of 3, which the plan of 6 refuses anyway.
    expect(refusal(() => rankOf(slurmArrayTask(1, 0, { min: 0, count: 3, tasks: 2 }), 3))).toMatch(
      /world size 6 .*differs from the plan's 3/,
    );
  });

  it('refuses array indexes that do not count 0..COUNT-1 and a PROCID beyond NTASKS', () => {
    // --array=1,3,7: min 1, count 3, index 7 is element 6.
    const list = {
      SLURM_ARRAY_TASK_ID: '7',
      SLURM_ARRAY_TASK_MIN: '1',
      SLURM_ARRAY_TASK_MAX: '7',
      SLURM_ARRAY_TASK_COUNT: '3',
    };
    expect(refusal(() => rankOf(list, 3))).toMatch(
      /SLURM_ARRAY_TASK_ID=7, SLURM_ARRAY_TASK_MIN=1.*contiguous range/,
    );
    expect(refusal(() => rankOf(slurmArrayTask(1, 0, { min: 0, count: 2, step: 2 }), 2))).toMatch(
      /not one of 2/,
    );
    expect(refusal(() => rankOf(slurmArrayTask(0, 2, { min: 0, count: 2, tasks: 2 }), 4))).toMatch(
      /SLURM_PROCID is not below SLURM_NTASKS/,
    );
    expect(refusal(() => rankOf({ SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: '2' }, 2))).toMatch(
      /SLURM_ARRAY_TASK_MIN is not set \(seen: SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_COUNT=2\)/,
    );
  });

  it('plain srun: SLURM_PROCID of SLURM_NTASKS', () => {
    expect(rankOf({ SLURM_JOB_ID: '1', SLURM_PROCID: '3', SLURM_NTASKS: '4' }, 4)).toMatchObject({
      rank: 3,
      worldSize: 4,
      source: 'srun',
      variables: ['SLURM_PROCID=3', 'SLURM_NTASKS=4'],
    });
    expect(refusal(() => rankOf({ SLURM_PROCID: '0' }, 4))).toMatch(/without SLURM_NTASKS/);
    expect(refusal(() => rankOf({ SLURM_PROCID: '4', SLURM_NTASKS: '4' }, 4))).toMatch(
      /not below SLURM_NTASKS/,
    );
    expect(refusal(() => rankOf({ SLURM_PROCID: '1', SLURM_NTASKS: '2' }, 4))).toMatch(
      /world size 2 \(SLURM_PROCID=1, SLURM_NTASKS=2\) differs from the plan's 4/,
    );
  });

  it('a Kubernetes Indexed Job needs AIR_WORLD_SIZE', () => {
    expect(rankOf({ JOB_COMPLETION_INDEX: '7', AIR_WORLD_SIZE: '16' }, 16)).toMatchObject({
      rank: 7,
      worldSize: 16,
      source: 'kubernetes',
    });
    expect(refusal(() => rankOf({ JOB_COMPLETION_INDEX: '7' }, 16))).toMatch(
      /JOB_COMPLETION_INDEX=7 comes without a world size: set AIR_WORLD_SIZE/,
    );
    expect(refusal(() => rankOf({ JOB_COMPLETION_INDEX: '7', AIR_WORLD_SIZE: '8' }, 16))).toMatch(
      /world size 8 .*plan's 16/,
    );
  });

  it('torchrun-style RANK/WORLD_SIZE', () => {
    expect(rankOf({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1' }, 2)).toMatchObject({
      rank: 1,
      source: 'torchrun',
    });
    expect(rankOf({ RANK: '1', AIR_WORLD_SIZE: '2' }, 2)).toMatchObject({ rank: 1, worldSize: 2 });
    expect(refusal(() => rankOf({ RANK: '1' }, 2))).toMatch(/RANK=1 without WORLD_SIZE/);
  });

  it('launchers that agree are fine; launchers that disagree are ambiguous', () => {
    const agree = rankOf({ SLURM_PROCID: '1', SLURM_NTASKS: '2', RANK: '1', WORLD_SIZE: '2' }, 2);
    expect(agree).toMatchObject({ rank: 1, source: 'srun+torchrun' });
    // torchrun inside one srun task: SLURM_PROCID=0 on the node, RANK=1 for the second local process.
    const message = refusal(() =>
      rankOf({ SLURM_PROCID: '0', SLURM_NTASKS: '1', RANK: '1', WORLD_SIZE: '2' }, 2),
    );
    expect(message).toMatch(
      /ambiguous: SLURM_PROCID=0, SLURM_NTASKS=1 give rank 0 of 1; RANK=1, WORLD_SIZE=2 give rank 1 of 2; set AIR_RANK/,
    );
    expect(refusal(() => rankOf({ SLURM_PROCID: '0', SLURM_NTASKS: '4', AIR_WORLD_SIZE: '8' }, 8))).toMatch(
      /ambiguous: SLURM_PROCID=0, SLURM_NTASKS=4 give a world size of 4, AIR_WORLD_SIZE=8/,
    );
  });

  it('refuses an environment without a rank, naming what it saw', () => {
    expect(refusal(() => rankOf({ PATH: '/bin' }, 2))).toMatch(
      /no rank in the environment \(none of its variables is set\)/,
    );
    // salloc without srun: a job, tasks, but no task of ours.
    expect(refusal(() => rankOf({ SLURM_JOB_ID: '3', SLURM_NTASKS: '4', AIR_WORLD_SIZE: '4' }, 4))).toMatch(
      /no rank in the environment \(seen: AIR_WORLD_SIZE=4, SLURM_NTASKS=4\)/,
    );
  });
});

describe('parseRanks and parseRankSpec', () => {
  it('parses ranks and ranges into a sorted list without repeats', () => {
    expect(parseRanks('0-15', 16)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(parseRanks('7,0,3,5-7', 8)).toEqual([0, 3, 5, 6, 7]);
    expect(parseRanks(' 2 ', 3)).toEqual([2]);
  });

  it('refuses bad syntax, backwards ranges and ranks beyond the world', () => {
    expect(() => parseRanks('0-16', 16)).toThrow(/rank 16 is not in the plan \(ranks 0-15\)/);
    expect(() => parseRanks('5-3', 16)).toThrow(/runs backwards/);
    expect(() => parseRanks('1,,2', 16)).toThrow(/"" is not a rank/);
    expect(() => parseRanks('a', 16)).toThrow(UsageError);
    expect(() => parseRanks('-1', 16)).toThrow(UsageError);
  });

  it('--rank takes auto or a whole number', () => {
    expect(parseRankSpec('auto')).toBe('auto');
    expect(parseRankSpec('12')).toBe(12);
    expect(() => parseRankSpec('1.5')).toThrow(UsageError);
  });
});
