import { open } from 'node:fs/promises';
import type { DuckDBConnection } from '@duckdb/node-api';
import { ParquetInputError, type AirErrorCode } from '../errors.js';
import { duckdbMessage, sqlString } from './duckdb.js';

export interface ParquetColumn {
  readonly name: string;
  /** DuckDB's logical type, e.g. VARCHAR, BIGINT, STRUCT(...). */
  readonly type: string;
}

export interface ParquetFooter {
  readonly rows: number;
  /** Rows in each row group, in file order. */
  readonly rowGroups: readonly number[];
  readonly columns: readonly ParquetColumn[];
}

const MAGIC = 'PAR1';
const ENCRYPTED_MAGIC = 'PARE';
const ENCRYPTED_DETAIL =
  'the file is encrypted (Parquet modular encryption); air reads unencrypted files only';

/**
 * Reads a shard's footer: row count, row groups and top-level columns. Fails with one line naming the
 * file for anything that is not a readable Parquet file.
 */
export async function inspectParquet(
  conn: DuckDBConnection,
  file: string,
  binaryAsString: boolean,
): Promise<ParquetFooter> {
  await checkMagic(file);
  try {
    const groups = await conn.runAndReadAll(
      `SELECT row_group_id, any_value(row_group_num_rows) AS n FROM parquet_metadata(${sqlString(file)}) ` +
        `GROUP BY row_group_id ORDER BY row_group_id`,
    );
    const rowGroups = groups.getRowsJS().map((r) => Number(r[1]));
    const described = await conn.runAndReadAll(
      `DESCRIBE SELECT * FROM read_parquet(${sqlString(file)}, binary_as_string=${binaryAsString})`,
    );
    const columns = described.getRowsJS().map((r) => ({ name: String(r[0]), type: String(r[1]) }));
    return { rows: rowGroups.reduce((a, b) => a + b, 0), rowGroups, columns };
  } catch (error) {
    throw classifyReadError(file, error);
  }
}

/** Tells "not Parquet at all" from "truncated" before DuckDB reports both as missing magic bytes. */
async function checkMagic(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(4);
    const tail = Buffer.alloc(4);
    if (size >= 4) await handle.read(head, 0, 4, 0);
    if (size >= 8) await handle.read(tail, 0, 4, size - 4);
    if (size === 0)
      throw new ParquetInputError('AIR_PARQUET_NOT_PARQUET', file, 'not a Parquet file (empty)');
    // Files with an encrypted footer carry PARE instead of PAR1.
    if (head.toString('latin1') === ENCRYPTED_MAGIC || tail.toString('latin1') === ENCRYPTED_MAGIC) {
      throw new ParquetInputError('AIR_PARQUET_ENCRYPTED', file, ENCRYPTED_DETAIL);
    }
    if (head.toString('latin1') !== MAGIC) {
      throw new ParquetInputError(
        'AIR_PARQUET_NOT_PARQUET',
        file,
        'not a Parquet file (no PAR1 magic at start)',
      );
    }
    if (size < 12 || tail.toString('latin1') !== MAGIC) {
      throw new ParquetInputError(
        'AIR_PARQUET_CORRUPT',
        file,
        `truncated Parquet file (${size} bytes, footer missing): was it copied completely?`,
      );
    }
  } finally {
    await handle.close();
  }
}

/** DuckDB's error for a string value that is not UTF-8 (it cannot read past one; see rawStringColumn). */
export function isInvalidUtf8Error(error: unknown): boolean {
  return /Invalid string encoding/i.test(duckdbMessage(error));
}

/** Maps a DuckDB read error to one of air's codes, naming the file and (when given) the row group. */
export function classifyReadError(file: string, error: unknown, rowGroup?: number): ParquetInputError {
  if (error instanceof ParquetInputError) return error;
  const message = duckdbMessage(error);
  let code: AirErrorCode = 'AIR_PARQUET_CORRUPT';
  let detail = message;
  if (/encrypted/i.test(message)) {
    code = 'AIR_PARQUET_ENCRYPTED';
    detail = ENCRYPTED_DETAIL;
  } else if (isInvalidUtf8Error(error)) {
    const value = /value "(.{0,80})/.exec(message)?.[1] ?? '';
    detail =
      `text that is not valid UTF-8 (${value.replace(/" is not valid UTF8!?$/, '')}...); DuckDB cannot read ` +
      'past it, so the shard stops here: re-encode the shard or leave it out';
  } else if (/out of memory|memory limit|failed to allocate/i.test(message)) {
    detail =
      `a page too large for the Parquet reader's memory limit (${stripPath(message, file)}); ` +
      'raise engine.duckdbMemoryMB if the file is trusted';
  } else if (/magic bytes|too small to be a Parquet/i.test(message)) {
    code = 'AIR_PARQUET_NOT_PARQUET';
    detail = `not a readable Parquet file (${stripPath(message, file)})`;
  } else {
    detail = `corrupt Parquet data (${stripPath(message, file)})`;
  }
  const where = rowGroup === undefined ? '' : ` in row group ${rowGroup}`;
  return new ParquetInputError(code, file, `${detail}${where}`, { cause: error });
}

function stripPath(message: string, file: string): string {
  return message
    .replaceAll(`"${file}"`, 'the file')
    .replaceAll(`'${file}'`, 'the file')
    .replaceAll(file, 'the file');
}
