import { describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import {
  decodeUtf8,
  firstInvalidUtf8,
  invalidUtf8Preview,
  rawStringColumn,
} from '../pipeline/io/raw-string-column.js';
import { seededRandom } from '../pipeline/random.js';

describe('the UTF-8 check of raw text bytes', () => {
  it('agrees with the platform decoder on random and near-valid byte strings', () => {
    const random = seededRandom(7);
    const valid = new TextEncoder().encode('plain ascii, é, ✓, 𝄞 and more');
    let invalid = 0;
    for (let n = 0; n < 20_000; n++) {
      const bytes =
        n % 2 === 0
          ? Uint8Array.from({ length: 1 + Math.floor(random() * 12) }, () => Math.floor(random() * 256))
          : valid.map((b, i) => (i === n % valid.length ? Math.floor(random() * 256) : b));
      const decoded = decodeUtf8(bytes);
      expect(firstInvalidUtf8(bytes) === -1, `${Array.from(bytes)}`).toBe(decoded !== undefined);
      if (decoded === undefined) invalid++;
    }
    expect(invalid).toBeGreaterThan(5_000);
  });

  it('shows the bytes around the first invalid sequence as DuckDB does', () => {
    const bytes = new Uint8Array([...new TextEncoder().encode('say hi'), 0xff, 0xfe, 0x20, 0x6f, 0x6b]);
    expect(firstInvalidUtf8(bytes)).toBe(6);
    expect(invalidUtf8Preview(bytes)).toBe('say hi\\xFF\\xFE ok');
    // Overlong, surrogate and truncated sequences are invalid; a four-byte character is not.
    expect(firstInvalidUtf8(new Uint8Array([0xc0, 0xaf]))).toBe(0);
    expect(firstInvalidUtf8(new Uint8Array([0x41, 0xed, 0xa0, 0x80]))).toBe(1);
    expect(firstInvalidUtf8(new Uint8Array([0x41, 0xe2, 0x9c]))).toBe(1);
    expect(firstInvalidUtf8(new Uint8Array([0xf0, 0x9d, 0x84, 0x9e]))).toBe(-1);
  });
});

describe('the text column read as bytes', () => {
  it('gives each row its stored bytes from any row on, and refuses a row group larger than its budget', async () => {
    const file = path.join(os.tmpdir(), `air-raw-${process.pid}.parquet`);
    const texts = Array.from({ length: 250 }, (_, i) =>
      new TextEncoder().encode(`row ${i} `.repeat(1 + (i % 5))),
    );
    texts[120] = new Uint8Array([0x68, 0x69, 0xff]);
    const buffer = parquetWriteBuffer({
      columnData: [{ name: 'text', data: texts, type: 'STRING' }],
      rowGroupSize: 100,
    });
    await writeFile(file, new Uint8Array(buffer));
    const read: Array<{ row: number; bytes: Uint8Array | null }> = [];
    for await (const value of rawStringColumn(file, 'text', 95, 2 ** 20)) read.push(value);
    expect(read.map((r) => r.row)).toEqual(Array.from({ length: 155 }, (_, i) => 95 + i));
    for (const { row, bytes } of read) expect(bytes).toEqual(texts[row]);
    const small = rawStringColumn(file, 'text', 0, 500);
    await expect(small.next()).rejects.toThrow(
      /reading it as bytes would inflate row group 0 to .* over the 500 bytes of engine\.duckdbMemoryMB/,
    );
  });
});
