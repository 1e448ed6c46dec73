import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, type Compressors } from 'hyparquet';
import { decompress as zstdDecompress } from 'zstd-napi';

/** One row's bytes as stored; null for a null value. */
export interface RawValue {
  readonly row: number;
  readonly bytes: Uint8Array | null;
}

/** Snappy is built into hyparquet; LZ4 is not offered (no maintained Node codec here), and says so. */
const COMPRESSORS: Compressors = {
  ZSTD: (input) => zstdDecompress(input),
  GZIP: (input) => gunzipSync(input),
  BROTLI: (input) => brotliDecompressSync(input),
};

/**
 * The bytes of one top-level string column, row group by row group, never decoded as UTF-8. DuckDB stops at
 * the first invalid UTF-8 value of a row group and cannot read past it (its Parquet reader validates every
 * string; the option to relax that is newer than our binding), so the source reads the text column of the
 * rest of such a shard here and judges each value itself. Memory: one row group of the column at a time.
 */
export async function* rawStringColumn(
  file: string,
  column: string,
  fromRow: number,
): AsyncGenerator<RawValue> {
  const buffer = await asyncBufferFromFile(file);
  const metadata = await parquetMetadataAsync(buffer);
  let start = 0;
  for (const group of metadata.row_groups) {
    const end = start + Number(group.num_rows);
    if (end > fromRow) {
      const rowStart = Math.max(start, fromRow);
      const rows = await parquetReadObjects({
        file: buffer,
        metadata,
        columns: [column],
        rowStart,
        rowEnd: end,
        compressors: COMPRESSORS,
        // Keep the stored bytes: the caller decides what invalid UTF-8 means.
        parsers: { stringFromBytes: (bytes: Uint8Array | undefined) => bytes as unknown as string },
      });
      for (let i = 0; i < rows.length; i++) {
        const value: unknown = rows[i]![column];
        yield { row: rowStart + i, bytes: value instanceof Uint8Array ? value : null };
      }
    }
    start = end;
  }
}

const STRICT = new TextDecoder('utf-8', { fatal: true });

/** The text of valid UTF-8 bytes, or undefined. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return STRICT.decode(bytes);
  } catch {
    return undefined;
  }
}

/** The bytes around the first invalid sequence, as DuckDB shows them (`hi\xFF\xFE ok`). */
export function invalidUtf8Preview(bytes: Uint8Array, width = 24): string {
  const at = Math.max(0, firstInvalidUtf8(bytes));
  const from = Math.max(0, at - 8);
  let out = '';
  for (const byte of bytes.subarray(from, Math.min(bytes.length, from + width))) {
    out +=
      byte >= 0x20 && byte < 0x7f
        ? String.fromCharCode(byte)
        : `\\x${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Index of the first byte that starts no valid UTF-8 sequence (RFC 3629), or -1 when all are valid. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    const need = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
    if (need === 0 || i + need >= n) return i;
    // The second byte's range excludes overlong forms, surrogates and code points past U+10FFFF.
    const lo = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const hi = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    const second = bytes[i + 1]!;
    if (second < lo || second > hi) return i;
    for (let k = 2; k <= need; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    i += need + 1;
  }
  return -1;
}
