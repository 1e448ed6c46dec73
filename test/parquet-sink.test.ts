import { readdir, readFile } from 'node:fs/promises';
import { parquetReadObjects } from 'hyparquet';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../job/config.js';
import { ParquetSink, type Compression } from '../pipeline/io/parquet-sink.js';
import { emit } from '../pipeline/operator.js';
import { pipeline } from '../pipeline/run.js';
import { defineTable, t, type RowOf } from '../schemas/types.js';
import { query, scalar, tempDir } from './helpers/duckdb.js';
import { CountingSource } from './helpers/memory.js';

/** Every column type the schemas use, nullable and not, nested list<struct> included. */
const everything = defineTable('everything', 1, {
  id: t.string(),
  words: t.int32(),
  big: t.int64(),
  score: t.float64(),
  ok: t.bool(),
  at: t.timestamp(),
  maybe: t.nullable(t.string()),
  tags: t.list(t.string()),
  constraints: t.list(
    t.struct({
      type: t.string(),
      text: t.string(),
      iteration: t.int32(),
      student_check: t.nullable(t.int32()),
    }),
  ),
  usage: t.nullable(t.struct({ prompt: t.int64(), completion: t.int64() })),
});
type Row = RowOf<typeof everything>;

function rowFor(n: number): Row {
  return {
    id: `doc-${n}`,
    words: n * 3,
    big: 2n ** 40n + BigInt(n),
    score: n / 7,
    ok: n % 2 === 0,
    at: new Date(Date.UTC(2024, 0, 1) + n * 1000),
    maybe: n % 3 === 0 ? null : `m${n}`,
    tags: Array.from({ length: n % 4 }, (_, i) => `tag${i}`),
    constraints: Array.from({ length: n % 3 }, (_, i) => ({
      type: i === 0 ? 'tone' : 'length',
      text: `constraint ${i} of ${n} — ünïcödé`,
      iteration: i + 1,
      student_check: i === 0 ? null : 2,
    })),
    usage: n % 5 === 0 ? null : { prompt: BigInt(n * 10), completion: n },
  };
}

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterAll(async () => {
  await cleanup();
});

async function writeRows(out: string, count: number, partRows: number, compression: Compression = 'zstd') {
  const sink = new ParquetSink<number>({
    dir: out,
    schema: everything,
    toRow: rowFor,
    partRows,
    partBytes: 1e12,
    compression,
    rowGroupRows: 1000,
    rowGroupBytes: 1e12,
  });
  const report = await pipeline(new CountingSource(count))
    .pipe({ name: 'id', process: (n: number) => emit(n) })
    .into(sink)
    .run();
  return { report, sink };
}

