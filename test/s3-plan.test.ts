import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findGlobalDuplicates } from '../job/global-dedupe/index.js';
import { dedupeInstructionsAcrossRanks } from '../job/plan/instruction-dedupe.js';
import { jobRoot } from '../job/plan/job-root.js';
import { dedupedStats } from '../job/plan/merge.js';
import { rowStatsOf } from '../report/stats/read-output.js';
import type { ObjectStore } from '../pipeline/io/object-store/store.js';
import { configureObjectStore } from '../pipeline/io/object-store/store.js';
import { runAir, startAir } from './helpers/cli.js';
import { simAirConfig } from './helpers/air-sim-config.js';
import { nearCopy, writePlantedInput } from './helpers/dup-shards.js';
import { useSimulators } from './helpers/simulators.js';
import { query, tempDir } from './helpers/duckdb.js';
import {
  s3Client,
  s3ErrorReply,
  startS3Proxy,
  startS3Server,
  type S3Proxy,
  type S3Server,
} from './helpers/s3-server.js';
import { writtenRows } from './helpers/output-rows.js';

/**
 * A plan root in a bucket: `air plan --output s3://…`, ranks as separate processes that share nothing but the
 * bucket (each its own fresh TMPDIR, so its own local working folders), global dedupe through the bucket,
 * `air status` and `air merge` on the bucket root. A real s3rver on 127.0.0.1, started here.
 */
let dir: string;
let cleanup: () => Promise<void>;
let s3: S3Server;
let store: ObjectStore;
let single: string[];
let singleDropped: Record<string, number>;
let labels: string[];

const ROOT = 's3://job/j1/';
const simulator = useSimulators();
const WORLD = 2;

const get = (key: string): Promise<string | undefined> => store.getText({ bucket: 'job', key });
const keys = async (prefix: string): Promise<string[]> =>
  (await store.list(`s3://job/${prefix}`)).map((o) => o.url.key.slice(prefix.length));

/** A process of its own: a fresh TMPDIR (its local working folders), the rank from AIR_RANK / AIR_WORLD_SIZE. */
async function rankProcess(rank: number): Promise<ReturnType<typeof startAir> & { log: () => string }> {
  const tmp = await mkdtemp(path.join(dir, `tmp-${rank}-`));
  const env = {
    ...process.env,
    ...s3.env,
    TMPDIR: tmp,
    AIR_RANK: String(rank),
    AIR_WORLD_SIZE: String(WORLD),
  };
  const started = startAir(
    ['run', '--plan', `${ROOT}plan.json`, '--rank', 'auto', '--s3-endpoint', s3.endpoint],
    dir,
    env,
  );
  let log = '';
  started.child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  return { ...started, log: () => log };
}

/**
 * A proxy that gives s3rver AWS S3's conditional PUT: `If-None-Match: *` on an existing key is answered 412
 * (s3rver alone ignores the header on PUT). Existence is asked with the test's own client.
 */
function startConditionalPutProxy(target: string): Promise<S3Proxy> {
  return startS3Proxy(target, async (req, res) => {
    if (req.method !== 'PUT' || req.headers['if-none-match'] !== '*') return false;
    const [bucket, ...key] = decodeURIComponent((req.url ?? '').split('?')[0]!)
      .slice(1)
      .split('/');
    if (!(await store.exists({ bucket: bucket!, key: key.join('/') }))) return false;
    req.resume();
    s3ErrorReply(res, 412, 'PreconditionFailed');
    return true;
  });
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-s3-plan-'));
  s3 = await startS3Server(['data', 'job']);
  store = s3Client(s3, 5);
  const input = path.join(dir, 'in');
  await writePlantedInput(input);
  labels = (await readdir(input)).filter((f) => f.endsWith('.parquet')).sort();
  for (const name of labels)
    await store.upload(path.join(input, name), { bucket: 'data', key: `in/${name}` });
  await writeFile(
    path.join(dir, 'air.json'),
    JSON.stringify({ method: 'documents', writer: { partRows: 50 }, progress: 'off' }),
  );
  const alone = await runAir(['run', '-c', 'air.json', '--input', 'in', '--output', 'single'], dir);
  expect(alone.code, alone.stderr).toBe(0);
  single = await writtenRows([path.join(dir, 'single', '*.parquet')]);
  singleDropped = (
    JSON.parse(await readFile(path.join(dir, 'single', 'ledger.json'), 'utf8')) as {
      totals: { dropped: Record<string, number> };
    }
  ).totals.dropped;
}, 120_000);

