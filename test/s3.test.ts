import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { startSimulator, type Simulator } from '../llm/simulator/index.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { configureObjectStore, ObjectStore } from '../pipeline/io/object-store/store.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards, type Shard } from '../pipeline/io/shards.js';
import { Ledger } from '../pipeline/ledger.js';
import { runAir, startAir } from './helpers/cli.js';
import { DOLMA, FINEWEB, query, tempDir } from './helpers/duckdb.js';
import {
  s3Client,
  s3Env,
  startS3Server,
  startS3Proxy,
  startStormProxy,
  type S3Server,
} from './helpers/s3-server.js';

// A real S3-compatible server (s3rver) on 127.0.0.1, started here; air runs as a child process against it.

let dir: string;
let cleanup: () => Promise<void>;
let s3: S3Server;
let sim: Simulator;
let store: ObjectStore;
/** The local copy of the input, laid out as under s3://data/web/. */
let local: string;

const env = (): NodeJS.ProcessEnv => ({ ...process.env, ...s3.env });

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-s3-'));
  s3 = await startS3Server(['data', 'out']);
  sim = await startSimulator({
    models: ['g', 's'],
    maxConcurrentSequences: 64,
    decodeTokensPerSPerSequence: 2000,
    meanReplyTokens: 120,
  });
  store = s3Client(s3, 5);
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  local = path.join(dir, 'web');
  await mkdir(path.join(local, 'fineweb'), { recursive: true });
  // FineWeb rewritten in row groups of 200 rows: the reader stages nine row groups one after another.
  const fineweb = await query(`select id, text, url from read_parquet('${FINEWEB}') order by id`);
  await writeFile(
    path.join(local, 'fineweb/groups.parquet'),
    new Uint8Array(
      parquetWriteBuffer({
        columnData: ['id', 'text', 'url'].map((name, c) => ({
          name,
          data: fineweb.map((row) => String(row[c])),
          type: 'STRING' as const,
        })),
        rowGroupSize: 200,
      }),
    ),
  );
  await copyFile(DOLMA, path.join(local, 'dolma.parquet'));
  // Text that is not UTF-8 in row 120 of row group 1: DuckDB stops there, and the byte reader reads that row
  // group's text from the staged stand-in.
  const words = (i: number): string => Array.from({ length: 60 }, (_, w) => `w${(i * 7 + w) % 97}`).join(' ');
  const texts = Array.from({ length: 250 }, (_, i) => new TextEncoder().encode(`row ${i} ${words(i)}`));
  texts[120] = new Uint8Array([...texts[120]!.subarray(0, 40), 0xff, ...texts[120]!.subarray(40)]);
  await writeFile(
    path.join(local, 'utf8.parquet'),
    new Uint8Array(
      parquetWriteBuffer({
        columnData: [
          { name: 'id', data: texts.map((_, i) => `u${i}`), type: 'STRING' },
          { name: 'text', data: texts, type: 'STRING' },
        ],
        rowGroupSize: 100,
      }),
    ),
  );
  for (const name of ['fineweb/groups.parquet', 'dolma.parquet', 'utf8.parquet']) {
    await store.upload(path.join(local, name), { bucket: 'data', key: `web/${name}` });
  }
});

afterAll(async () => {
  await sim.close();
  store.close();
  await s3.close();
  await cleanup();
});

/**
 * Reads `fineweb/groups.parquet` from the bucket through a recording proxy with the Parquet source (the shard as
 * `shape` makes it, after `settled` rows): the rows read, a balanced ledger, and the bytes of the ranged GETs.
 */
