import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { compress as zstdCompress } from 'zstd-napi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig, type RunConfigInput } from '../job/config.js';
import { runJob } from '../job/run-job.js';
import { FINEWEB, query, tempDir, writeParquet } from './helpers/duckdb.js';

// Bad inputs made inside the tests: each gives one clear line naming the file (and row group), and the run
// either skips the record with a ledger entry or stops, never losing what it accepted.

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir('air-hostile-')));
afterAll(() => cleanup());

const documents = (input: string | string[], output: string, extra: Partial<RunConfigInput> = {}) =>
  parseRunConfig({
    input,
    output,
    method: 'documents',
    progress: 'off',
    filter: { minWords: 1, maxWords: 10_000_000 },
    ...extra,
  });

const words = (n: number, seed: string) => Array.from({ length: n }, (_, i) => `${seed}${i % 97}`).join(' ');

describe('hostile inputs', () => {
  it('text that is not valid UTF-8 is dropped with its bytes named; the rows around it are read as DuckDB reads them', async () => {
    // Three row groups of 100 rows, zstd pages; row 150 (row group 1) and row 251 hold bytes that are no UTF-8.
    const file = path.join(dir, 'bad-utf8.parquet');
    const encode = (text: string) => new TextEncoder().encode(text);
    const texts = Array.from({ length: 300 }, (_, i) =>
      encode(`document ${i}: ${words(20 + (i % 7), 'w')} é ✓`),
    );
    texts[150] = new Uint8Array([...encode('hi'), 0xff, 0xfe, ...encode(' ok and more words')]);
    texts[251] = new Uint8Array([...encode('cut short '), 0xe2, 0x9c]);
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: 'id', data: texts.map((_, i) => `doc-${i}`), type: 'STRING' },
        { name: 'text', data: texts, type: 'STRING' },
        { name: 'url', data: texts.map((_, i) => `https://example.org/${i}`), type: 'STRING' },
      ],
      rowGroupSize: 100,
      codec: 'ZSTD',
      compressors: { ZSTD: (input: Uint8Array) => zstdCompress(input) },
    });
    await writeFile(file, new Uint8Array(buffer));
    const out = path.join(dir, 'bad-utf8-out');
    // The made-up documents are alike: dedupe would take most of them.
    const noDedupe = { dedupe: { exact: false, near: { enabled: false } } };
    const result = await runJob(documents(file, out, noDedupe));
    expect(result.report.status, result.report.error).toBe('completed');
    expect(result.report.totals.dropped).toEqual({ 'read:invalid_utf8': 2 });
    expect(result.report.totals.written).toBe(298);
    const rows = await query(
      `select id, text, url, source_row from read_parquet('${out}/part-*.parquet') order by source_row`,
    );
    const expected = texts
      .map((bytes, i) => ({ i, bytes }))
      .filter(({ i }) => i !== 150 && i !== 251)
      .map(({ i, bytes }) => [`doc-${i}`, new TextDecoder().decode(bytes), `https://example.org/${i}`, i]);
    expect(rows.map((r) => [r[0], r[1], r[2], Number(r[3])])).toEqual(expected);

    // With badRecords: stop, the first one ends the run in one line naming the row and its bytes.
    const stopped = await runJob(
      documents(file, path.join(dir, 'bad-utf8-stop'), { ...noDedupe, source: { badRecords: 'stop' } }),
    );
    expect(stopped.report.status).toBe('failed');
    expect(stopped.report.error).toMatch(
      /bad-utf8\.parquet: row 150: column "text" is not valid UTF-8 \(hi\\xFF\\xFE ok and more words\.\.\.\)/,
    );
    expect(stopped.report.error!.split('\n')).toHaveLength(1);
  });

  it('invalid UTF-8 in a shard the byte reader cannot read (LZ4) stops with one line saying both', async () => {
    const file = await writeParquet(
      path.join(dir, 'bad-utf8-lz4.parquet'),
      `select 'doc-' || i as id, case when i = 150 then from_hex('6869FFFE206F6B') ` +
        `else encode('document number ' || i || ' with a few more words') end as text from range(300) t(i)`,
      'FORMAT parquet, COMPRESSION lz4, ROW_GROUP_SIZE 100',
    );
    const result = await runJob(
      documents(file, path.join(dir, 'bad-utf8-lz4-out'), { source: { binaryAsString: true } }),
    );
    expect(result.report.status).toBe('failed');
    expect(result.report.error).toMatch(
      /bad-utf8-lz4\.parquet: text that is not valid UTF-8 .*; reading the text column as bytes instead failed too \(.*LZ4/,
    );
    expect(result.report.error!.split('\n')).toHaveLength(1);
  });

  it('invalid UTF-8 in a column other than the text still stops, naming the file and the row group', async () => {
    const file = path.join(dir, 'bad-utf8-id.parquet');
    const good = new TextEncoder().encode('a perfectly fine document');
    const bad = new Uint8Array([0x68, 0x69, 0xff, 0xfe, 0x20, 0x6f, 0x6b]);
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: 'id', data: [good, bad, good], type: 'STRING' },
        { name: 'text', data: [good, good, good], type: 'STRING' },
      ],
    });
    await writeFile(file, new Uint8Array(buffer));
    const result = await runJob(documents(file, path.join(dir, 'bad-utf8-id-out')));
    expect(result.report.status).toBe('failed');
    expect(result.report.error).toMatch(
      /bad-utf8-id\.parquet: text that is not valid UTF-8 \(hi\\xFF\\xFE ok.*in row group 0$/,
    );
    expect(result.report.error!.split('\n')).toHaveLength(1);
  });

  it('a 50 MB document is dropped as too large without being loaded; the others are written', async () => {
    const file = await writeParquet(
      path.join(dir, 'huge.parquet'),
      `select * from (values ('a', '${words(300, 'w')}'), ('b', repeat('long text ', 5 * 1024 * 1024)), ('c', '${words(200, 'v')}')) t(id, text)`,
    );
    const result = await runJob(documents(file, path.join(dir, 'huge-out')));
    expect(result.report.status).toBe('completed');
    expect(result.report.totals.dropped).toEqual({ 'read:too_large': 1 });
    expect(result.report.totals.written).toBe(2);
    // Configured to stop instead: one line naming the file, the row and the column; the ledger still balances.
    const strict = await runJob(
      documents(file, path.join(dir, 'huge-strict'), { source: { badRecords: 'stop' } }),
    );
    expect(strict.report.status).toBe('failed');
    expect(strict.report.error).toMatch(
      /huge\.parquet: row 1: column "text" is 52428800 bytes, over the limit/,
    );
    const t = strict.report.totals;
    expect(t.dropped).toEqual({ 'read:too_large': 1 });
    expect(t.read).toBe(t.written + 1 + t.abandoned);
  });

  it('a decompression bomb (a small file whose page inflates past the reader memory limit) stops the run with one line', async () => {
    const file = await writeParquet(
      path.join(dir, 'bomb.parquet'),
      `select 'ok' as id, '${words(100, 'u')}' as text union all select 'bomb', repeat('z', 300 * 1024 * 1024)`,
      "FORMAT parquet, COMPRESSION 'zstd'",
    );
    expect((await stat(file)).size).toBeLessThan(1024 * 1024);
    // DuckDB decompresses a page whole; with a 256 MB limit the 300 MB page cannot be allocated, so memory stays
    // bounded and the run stops, naming the file, the row group and the setting that would admit a trusted file.
    const result = await runJob(
      documents(file, path.join(dir, 'bomb-out'), { engine: { duckdbMemoryMB: 256 } }),
    );
    expect(result.report.status).toBe('failed');
    expect(result.report.error).toMatch(
      /bomb\.parquet: a page too large for the Parquet reader's memory limit .*raise engine\.duckdbMemoryMB.* in row group 0$/,
    );
    const ledger = JSON.parse(await readFile(result.ledgerFile, 'utf8')) as {
      resources: { peakRssMB: number };
    };
    expect(ledger.resources.peakRssMB).toBeGreaterThan(0);
  });

  it('a document over source.maxDocumentMB whose page fits is dropped, not loaded', async () => {
    const file = await writeParquet(
      path.join(dir, 'big.parquet'),
      `select 'ok' as id, '${words(100, 'u')}' as text union all select 'big', repeat('z', 20 * 1024 * 1024)`,
      "FORMAT parquet, COMPRESSION 'zstd'",
    );
    const result = await runJob(documents(file, path.join(dir, 'big-out')));
    expect(result.report.status, result.report.error).toBe('completed');
    expect(result.report.totals.dropped).toEqual({ 'read:too_large': 1 });
  });

  it('duplicate ids across shards: later ones are dropped, each note naming the id', async () => {
    const shards = path.join(dir, 'dup-ids');
    await mkdir(shards);
    await writeParquet(
      path.join(shards, 'a.parquet'),
      `select 'x' || i as id, '${words(80, 'a')} ' || i as text from range(5) t(i)`,
    );
    await writeParquet(
      path.join(shards, 'b.parquet'),
      `select 'x' || i as id, '${words(80, 'b')} ' || i as text from range(3, 8) t(i)`,
    );
    const out = path.join(dir, 'dup-ids-out');
    // Near dedupe off: these made-up texts are near duplicates of one another.
    const result = await runJob(documents(shards, out, { dedupe: { near: { enabled: false } } }));
    expect(result.report.totals.dropped).toEqual({ 'unique_ids:duplicate_id': 2 });
    const notes = (await readFile(path.join(out, 'duplicates.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(notes.map((n: { duplicateOf: string; shard: string }) => [n.shard, n.duplicateOf])).toEqual([
      ['b.parquet', 'x3'],
      ['b.parquet', 'x4'],
    ]);
  });

  it('a shard listed twice is read once; an empty shard is read as zero rows', async () => {
    const empty = await writeParquet(
      path.join(dir, 'empty.parquet'),
      `select 'x' as id, 'y' as text where false`,
    );
    const copy = path.join(dir, 'fineweb.parquet');
    await copyFile(FINEWEB, copy);
    const result = await runJob(
      documents([copy, copy, dir + '/fineweb.parquet', empty], path.join(dir, 'twice-out')),
    );
    expect(result.report.status).toBe('completed');
    expect(result.report.shards.map((s) => [s.shard, s.read])).toEqual([
      ['empty.parquet', 0],
      ['fineweb.parquet', 1701],
    ]);
  });

  it('two files with one name in different folders are refused, naming both', async () => {
    const a = path.join(dir, 'x', 'same.parquet');
    const b = path.join(dir, 'y', 'same.parquet');
    await mkdir(path.dirname(a), { recursive: true });
    await mkdir(path.dirname(b), { recursive: true });
    await copyFile(FINEWEB, a);
    await copyFile(FINEWEB, b);
    const error = await runJob(documents([a, b], path.join(dir, 'same-out'))).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(
      /two input files are both named "same\.parquet" \(.*x\/same\.parquet, .*y\/same\.parquet\)/,
    );
  });
});
