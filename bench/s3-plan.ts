/**
 * What a plan's root in a bucket costs against a shared local folder, for the same 2-rank documents job (global
 * dedupe on), in one run on one machine: a real S3 server (s3rver) on 127.0.0.1, behind a counting proxy.
 *
 *   npm run build && npx tsx bench/s3-plan.ts [rounds=1]
 *
 * Input: the ranks tests' planted shards (the shared samples plus planted copies). Three set-ups, each planned,
 * run as 2 concurrent `air run --plan --rank auto` processes (each its own TMPDIR), then `air status` and
 * `air merge`:
 *   local/local    shards on disk, root a local folder (the shared-folder job)
 *   s3/local       shards in the bucket, root a local folder
 *   s3/bucket      shards in the bucket, root in the bucket (no shared folder at all)
 * Reported: wall seconds per phase, and the requests the proxy saw (by method) for the s3 set-ups.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writePlantedInput } from '../test/helpers/dup-shards.js';
import { s3Client, startS3Server, startStormProxy } from '../test/helpers/s3-server.js';

const AIR = path.resolve(import.meta.dirname, '../dist/cli/air.js');
const rounds = Number(process.argv[2] ?? 1);

function air(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AIR, ...args], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      if (code === 0 || (args[0] === 'status' && code === 1)) resolve(code ?? 0);
      else reject(new Error(`air ${args.join(' ')} exited ${code}: ${stderr}`));
    });
  });
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await run();
  return (performance.now() - started) / 1000;
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'air-bench-s3-plan-'));
const s3 = await startS3Server(['data', 'job']);
const proxy = await startStormProxy(s3.endpoint, 0);
const store = s3Client(s3, 64);
try {
  const input = path.join(dir, 'in');
  await writePlantedInput(input);
  const shards = (await readdir(input)).filter((f) => f.endsWith('.parquet'));
  for (const name of shards)
    await store.upload(path.join(input, name), { bucket: 'data', key: `in/${name}` });
  await writeFile(
    path.join(dir, 'air.json'),
    JSON.stringify({ method: 'documents', writer: { partRows: 200 }, progress: 'off' }),
  );
  const endpoint = ['--s3-endpoint', proxy.endpoint];
  const setups = [
    { name: 'local/local', input: 'in', root: (r: number) => path.join(dir, `root-${r}`), s3: false },
    {
      name: 's3/local',
      input: 's3://data/in/',
      root: (r: number) => path.join(dir, `root-s3-${r}`),
      s3: true,
    },
    { name: 's3/bucket', input: 's3://data/in/', root: (r: number) => `s3://job/r${r}/`, s3: true },
  ];
  console.log(
    `${shards.length} shards; machine: ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}`,
  );
  console.log(
    '| set-up | plan s | 2 ranks s | status s | merge s | total s | requests (GET/PUT/HEAD/DELETE) |',
  );
  for (let round = 0; round < rounds; round++) {
    for (const setup of setups) {
      const root = setup.root(round);
      const ep = setup.s3 ? endpoint : [];
      const env = { ...process.env, ...s3.env };
      const before = proxy.requests().length;
      const plan = await timed(() =>
        air(
          ['plan', '-c', 'air.json', '--input', setup.input, '--output', root, '--world-size', '2', ...ep],
          dir,
          env,
        ),
      );
      const planFile = setup.root(round).startsWith('s3://')
        ? `${root}plan.json`
        : path.join(root, 'plan.json');
      const ranks = await timed(() =>
        Promise.all(
          [0, 1].map(async (rank) => {
            const tmp = await mkdtemp(
              path.join(dir, `tmp-${setup.name.replace('/', '-')}-${round}-${rank}-`),
            );
            const rankEnv = { ...env, TMPDIR: tmp, AIR_RANK: String(rank), AIR_WORLD_SIZE: '2' };
            return air(['run', '--plan', planFile, '--rank', 'auto', ...ep], dir, rankEnv);
          }),
        ),
      );
      const status = await timed(() => air(['status', root, ...ep], dir, env));
      const merge = await timed(() => air(['merge', root, ...ep], dir, env));
      const seen = proxy.requests().slice(before);
      const count = (method: string): number => seen.filter((r) => r.startsWith(`${method} `)).length;
      const requests = setup.s3
        ? `${seen.length} (${['GET', 'PUT', 'HEAD', 'DELETE'].map(count).join('/')})`
        : '-';
      const total = plan + ranks + status + merge;
      console.log(
        `| ${setup.name} | ${plan.toFixed(1)} | ${ranks.toFixed(1)} | ${status.toFixed(1)} | ${merge.toFixed(1)} | ` +
          `${total.toFixed(1)} | ${requests} |`,
      );
    }
  }
  console.log(`load after: ${os.loadavg()[0]!.toFixed(1)}`);
} finally {
  store.close();
  await proxy.close();
  await s3.close();
  await rm(dir, { recursive: true, force: true });
}
