import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { ObjectStore } from '../pipeline/io/object-store/store.js';
import { runAir } from './helpers/cli.js';
import { DOLMA, FINEWEB, query, tempDir } from './helpers/duckdb.js';
import { s3Env, startS3Server, type S3Server } from './helpers/s3-server.js';

// A real S3-compatible server (s3rver) on 127.0.0.1, started here; air runs as a child process against it.

let dir: string;
let cleanup: () => Promise<void>;
let s3: S3Server;
let store: ObjectStore;
/** The local copy of the input, laid out as under s3://data/web/. */
let local: string;

const env = (): NodeJS.ProcessEnv => ({ ...process.env, ...s3.env });

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-s3-'));
  s3 = await startS3Server(['data', 'out']);
  Object.assign(process.env, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
  store = new ObjectStore({ endpoint: s3.endpoint, maxAttempts: 3, uploadConcurrency: 4, multipartMB: 5 });
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  Object.assign(process.env, s3.env);
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
  for (const name of ['fineweb/groups.parquet', 'dolma.parquet']) {
    await store.upload(path.join(local, name), { bucket: 'data', key: `web/${name}` });
  }
});

afterAll(async () => {
  store.close();
  await s3.close();
  await cleanup();
});

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
    expect(expected.length).toBeGreaterThan(1000);
    expect(await documents(out)).toEqual(expected);
    const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as {
      shards: Array<{ shard: string }>;
    };
    expect(ledger.shards.map((s) => s.shard).sort()).toEqual(['dolma.parquet', 'fineweb/groups.parquet']);
    // No credential in what the run leaves behind.
    const manifest = await readFile(path.join(out, 'manifest.jsonl'), 'utf8');
    expect(manifest).toContain('etag:');
    expect(manifest + JSON.stringify(ledger)).not.toContain('S3RVER');
  });

  it('air plan lists s3:// inputs, with the ETag as each shard identity', async () => {
    const root = path.join(dir, 'plan');
    const config = path.join(dir, 'plan.yaml');
    await writeFile(config, `storage: { endpoint: "${s3.endpoint}" }\n`);
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
    ]);
    for (const s of plan.shards) expect(s.footerHash).toMatch(/^etag:[0-9a-f-]+$/);
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

export { s3Env };