async function readThroughProxy(
  shape: (shard: Shard) => Shard,
  settled?: ReadonlyMap<string, Array<[number, number]>>,
): Promise<{ rows: number[]; read: number; fetched: number; size: number }> {
  const proxy = await startS3Proxy(s3.endpoint);
  const db = await openDuckDB({ threads: 2 });
  configureObjectStore({ endpoint: proxy.endpoint, maxAttempts: 3, uploadConcurrency: 2, multipartMB: 5 });
  try {
    const [shard] = await resolveShards(['s3://data/web/fineweb/groups.parquet']);
    const source = new ParquetSource(db, { shards: [shape(shard!)], textColumn: 'text', metaColumns: [] });
    if (settled !== undefined) source.continueFrom(settled, false);
    const ledger = new Ledger();
    const rows: number[] = [];
    for await (const { ticket, value } of source.read(ledger, new AbortController().signal)) {
      rows.push(value.sourceRow);
      ledger.written(ticket);
    }
    source.close();
    ledger.assertBalanced();
    const fetched = proxy
      .requests()
      .map((r) => /bytes=(\d+)-(\d+)$/.exec(r))
      .reduce((sum, m) => sum + (m === null ? 0 : Number(m[2]) - Number(m[1]) + 1), 0);
    const { size } = await store.head({ bucket: 'data', key: 'web/fineweb/groups.parquet' });
    return { rows, read: ledger.totals().read, fetched, size };
  } finally {
    configureObjectStore({ endpoint: s3.endpoint, maxAttempts: 3, uploadConcurrency: 2, multipartMB: 5 });
    db.closeSync();
    await proxy.close();
  }
}

async function documents(out: string): Promise<unknown[][]> {
  return query(
    `select id, source_file, source_row, text, url from read_parquet('${out}/part-*.parquet') order by all`,
  );
}

