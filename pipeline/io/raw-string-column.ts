import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, type Compressors } from 'hyparquet';
import { decompress as zstdDecompress } from 'zstd-napi';
import { ParquetInputError } from '../errors.js';

/** One row's bytes as stored; null for a null value. */
export interface RawValue {
  readonly row: number;
  readonly bytes: Uint8Array | null;
}

/**
 * Decompressors for what hyparquet lacks (snappy is built in; LZ4 is not offered: no maintained Node codec here),
 * each refusing a page that says it inflates past `maxBytes` before allocating it.
 */
function compressors(file: string, maxBytes: number): Compressors {
  const guarded =
    (inflate: (input: Uint8Array) => Uint8Array) =>
    (input: Uint8Array, outputLength: number): Uint8Array => {
      if (outputLength > maxBytes) throw tooLarge(file, `a page of ${mb(outputLength)}`, maxBytes);
      return inflate(input);
    };
  return {
    ZSTD: guarded((input) => zstdDecompress(input)),
    GZIP: guarded((input) => gunzipSync(input)),
    BROTLI: guarded((input) => brotliDecompressSync(input)),
  };
}

const mb = (bytes: number): string =>
  bytes < 1024 * 1024 ? `${bytes} bytes` : `${(bytes / 1024 / 1024).toFixed(0)} MB`;

function tooLarge(file: string, what: string, maxBytes: number): ParquetInputError {
  return new ParquetInputError(
    'AIR_PARQUET_CORRUPT',
    file,
    `the text column holds invalid UTF-8, and reading it as bytes would inflate ${what}, over the ` +
      `${mb(maxBytes)} of engine.duckdbMemoryMB; raise it if the file is trusted`,
  );
}

/**
 * The bytes of one top-level string column, row group by row group, never decoded as UTF-8. DuckDB stops at
 * the first invalid UTF-8 value of a row group and cannot read past it (its Parquet reader validates every
 * string; the option to relax that is newer than our binding), so the source reads the text column of such a
 * row group here and judges each value itself. Memory: one row group of the column at a time, and
 * never more than `maxBytes` of it (checked against the footer and every page header before inflating).
 */
export async function* rawStringColumn(
  file: string,
  column: string,
  fromRow: number,
  maxBytes: number,
): AsyncGenerator<RawValue> {
  const buffer = await asyncBufferFromFile(file);
  const metadata = await parquetMetadataAsync(buffer);
  let start = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const end = start + Number(group.num_rows);
    if (end > fromRow) {
      const chunk = group.columns.find((c) => c.meta_data?.path_in_schema.join('.') === column);
      const inflated = Number(chunk?.meta_data?.total_uncompressed_size ?? 0);
      if (inflated > maxBytes) throw tooLarge(file, `row group ${g} to ${mb(inflated)}`, maxBytes);
      const rowStart = Math.max(start, fromRow);
      const rows = await parquetReadObjects({
        file: buffer,
        metadata,
        columns: [column],
        rowStart,
        rowEnd: end,
        compressors: compressors(file, maxBytes),
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
