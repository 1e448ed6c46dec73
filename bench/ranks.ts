/**
 * The cost of going distributed (results: bench/RESULTS.md §9): the same AIR job over the same shards, against
 * the same `air sim` (same capacity), as one `air run` process and as a plan of N ranks run as N concurrent
 * processes (global dedupe barrier included). Reports wall time and the CPU time (user + system) of the air
 * processes, the simulator's not counted, and their ratios; checks both wrote the same rows.
 *
 *   npm run build && npx tsx bench/ranks.ts [--ranks 4] [--rate 0.1] [--slots 32] [--decode-tps 400]
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { startSimProcess, stopSimProcess } from './sim-process.js';

const { values } = parseArgs({
  options: {
    ranks: { type: 'string', default: '4' },
    rate: { type: 'string', default: '0.1' },
    slots: { type: 'string', default: '32' },
    'decode-tps': { type: 'string', default: '400' },
  },
});
const world = Number(values.ranks);
const AIR = path.resolve(import.meta.dirname, '../dist/cli/air.js');
const SHARED = path.resolve(import.meta.dirname, '../../shared/data/web');
const INPUT = [
  path.join(SHARED, 'fineweb-sample.snappy.parquet'),
  path.join(SHARED, 'dolma-sample.zstd.parquet'),
];

interface Timed {
  readonly code: number | null;
  readonly cpuS: number;
  readonly stderr: string;
}

/** Runs air under bash's `time`, which counts the CPU of the process and everything it started. */
function timedAir(
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Timed> {
  const quoted = [AIR, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const child = spawn('bash', ['-c', `TIMEFORMAT='@cpu %U %S'; time node ${quoted}`], {
    cwd,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) =>
    child.on('close', (code) => {
      const m = /@cpu ([\d.]+) ([\d.]+)/.exec(stderr);
      resolve({ code, cpuS: m === null ? NaN : Number(m[1]) + Number(m[2]), stderr });
    }),
  );
}

async function rowsOf(glob: string): Promise<string[]> {
  const db = await DuckDBInstance.create();
  const conn = await db.connect();
  const reader = await conn.runAndReadAll(
    `SELECT document_id || '@' || depth || ' ' || instruction FROM read_parquet('${glob}') ORDER BY 1`,
  );
  const rows = reader.getRowsJS().map(([r]) => String(r));
  conn.closeSync();
  db.closeSync();
  return rows;
}

function check(what: string, result: Timed): void {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}: ${result.stderr.slice(-2000)}`);
}

const dir = await mkdtemp(path.join(tmpdir(), 'air-bench-ranks-'));
const sim = await startSimProcess([
  '--model',
  'guide',
  'student',
  '--max-concurrency',
  values.slots,
  '--decode-tps',
  values['decode-tps'],
]);
try {
  await mkdir(path.join(dir, 'in'));
  await writeFile(
    path.join(dir, 'air.json'),
    JSON.stringify({
      method: 'air',
      llm: {
        guidance: { baseUrl: sim.url, model: 'guide' },
        student: { baseUrl: sim.url, model: 'student' },
      },
      sample: { preSample: { mode: 'rate', rate: Number(values.rate), seed: 1 } },
      progress: 'off',
    }),
  );
  console.log(
    `${sim.banner}\n${world} ranks vs 1 process; pre-sample rate ${values.rate}; shards: ${INPUT.length}`,
  );

  // Two shards over `world` ranks would leave ranks idle: both runs read them split into one shard per rank.
  await splitInput(dir, world);
  let started = performance.now();
  const single = await timedAir(['run', '-c', 'air.json', '--input', 'in', '--output', 'single'], dir);
  const singleWall = (performance.now() - started) / 1000;
  check('single run', single);
  const planned = await timedAir(
    ['plan', '-c', 'air.json', '--input', 'in', '--output', 'job', '--world-size', String(world)],
    dir,
  );
  check('air plan', planned);
  started = performance.now();
  const ranks = await Promise.all(
    Array.from({ length: world }, (_, rank) =>
      timedAir(['run', '--plan', 'job/plan.json', '--rank', 'auto'], dir, {
        ...process.env,
        AIR_RANK: String(rank),
      }),
    ),
  );
  const ranksWall = (performance.now() - started) / 1000;
  ranks.forEach((r, i) => check(`rank ${i}`, r));
  const merged = await timedAir(['merge', 'job'], dir);
  check('air merge', merged);

  const a = await rowsOf(path.join(dir, 'single', '*.parquet'));
  const b = await rowsOf(path.join(dir, 'job', 'ranks', '*', '*.parquet'));
  const same = a.length === b.length && a.every((r, i) => r === b[i]);
  const ranksCpu = ranks.reduce((n, r) => n + r.cpuS, 0);
  console.log('\n| run | wall s | CPU s (air processes) | rows |');
  console.log('|---|---|---|---|');
  console.log(`| 1 process | ${singleWall.toFixed(1)} | ${single.cpuS.toFixed(1)} | ${a.length} |`);
  console.log(
    `| ${world} ranks (plan ${planned.cpuS.toFixed(1)} s CPU, merge ${merged.cpuS.toFixed(1)} s CPU not included) | ` +
      `${ranksWall.toFixed(1)} | ${ranksCpu.toFixed(1)} | ${b.length} |`,
  );
  console.log(
    `\nratios (${world} ranks / 1 process): wall ${(ranksWall / singleWall).toFixed(2)}x, ` +
      `CPU ${(ranksCpu / single.cpuS).toFixed(2)}x; same rows: ${same}`,
  );
} finally {
  console.log(`\nsimulator: ${await stopSimProcess(sim.child)}`);
  await rm(dir, { recursive: true, force: true });
}

/** Rewrites the input as `world` shards of consecutive rows (in listing order), so every rank has work. */
async function splitInput(root: string, parts: number): Promise<void> {
  const db = await DuckDBInstance.create();
  const conn = await db.connect();
  const list = INPUT.map((f) => `'${f}'`).join(', ');
  await conn.run(
    `CREATE TABLE docs AS SELECT row_number() OVER () - 1 AS n, id, text FROM read_parquet([${list}])`,
  );
  const total = Number((await conn.runAndReadAll('SELECT count(*) FROM docs')).getRowsJS()[0]![0]);
  const per = Math.ceil(total / parts);
  for (let p = 0; p < parts; p++) {
    await conn.run(
      `COPY (SELECT id, text FROM docs WHERE n >= ${p * per} AND n < ${(p + 1) * per} ORDER BY n)
       TO '${path.join(root, 'in', `part-${String(p).padStart(3, '0')}.parquet`)}' (FORMAT parquet)`,
    );
  }
  conn.closeSync();
  db.closeSync();
}