describe('s3:// input', () => {
  it('reads shards from a glob in object storage exactly as the same files on disk', async () => {
    const common = ['--method', 'documents', '--progress', 'off', '--part-rows', '500'];
    const fromDisk = await runAir(['run', '--input', local, '--output', path.join(dir, 'disk'), ...common]);
    expect(fromDisk.code, fromDisk.stderr).toBe(0);
    const out = path.join(dir, 'from-s3');
    const fromS3 = await runAir(
      [
        'run',
        '--input',
        's3://data/web/**/*.parquet',
        '--output',
        out,
        '--s3-endpoint',
        s3.endpoint,
        ...common,
      ],
      undefined,
      env(),
    );
    expect(fromS3.code, fromS3.stderr).toBe(0);
    const expected = await documents(path.join(dir, 'disk'));
    expect(expected.length).toBeGreaterThan(1200);
    expect(await documents(out)).toEqual(expected);
    const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as {
      shards: Array<{ shard: string }>;
    };
    expect(ledger.shards.map((s) => s.shard).sort()).toEqual([
      'dolma.parquet',
      'fineweb/groups.parquet',
      'utf8.parquet',
    ]);
    expect(JSON.stringify(ledger)).toContain('"read:invalid_utf8":1');
    // No credential in what the run leaves behind.
    const manifest = await readFile(path.join(out, 'manifest.jsonl'), 'utf8');
    expect(manifest).toContain('etag:');
    expect(manifest + JSON.stringify(ledger)).not.toContain('S3RVER');
  });

  it('air plan lists s3:// inputs with the ETag as each shard identity, and its ranks read them', async () => {
    const root = path.join(dir, 'plan');
    const config = path.join(dir, 'plan.yaml');
    await writeFile(config, `method: documents\nstorage: { endpoint: "${s3.endpoint}" }\n`);
    const planned = await runAir(
      ['plan', '--config', config, '--input', 's3://data/web/', '--output', root, '--world-size', '2'],
      undefined,
      env(),
    );
    expect(planned.code, planned.stderr).toBe(0);
    const plan = JSON.parse(await readFile(path.join(root, 'plan.json'), 'utf8')) as {
      shards: Array<{ label: string; path: string; footerHash: string; rows: number }>;
    };
    expect(plan.shards.map((s) => [s.label, s.path, s.rows])).toEqual([
      ['dolma.parquet', 's3://data/web/dolma.parquet', 727],
      ['fineweb/groups.parquet', 's3://data/web/fineweb/groups.parquet', 1701],
      ['utf8.parquet', 's3://data/web/utf8.parquet', 250],
    ]);
    for (const s of plan.shards) expect(s.footerHash).toMatch(/^etag:[0-9a-f-]+$/);
    // Each rank reads its shards straight from the bucket (the plan's config names the endpoint).
    const ran = await runAir(
      ['run', '--plan', path.join(root, 'plan.json'), '--ranks', '0-1'],
      undefined,
      env(),
    );
    expect(ran.code, ran.stderr).toBe(0);
    const rows = await query(`select count(*) from read_parquet('${root}/ranks/*/part-*.parquet')`);
    expect(Number(rows[0]![0])).toBeGreaterThan(300);
  });

  it('on resume, fetches none of the row groups whose rows are all settled', async () => {
    // Rows 0-1399 (row groups 0-6 of 200 rows) were settled by an earlier run; 1400-1699 only in part.
    const settled = new Map([
      [
        'groups.parquet',
        [
          [0, 1400],
          [1500, 1600],
        ] as Array<[number, number]>,
      ],
    ]);
    const { rows, fetched, size } = await readThroughProxy((shard) => shard, settled);
    expect(rows.length).toBeGreaterThan(100);
    expect(Math.min(...rows)).toBeGreaterThanOrEqual(1400);
    expect(rows.filter((r) => r >= 1500 && r < 1600)).toEqual([]);
    // Bytes fetched by ranged GETs: the head, the footer and row groups 7-8, not the 7 settled ones.
    expect(fetched).toBeLessThan(size * 0.4);
  });

  it('reads a slice of row groups (a queue unit of a big shard), fetching only those row groups', async () => {
    // Row groups 2-4 of 9.
    const { rows, read, fetched, size } = await readThroughProxy((shard) => ({
      ...shard,
      rows: { start: 400, end: 1000 },
    }));
    expect(read).toBe(600);
    expect(rows.length).toBeGreaterThan(300);
    expect(new Set(rows).size).toBe(rows.length);
    expect(Math.min(...rows)).toBeGreaterThanOrEqual(400);
    expect(Math.max(...rows)).toBeLessThan(1000);
    expect(fetched).toBeLessThan(size * 0.45);
  });

  it('refuses to resume over an object replaced since the run, in one line', async () => {
    await store.upload(path.join(local, 'dolma.parquet'), { bucket: 'data', key: 'swap/a.parquet' });
    const out = path.join(dir, 'swap');
    const args = [
      'run',
      '--input',
      's3://data/swap/*.parquet',
      '--output',
      out,
      '--s3-endpoint',
      s3.endpoint,
    ];
    const first = await runAir([...args, '--method', 'documents', '--progress', 'off'], undefined, env());
    expect(first.code, first.stderr).toBe(0);
    await store.upload(path.join(local, 'fineweb/groups.parquet'), { bucket: 'data', key: 'swap/a.parquet' });
    const again = await runAir([...args, '--method', 'documents', '--progress', 'off'], undefined, env());
    expect(again.code).toBe(1);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(again.stderr).toMatch(
      /a\.parquet: the shard changed since the interrupted run \(size, ETag differ\)/,
    );
  });
});

/** A config for the AIR method against the simulator, parts closing every half second. */
async function airConfig(
  name: string,
  input: string,
  output: string,
  workDir?: string,
  inFlight = 16,
): Promise<string> {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(
    file,
    [
      `input: "${input}"`,
      `output: "${output}"`,
      'llm:',
      `  guidance: { baseUrl: "${sim.url}", model: g }`,
      `  student: { baseUrl: "${sim.url}", model: s }`,
      `air: { documentsInFlight: ${inFlight}, refine: { maxIterations: 3 } }`,
      'writer: { partSeconds: 0.5 }',
      'engine: { checkpointSeconds: 0.2 }',
      `storage: { endpoint: "${s3.endpoint}", multipartMB: 5, cacheSnapshotSeconds: 1${workDir === undefined ? '' : `, workDir: "${workDir}"`} }`,
      'progress: "off"',
    ].join('\n'),
  );
  return file;
}