describe('ParquetSink', () => {
  it('round-trips every column type, nested list<struct> as a real LIST of STRUCT', async () => {
    const out = path.join(dir, 'roundtrip');
    const { report } = await writeRows(out, 50, 1000);
    expect(report.status).toBe('completed');
    const types = await query(`describe select * from read_parquet('${out}/*.parquet')`);
    const typeOf = Object.fromEntries(types.map((r) => [r[0], r[1]]));
    expect(typeOf).toMatchObject({
      id: 'VARCHAR',
      words: 'INTEGER',
      big: 'BIGINT',
      score: 'DOUBLE',
      ok: 'BOOLEAN',
      at: 'TIMESTAMP WITH TIME ZONE',
      maybe: 'VARCHAR',
      tags: 'VARCHAR[]',
      constraints: 'STRUCT("type" VARCHAR, "text" VARCHAR, iteration INTEGER, student_check INTEGER)[]',
      usage: 'STRUCT(prompt BIGINT, completion BIGINT)',
    });
    const rows = await query(
      `select id, words, big, score, ok, epoch_ms("at"), maybe, tags, constraints, usage from read_parquet('${out}/*.parquet') order by words`,
    );
    expect(rows).toHaveLength(50);
    rows.forEach((r, n) => {
      const e = rowFor(n);
      expect(r[0]).toBe(e.id);
      expect(r[1]).toBe(e.words);
      expect(r[2]).toBe(e.big);
      expect(r[3]).toBeCloseTo(e.score as number, 12);
      expect(r[4]).toBe(e.ok);
      expect(Number(r[5])).toBe(e.at.getTime());
      expect(r[6]).toBe(e.maybe);
      expect(r[7]).toEqual(e.tags);
      expect(r[8]).toEqual(e.constraints);
      expect(r[9]).toEqual(
        e.usage === null ? null : { prompt: e.usage.prompt, completion: BigInt(e.usage.completion) },
      );
    });
  });

  it('rolls part files at partRows, names them in sequence and leaves no temporary file', async () => {
    const out = path.join(dir, 'rolling');
    const { report, sink } = await writeRows(out, 2500, 1000, 'snappy');
    const files = (await readdir(out)).sort();
    expect(files).toEqual(['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']);
    expect(sink.parts.map((p) => p.rows)).toEqual([1000, 1000, 500]);
    expect(Number(await scalar(`select count(*) from read_parquet('${out}/*.parquet')`))).toBe(
      report.totals.rowsWritten,
    );
    expect(Number(await scalar(`select count(distinct id) from read_parquet('${out}/*.parquet')`))).toBe(
      2500,
    );
    const codecs = await query(
      `select distinct compression from parquet_metadata('${out}/part-00000.parquet')`,
    );
    expect(codecs.flat()).toEqual(['SNAPPY']);
  });

  for (const codec of ['gzip', 'brotli', 'uncompressed'] as const) {
    it(`writes ${codec} parts that DuckDB reads back`, async () => {
      const out = path.join(dir, `codec-${codec}`);
      await writeRows(out, 300, 1000, codec);
      const codecs = await query(
        `select distinct compression from parquet_metadata('${out}/part-00000.parquet')`,
      );
      expect(codecs.flat()).toEqual([codec.toUpperCase()]);
      expect(Number(await scalar(`select count(distinct id) from read_parquet('${out}/*.parquet')`))).toBe(
        300,
      );
    });
  }

  it('is read the same by an independent reader (hyparquet, a JS implementation of the spec)', async () => {
    const out = path.join(dir, 'hyparquet');
    await writeRows(out, 40, 1000, 'snappy');
    const bytes = await readFile(path.join(out, 'part-00000.parquet'));
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const rows = (await parquetReadObjects({ file })) as Array<Record<string, unknown>>;
    expect(rows).toHaveLength(40);
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const n of [0, 1, 5, 7, 39]) {
      const expected = rowFor(n);
      const row = byId.get(expected.id)!;
      expect(row.words).toBe(expected.words);
      expect(row.big).toBe(expected.big);
      expect(row.maybe).toBe(expected.maybe);
      expect(row.tags).toEqual(expected.tags);
      expect(row.constraints).toEqual(expected.constraints);
      expect((row.at as Date).getTime()).toBe(expected.at.getTime());
    }
  });

  it('splits a part into row groups of rowGroupRows', async () => {
    const out = path.join(dir, 'groups');
    const sink = new ParquetSink<number>({
      dir: out,
      schema: everything,
      toRow: rowFor,
      partRows: 10_000,
      partBytes: 1e12,
      compression: 'zstd',
      rowGroupRows: 700,
      rowGroupBytes: 1e12,
    });
    await pipeline(new CountingSource(2500)).into(sink).run();
    const groups = await query(
      `select row_group_id, any_value(row_group_num_rows) from parquet_metadata('${out}/part-00000.parquet') group by 1 order by 1`,
    );
    expect(groups.map((g) => Number(g[1]))).toEqual([700, 700, 700, 400]);
  });

  it('writes zstd when the run config does not say otherwise', async () => {
    const out = path.join(dir, 'zstd');
    const { writer } = parseRunConfig({ input: 'x.parquet', output: out });
    await writeRows(out, 10, 100, writer.compression);
    const codecs = await query(
      `select distinct compression from parquet_metadata('${out}/part-00000.parquet')`,
    );
    expect(codecs.flat()).toEqual(['ZSTD']);
  });

  it('fails a record whose row does not fit the schema, names the column, and keeps the run going', async () => {
    const out = path.join(dir, 'invalid');
    const logs: string[] = [];
    const sink = new ParquetSink<number>({
      dir: out,
      schema: everything,
      toRow: (n) => (n === 7 ? { ...rowFor(n), words: 'seven' } : rowFor(n)),
      partRows: 100,
      partBytes: 1e12,
      compression: 'zstd',
      rowGroupRows: 1000,
      rowGroupBytes: 1e12,
    });
    const report = await pipeline(new CountingSource(20))
      .into(sink, { log: (l) => logs.push(l) })
      .run();
    expect(report.status).toBe('completed');
    expect(report.totals).toMatchObject({ read: 20, written: 19, failed: { 'write:AIR_ROW_INVALID': 1 } });
    expect(logs.join('\n')).toMatch(
      /row 7, stage write: AIR_ROW_INVALID: column "words": expected a 32-bit integer/,
    );
    expect(Number(await scalar(`select count(*) from read_parquet('${out}/*.parquet')`))).toBe(19);
  });

  it('refuses an output folder that already holds part files', async () => {
    const out = path.join(dir, 'rolling');
    const { report } = await writeRows(out, 10, 100);
    expect(report.status).toBe('failed');
    expect(report.error).toMatch(/already holds 3 part files/);
  });
});