afterAll(async () => {
  store?.close();
  await s3?.close();
  await cleanup?.();
});

describe('a plan root in a bucket', () => {
  it('air plan writes plan.json to the bucket; another world size is refused naming it', async () => {
    const plan = ['plan', '-c', 'air.json', '--input', 's3://data/in/', '--output', ROOT];
    const env = { ...process.env, ...s3.env };
    const planned = await runAir([...plan, '--world-size', '2', '--s3-endpoint', s3.endpoint], dir, env);
    expect(planned.code, planned.stderr).toBe(0);
    expect(planned.stdout).toContain(`written ${ROOT}plan.json`);
    const written = JSON.parse((await get('j1/plan.json'))!) as {
      worldSize: number;
      shards: { path: string }[];
    };
    expect(written.worldSize).toBe(2);
    expect(written.shards.map((s) => s.path)).toEqual(labels.map((l) => `s3://data/in/${l}`));

    const again = await runAir([...plan, '--world-size', '2', '--s3-endpoint', s3.endpoint], dir, env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('the same plan is already there');
    const other = await runAir([...plan, '--world-size', '3', '--s3-endpoint', s3.endpoint], dir, env);
    expect(other.code).toBe(2);
    expect(other.stderr.trim().split('\n')).toHaveLength(1);
    expect(other.stderr).toContain(`${ROOT}plan.json: another plan is here (world size 2 -> 3)`);
    expect((JSON.parse((await get('j1/plan.json'))!) as { worldSize: number }).worldSize).toBe(2);
  }, 120_000);

  it('2 ranks sharing only the bucket, one SIGKILLed after a committed part and restarted fresh: merged rows equal a single run', async () => {
    const ranks = [await rankProcess(0), await rankProcess(1)];
    let killed = -1;
    for (let waited = 0; killed < 0 && waited < 180_000; waited += 50) {
      for (let rank = 0; rank < WORLD && killed < 0; rank++) {
        const manifest = await get(`j1/ranks/0000${rank}/manifest.jsonl`);
        if (manifest?.includes('"part":"part-') === true && !manifest.includes('"kind":"complete"')) {
          ranks[rank]!.child.kill('SIGKILL');
          killed = rank;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(killed).toBeGreaterThanOrEqual(0);
    const first = await Promise.all(ranks.map((r) => r.done));
    expect(first[killed]!.signal).toBe('SIGKILL');
    const other = 1 - killed;
    expect(first[other]!.code, first[other]!.stderr).toBe(0);
    // The global step ran once (s3rver ignores If-None-Match: two holders would be wasted work, not wrong).
    expect(
      ranks.filter((r) => r.log().includes('running the global dedupe step')).length,
    ).toBeGreaterThanOrEqual(1);

    const env = { ...process.env, ...s3.env };
    const between = await runAir(['status', ROOT, '--json', '--s3-endpoint', s3.endpoint], dir, env);
    expect(between.code, between.stderr).toBe(1);
    const states = (JSON.parse(between.stdout) as { ranks: { rank: number; state: string }[] }).ranks;
    expect(states.map((s) => s.state)).toEqual(
      killed === 0 ? ['interrupted', 'complete'] : ['complete', 'interrupted'],
    );

    // Restarted on a "fresh machine": a new empty TMPDIR, so it resumes from the bucket alone.
    const restarted = await rankProcess(killed);
    const second = await restarted.done;
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/fetched \d+ files of s3:\/\/job\/j1\/ranks\/0000\d/);
    const finished = await rankProcess(killed);
    const third = await finished.done;
    expect(third.code).toBe(0);
    expect(third.stderr).toContain(`rank 0000${killed} is already complete`);

    expect(await keys('j1/completions/')).toEqual(['00000', '00001']);
    expect(await keys('j1/heartbeats/')).toEqual([]);
    expect(await keys('j1/dedupe/')).not.toContain('lock');
    const summary = JSON.parse((await get('j1/dedupe/summary.json'))!) as { drops: Record<string, number> };
    expect(summary.drops.exact_duplicate).toBeGreaterThanOrEqual(20);
    expect(summary.drops.near_duplicate).toBeGreaterThanOrEqual(25);

    const status = await runAir(['status', ROOT, '--s3-endpoint', s3.endpoint], dir, env);
    expect(status.code, status.stdout).toBe(0);
    expect(status.stdout).toContain(`${ROOT}: 2 of 2 ranks complete`);

    const merged = await runAir(['merge', ROOT, '--s3-endpoint', s3.endpoint], dir, env);
    expect(merged.code, merged.stderr).toBe(0);
    expect(merged.stdout).toContain(`wrote ${ROOT}ledger.json`);
    const ledger = JSON.parse((await get('j1/ledger.json'))!) as {
      totals: { read: number; written: number; rowsWritten: number; dropped: Record<string, number> };
      parts: Array<{ file: string; rows: number }>;
      plannedRows: number;
    };
    expect(ledger.totals.read).toBe(ledger.plannedRows);
    expect(ledger.totals.rowsWritten).toBe(single.length);
    expect(ledger.totals.dropped).toEqual(singleDropped);
    const dropped = Object.values(ledger.totals.dropped).reduce((a, b) => a + b, 0);
    expect(ledger.totals.written + dropped).toBe(ledger.totals.read);
    for (const key of ['stats.json', 'report.html', 'README.md'])
      expect(await get(`j1/${key}`)).toBeDefined();
    expect(await get('j1/README.md')).toContain(`- ${ledger.parts[0]!.file}`);

    // The merged dataset: the ledger's parts, fetched from the bucket, are exactly a single run's rows.
    const local = path.join(dir, 'merged');
    const files: string[] = [];
    for (const part of ledger.parts) {
      const file = path.join(local, part.file);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, '');
      const info = await store.head({ bucket: 'job', key: `j1/${part.file}` });
      await store.download(info.url, file, 0, info.size);
      files.push(file);
    }
    const rows = await writtenRows(files);
    expect(rows).toEqual(single);
    const ids = rows.map((r) => r.split(' ')[1]);
    expect(new Set(ids).size).toBe(ids.length);
  }, 420_000);

  it('the global step is deterministic: run again over the bucket’s key files, the same drop lists, byte for byte', async () => {
    const plan = JSON.parse((await get('j1/plan.json'))!) as { shards: { label: string }[] };
    const shards = plan.shards.map((s) => s.label);
    const runs: string[] = [];
    for (const name of ['again-a', 'again-b']) {
      const root = path.join(dir, name);
      for (const object of await store.list('s3://job/j1/dedupe/keys/')) {
        const file = path.join(root, 'dedupe/keys', path.basename(object.url.key));
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, '');
        await store.download(object.url, file, 0, object.size);
      }
      await findGlobalDuplicates(root, shards);
      runs.push(root);
    }
    for (let index = 0; index < shards.length; index++) {
      const remote = (await get(`j1/dedupe/drops/${index}.jsonl`))!;
      for (const root of runs) {
        expect(await readFile(path.join(root, 'dedupe/drops', `${index}.jsonl`), 'utf8')).toBe(remote);
      }
    }
  }, 120_000);

  it('claims the lock once where If-None-Match is honoured; where it is ignored, reading back names the last writer', async () => {
    const settings = { maxAttempts: 3, uploadConcurrency: 4, multipartMB: 64 };
    const proxy = await startConditionalPutProxy(s3.endpoint);
    try {
      configureObjectStore({ endpoint: proxy.endpoint, ...settings });
      const honoured = jobRoot('s3://job/claims/');
      expect(await honoured.createExclusive('dedupe/lock', 'first')).toBe(true);
      expect(await honoured.createExclusive('dedupe/lock', 'second')).toBe(false);
      expect(await honoured.readText('dedupe/lock')).toBe('first');
      await honoured.remove('dedupe/lock');
      expect(await honoured.createExclusive('dedupe/lock', 'third')).toBe(true);
    } finally {
      await proxy.close();
    }
    // s3rver alone writes anyway: each claimant holds the lock only if it reads its own text back.
    configureObjectStore({ endpoint: s3.endpoint, ...settings });
    const ignored = jobRoot('s3://job/claims-ignored/');
    expect(await ignored.createExclusive('lock', 'first')).toBe(true);
    expect(await ignored.createExclusive('lock', 'second')).toBe(true);
    expect(await ignored.readText('lock')).toBe('second');
  }, 60_000);

  it('pulls a root file again when it was replaced between the HEAD and the GET (a rank rewriting its manifest)', async () => {
    const settings = { maxAttempts: 3, uploadConcurrency: 4, multipartMB: 64 };
    const root = jobRoot('s3://job/pull-race/');
    configureObjectStore({ endpoint: s3.endpoint, ...settings });
    await root.writeText('ranks/00000/manifest.jsonl', 'version two\n');
    // The first GET pinned to an ETag is answered as S3 answers a replaced object (412 PreconditionFailed).
    let refused = 0;
    const proxy = await startS3Proxy(s3.endpoint, (req, res) => {
      if (req.method !== 'GET' || req.headers['if-match'] === undefined || refused > 0) return false;
      refused++;
      req.resume();
      s3ErrorReply(res, 412, 'PreconditionFailed');
      return true;
    });
    try {
      configureObjectStore({ endpoint: proxy.endpoint, ...settings });
      expect(await root.pull('ranks/00000/manifest.jsonl')).toBe(true);
      expect(refused).toBe(1);
      const local = path.join(root.localDir, 'ranks/00000/manifest.jsonl');
      expect(await readFile(local, 'utf8')).toBe('version two\n');
      expect(await root.pull('ranks/00000/none.jsonl')).toBe(false);
    } finally {
      configureObjectStore({ endpoint: s3.endpoint, ...settings });
      await root.dispose();
      await proxy.close();
    }
  });

  it('takes over a dedupe lock in the bucket left by another host once it is older than the stale window', async () => {
    // Through the proxy that honours If-None-Match: on s3rver alone the rank would simply overwrite the lock.
    const proxy = await startConditionalPutProxy(s3.endpoint);
    const env = { ...process.env, ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
    const planned = await runAir(
      ['plan', '-c', 'air.json', '--input', 's3://data/in/', '--output', 's3://job/j2/', '--world-size', '1'],
      dir,
      env,
    );
    expect(planned.code, planned.stderr).toBe(0);
    const then = new Date().toISOString();
    await store.putText(
      { bucket: 'job', key: 'j2/dedupe/lock' },
      `${JSON.stringify({ pid: 1, host: `not-${hostname()}`, startedAt: then, updatedAt: then })}\n`,
    );
    const tmp = await mkdtemp(path.join(dir, 'tmp-takeover-'));
    const ran = await runAir(
      ['run', '--plan', 's3://job/j2/plan.json', '--rank', '0', '--dedupe-lock-stale', '2'],
      dir,
      { ...env, TMPDIR: tmp },
    ).finally(() => proxy.close());
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).toContain(`taking over the dedupe lock of pid 1 on not-${hostname()}`);
    expect(ran.stderr).toContain('running the global dedupe step');
    expect(await keys('j2/dedupe/')).not.toContain('lock');
    // Nothing left in the rank's local folders but its run's working folder.
    expect(await readdir(path.join(tmp, 'air-work'))).toHaveLength(1);
  }, 180_000);

  it('merges an AIR job in a bucket root with instruction dedupe and --cache, parts fetched one at a time', async () => {
    const sim = await simulator({ models: ['guide', 'student'] });
    await writeFile(path.join(dir, 'air-sim.json'), JSON.stringify(simAirConfig(sim.url)));
    const env = { ...process.env, ...s3.env, AWS_ENDPOINT_URL_S3: s3.endpoint };
    const root = 's3://job/air/';
    const planned = await runAir(
      ['plan', '-c', 'air-sim.json', '--input', 's3://data/in/', '--output', root, '--world-size', '2'],
      dir,
      env,
    );
    expect(planned.code, planned.stderr).toBe(0);
    const tmp = await mkdtemp(path.join(dir, 'tmp-air-'));
    const ran = await runAir(['run', '--plan', `${root}plan.json`, '--ranks', '0-1'], dir, {
      ...env,
      TMPDIR: tmp,
    });
    expect(ran.code, ran.stderr).toBe(0);
    const merged = await runAir(['merge', root, '--cache'], dir, { ...env, TMPDIR: tmp });
    expect(merged.code, merged.stderr).toBe(0);
    expect(merged.stdout).toContain('instruction dedupe across ranks');
    const ledger = JSON.parse((await get('air/ledger.json'))!) as {
      totals: { read: number; rowsWritten: number };
      plannedRows: number;
      parts: Array<{ file: string; rows: number }>;
      instructionDedupe: { rows: number; dropped: number };
    };
    expect(ledger.totals.read).toBe(ledger.plannedRows);
    expect(ledger.instructionDedupe.rows).toBeGreaterThan(0);
    expect(ledger.parts.reduce((n, p) => n + p.rows, 0)).toBe(ledger.totals.rowsWritten);
    const there = new Set(await keys('air/'));
    for (const part of ledger.parts) expect(there.has(part.file), part.file).toBe(true);
    for (const name of ['instruction-dedupe/drops.jsonl', 'llm-cache.sqlite', 'stats.json', 'README.md']) {
      expect(there.has(name), name).toBe(true);
    }
    // The parts came down one at a time into a folder of merge's own, removed at the end.
    expect(await readdir(path.join(tmp, 'air-work'))).toHaveLength(2); // the two ranks' working folders
  }, 300_000);

  it('instruction dedupe over a bucket root drops and rewrites as over a folder, fetching parts one at a time', async () => {
    configureObjectStore({ endpoint: s3.endpoint, maxAttempts: 3, uploadConcurrency: 4, multipartMB: 64 });
    const words = (seed: string): string =>
      Array.from({ length: 200 }, (_, i) => `${seed}${(i * 7919) % 1009}`).join(' ');
    const [a, b] = [`Write a letter ${words('a')}`, `Summarise it ${words('b')}`];
    const folder = path.join(dir, 'idd');
    const rows = [
      [{ document_id: 'd1', depth: 1, instruction: a }],
      [
        { document_id: 'd2', depth: 1, instruction: b },
        { document_id: 'd3', depth: 1, instruction: nearCopy(a, 'x') },
      ],
    ];
    const parts = [];
    for (const [rank, partRows] of rows.entries()) {
      const file = `ranks/0000${rank}/part-00000.parquet`;
      await mkdir(path.dirname(path.join(folder, file)), { recursive: true });
      const jsonl = path.join(dir, `idd-${rank}.jsonl`);
      await writeFile(jsonl, partRows.map((r) => JSON.stringify(r)).join('\n') + '\n');
      await query(
        `COPY (SELECT document_id, depth::INTEGER AS depth, instruction FROM read_json('${jsonl}',
           format = 'newline_delimited')) TO '${path.join(folder, file)}' (FORMAT parquet)`,
      );
      await store.upload(path.join(folder, file), { bucket: 'job', key: `idd/${file}` });
      parts.push({ file, rows: partRows.length });
    }
    const inFolder = await dedupeInstructionsAcrossRanks(folder, parts, { threshold: 0.8 });
    const inBucket = await dedupeInstructionsAcrossRanks('s3://job/idd/', parts, { threshold: 0.8 });
    expect(inFolder.drops).toBe(1);
    expect({ ...inBucket, indexBytes: 0 }).toEqual({ ...inFolder, indexBytes: 0 });
    expect(await get(`idd/${inBucket.dropFile}`)).toBe(
      await readFile(path.join(folder, inFolder.dropFile), 'utf8'),
    );
    const rewritten = inBucket.parts[1]!.file;
    expect(rewritten).toBe('instruction-dedupe/parts/00001-part-00000.parquet');
    const fetched = path.join(dir, 'idd-fetched.parquet');
    await writeFile(fetched, '');
    const info = await store.head({ bucket: 'job', key: `idd/${rewritten}` });
    await store.download(info.url, fetched, 0, info.size);
    const read = (file: string) => query(`SELECT * FROM read_parquet('${file}')`);
    expect(await read(fetched)).toEqual(await read(path.join(folder, rewritten)));
    // Each part was removed from the local folder once read: none of the ranks' parts stays there.
    const scratch = jobRoot('s3://job/idd/');
    await expect(readdir(path.join(scratch.localDir, 'ranks/00000'))).resolves.toEqual([]);
    // The deduped dataset's row figures, a part at a time and merged: those of all its parts read at once.
    const ranks = await rowStatsOf(parts.map((p) => path.join(folder, p.file)));
    const local = inFolder.parts.map((p) => path.join(folder, p.file));
    const { time: _time, origin: _origin, ...expected } = await rowStatsOf(local);
    for (const where of [jobRoot(folder), scratch]) {
      const stats = await dedupedStats(where, ranks, where === scratch ? inBucket : inFolder);
      expect({ ...stats, time: undefined, origin: undefined, llm: undefined, funnel: undefined }).toEqual({
        ...expected,
        time: undefined,
        origin: undefined,
        llm: undefined,
        funnel: undefined,
      });
    }
    await scratch.dispose();
  }, 120_000);
});