/** The AIR rows of part files: `files` is a glob or a list of paths. */
async function instructions(files: string | readonly string[]): Promise<unknown[][]> {
  const source = typeof files === 'string' ? `'${files}'` : `[${files.map((f) => `'${f}'`).join(', ')}]`;
  return query(`select document_id, depth, instruction from read_parquet(${source}) order by all`);
}

/** Every object under s3://out/<prefix>/, fetched into a fresh local folder. */
async function fetchPrefix(prefix: string, into: string): Promise<string[]> {
  const objects = await store.list(`s3://out/${prefix}/**`);
  for (const object of objects) {
    const file = path.join(into, object.url.key.slice(prefix.length + 1));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, await store.read(object.url, 0, object.size));
  }
  return objects.map((o) => o.url.key.slice(prefix.length + 1)).sort();
}

describe('s3:// output', () => {
  it('uploads a file larger than storage.multipartMB in parts, byte for byte', async () => {
    const big = path.join(dir, 'big.bin');
    const bytes = new Uint8Array(12 * 1024 * 1024 + 123).map((_, i) => (i * 31 + (i >> 12)) & 0xff);
    await writeFile(big, bytes);
    const url = { bucket: 'out', key: 'multipart/big.bin' };
    // Through a proxy that refuses nothing, to see the requests: three parts of at most 5 MiB.
    const proxy = await startStormProxy(s3.endpoint, 0);
    try {
      const viaProxy = new ObjectStore({
        endpoint: proxy.endpoint,
        maxAttempts: 3,
        uploadConcurrency: 2,
        multipartMB: 5,
      });
      await viaProxy.upload(big, url);
      viaProxy.close();
      expect(proxy.requests().filter((r) => /partNumber=\d+/.test(r))).toHaveLength(3);
    } finally {
      await proxy.close();
    }
    const head = await store.head(url);
    expect(head.size).toBe(bytes.length);
    expect(Buffer.from(await store.read(url, 0, head.size)).equals(Buffer.from(bytes))).toBe(true);
  });

  it('killed mid-run and resumed on a fresh local folder from the remote state alone: rows equal an uninterrupted run', async () => {
    const reference = await airConfig(
      'reference',
      's3://data/web/dolma.parquet',
      path.join(dir, 'reference'),
    );
    const clean = await runAir(['run', '--config', reference], undefined, env());
    expect(clean.code, clean.stderr).toBe(0);
    const expected = await instructions(path.join(dir, 'reference/part-*.parquet'));
    expect(expected.length).toBeGreaterThan(10);

    const crashed = await airConfig(
      'crashed',
      's3://data/web/dolma.parquet',
      's3://out/run1/',
      path.join(dir, 'work-a'),
      4, // slower than the reference, so that it is still running when killed (documentsInFlight decides no row)
    );
    const { child, done } = startAir(['run', '--config', crashed], undefined, env());
    // Killed once the remote manifest names a part: the local folder then holds more than the remote one.
    for (;;) {
      const manifest = await store.getText({ bucket: 'out', key: 'run1/manifest.jsonl' });
      if (manifest?.includes('"part":"part-') === true) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    const remoteManifest = (await store.getText({ bucket: 'out', key: 'run1/manifest.jsonl' }))!;
    expect(remoteManifest).not.toContain('"kind":"complete"');
    const named = [...remoteManifest.matchAll(/"part":"(part-\d+\.parquet)"/g)].map((m) => m[1]!);
    for (const part of named)
      expect(await store.exists({ bucket: 'out', key: `run1/${part}` }), part).toBe(true);

    // Another machine: the same config with a new, empty local folder.
    const resumed = await airConfig(
      'resumed',
      's3://data/web/dolma.parquet',
      's3://out/run1/',
      path.join(dir, 'work-b'),
    );
    const again = await runAir(['run', '--config', resumed], undefined, env());
    expect(again.code, again.stderr + again.stdout).toBe(0);
    expect(again.stderr).toMatch(/fetched \d+ files of s3:\/\/out\/run1\//);
    expect(again.stderr).toMatch(/resuming an interrupted run/);

    const fetched = path.join(dir, 'fetched');
    const files = await fetchPrefix('run1', fetched);
    for (const name of [
      'ledger.json',
      'stats.json',
      'report.html',
      'README.md',
      'llm-cache.sqlite',
      'manifest.jsonl',
    ]) {
      expect(files).toContain(name);
    }
    const manifest = await readFile(path.join(fetched, 'manifest.jsonl'), 'utf8');
    expect(manifest).toContain('"kind":"complete"');
    const parts = [...manifest.matchAll(/"part":"(part-\d+\.parquet)"/g)].map((m) =>
      path.join(fetched, m[1]!),
    );
    expect(await instructions(parts)).toEqual(expected);
  });
});

describe('storage errors: one line, or retried', () => {
  const documentsRun = (input: string, output: string, endpoint: string): string[] => [
    'run',
    '--input',
    input,
    '--output',
    output,
    '--s3-endpoint',
    endpoint,
    '--method',
    'documents',
    '--progress',
    'off',
  ];

  it('a missing bucket, for input and for output', async () => {
    const input = await runAir(
      documentsRun('s3://no-such-bucket/web/*.parquet', path.join(dir, 'nb-in'), s3.endpoint),
      undefined,
      env(),
    );
    expect(input.code).toBe(1);
    expect(input.stderr.trim().split('\n')).toEqual([
      `air: s3://no-such-bucket/web/*.parquet: no such bucket at ${s3.endpoint}`,
    ]);
    const output = await runAir(
      documentsRun('s3://data/web/dolma.parquet', 's3://no-such-bucket/run/', s3.endpoint),
      undefined,
      env(),
    );
    expect(output.code).toBe(1);
    expect(output.stderr.trim().split('\n')).toEqual([
      `air: s3://no-such-bucket/run/manifest.jsonl: no such bucket at ${s3.endpoint}`,
    ]);
  });

  it('a bad credential is named as such, and the key appears nowhere', async () => {
    const key = 'AKIAAIRTESTBADKEY0042';
    const secret = 'not-the-secret-0042';
    const result = await runAir(
      documentsRun('s3://data/web/*.parquet', path.join(dir, 'bad-key'), s3.endpoint),
      undefined,
      { ...process.env, ...s3Env(key, secret) },
    );
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/refused the credentials \(InvalidAccessKeyId\)/);
    expect(result.stderr + result.stdout).not.toContain(key);
    expect(result.stderr + result.stdout).not.toContain(secret);
  });

  it('a 503 storm: retried through, or one line once the attempts run out', async () => {
    const storm = await startStormProxy(s3.endpoint, 4);
    try {
      const out = path.join(dir, 'storm');
      const through = await runAir(
        documentsRun('s3://data/web/*.parquet', out, storm.endpoint),
        undefined,
        env(),
      );
      expect(through.code, through.stderr).toBe(0);
      expect(storm.refused()).toBe(4);
      expect((await documents(out)).length).toBeGreaterThan(300);
    } finally {
      await storm.close();
    }
    const endless = await startStormProxy(s3.endpoint, Infinity);
    try {
      const config = path.join(dir, 'storm.yaml');
      await writeFile(config, 'storage: { maxAttempts: 3 }\n');
      const failed = await runAir(
        [
          ...documentsRun('s3://data/web/*.parquet', path.join(dir, 'storm-2'), endless.endpoint),
          '--config',
          config,
        ],
        undefined,
        env(),
      );
      expect(failed.code).toBe(1);
      expect(failed.stderr.trim().split('\n')).toEqual([
        `air: s3://data/web/*.parquet: ${endless.endpoint} kept failing (503 SlowDown) after 3 attempts; try again later`,
      ]);
    } finally {
      await endless.close();
    }
  });
});
