import { mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  listValue,
  structValue,
  timestampValue,
  type DuckDBAppender,
  type DuckDBConnection,
  type DuckDBInstance,
  type DuckDBType,
  type DuckDBValue,
} from '@duckdb/node-api';
import type { ColumnType, TableSchema } from '../../schemas/types.js';
import { AirError } from '../errors.js';
import type { Ticket } from '../ledger.js';
import type { Sink } from '../source.js';
import { duckdbMessage, sqlIdent, sqlString } from './duckdb.js';

export type Compression = 'zstd' | 'snappy' | 'gzip' | 'brotli' | 'lz4_raw' | 'uncompressed';

export interface ParquetSinkOptions<T> {
  /** Output folder; created if missing. */
  readonly dir: string;
  readonly schema: TableSchema;
  /** Turns a record into a row keyed by the schema's column names. */
  readonly toRow: (value: T) => Readonly<Record<string, unknown>>;
  /** A part file is committed once it holds this many rows... */
  readonly partRows: number;
  /** ...or this many bytes of string data (a proxy for its uncompressed size), whichever comes first. */
  readonly partBytes: number;
  readonly compression: Compression;
  /** Rows per Parquet row group inside a part. */
  readonly rowGroupRows: number;
  /** File name prefix: `part` gives part-00000.parquet, part-00001.parquet, ... */
  readonly prefix?: string;
}

export interface CommittedPart {
  readonly file: string;
  readonly rows: number;
}

const TABLE = 'air_part';

/**
 * Writes records into rolling Parquet part files. Rows collect in an in-memory DuckDB table (bounded by
 * partRows/partBytes); a full part is written by DuckDB's COPY under a hidden temporary name, fsynced and
 * renamed, so a file under a final name is always complete. Only then are its rows reported committed.
 */
export class ParquetSink<T> implements Sink<T> {
  readonly name = 'write';
  readonly parts: CommittedPart[] = [];
  private conn: DuckDBConnection | undefined;
  private appender: DuckDBAppender | undefined;
  private columnTypes: DuckDBType[] = [];
  private readonly columns: Array<[string, ColumnType]>;
  private onCommit: (tickets: readonly Ticket[]) => void = () => {};
  private pending: Ticket[] = [];
  private pendingBytes = 0;
  private nextPart = 0;

  constructor(
    private readonly db: DuckDBInstance,
    private readonly options: ParquetSinkOptions<T>,
  ) {
    this.columns = Object.entries(options.schema.fields);
  }

  async open(onCommit: (tickets: readonly Ticket[]) => void): Promise<void> {
    this.onCommit = onCommit;
    await mkdir(this.options.dir, { recursive: true });
    const prefix = this.options.prefix ?? 'part';
    const existing = (await readdir(this.options.dir)).filter(
      (f) => f.startsWith(`${prefix}-`) && f.endsWith('.parquet'),
    );
    if (existing.length > 0) {
      throw new AirError(
        'AIR_USAGE',
        `${this.options.dir}: already holds ${existing.length} part files; write to an empty folder`,
      );
    }
    this.conn = await this.db.connect();
    const columnsSql = this.columns.map(([name, type]) => `${sqlIdent(name)} ${sqlType(type)}`).join(', ');
    await this.conn.run(`CREATE OR REPLACE TEMP TABLE ${TABLE} (${columnsSql})`);
    await this.startPart();
  }

  async write(value: T, ticket: Ticket): Promise<void> {
    const row = this.options.toRow(value);
    const values = this.columns.map(([name, type]) => checkValue(name, type, row[name]));
    const appender = this.appender!;
    for (let i = 0; i < values.length; i++) {
      appendCell(appender, this.columns[i]![1], this.columnTypes[i]!, values[i]);
      this.pendingBytes += stringBytes(values[i]);
    }
    appender.endRow();
    this.pending.push(ticket);
    if (this.pending.length >= this.options.partRows || this.pendingBytes >= this.options.partBytes) {
      await this.commitPart();
      await this.startPart();
    }
  }

  async close(): Promise<void> {
    if (this.conn === undefined) return;
    if (this.pending.length > 0) await this.commitPart();
    else this.appender?.closeSync();
    this.appender = undefined;
    this.conn.closeSync();
    this.conn = undefined;
  }

  async abort(): Promise<void> {
    this.appender = undefined;
    this.conn?.closeSync();
    this.conn = undefined;
    this.pending = [];
  }

  private async startPart(): Promise<void> {
    this.appender = await this.conn!.createAppender(TABLE);
    this.columnTypes = this.columns.map((_, i) => this.appender!.columnType(i));
    this.pending = [];
    this.pendingBytes = 0;
  }

  private async commitPart(): Promise<void> {
    const conn = this.conn!;
    this.appender!.flushSync();
    this.appender!.closeSync();
    this.appender = undefined;
    const name = `${this.options.prefix ?? 'part'}-${String(this.nextPart).padStart(5, '0')}.parquet`;
    const final = path.join(this.options.dir, name);
    const temporary = path.join(this.options.dir, `.${name}.tmp`);
    try {
      await conn.run(
        `COPY ${TABLE} TO ${sqlString(temporary)} (FORMAT parquet, COMPRESSION ${this.options.compression}, ` +
          `ROW_GROUP_SIZE ${this.options.rowGroupRows})`,
      );
      await fsyncPath(temporary);
      await rename(temporary, final);
      await fsyncPath(this.options.dir);
    } catch (error) {
      await rm(temporary, { force: true });
      throw new AirError(
        'AIR_PARQUET_WRITE',
        `${final}: could not write part file: ${duckdbMessage(error)}`,
        {
          cause: error,
        },
      );
    }
    await conn.run(`DELETE FROM ${TABLE}`);
    this.nextPart += 1;
    this.parts.push({ file: final, rows: this.pending.length });
    const committed = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.onCommit(committed);
  }
}

async function fsyncPath(p: string): Promise<void> {
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function sqlType(type: ColumnType): string {
  switch (type.kind) {
    case 'string':
      return 'VARCHAR';
    case 'int32':
      return 'INTEGER';
    case 'int64':
      return 'BIGINT';
    case 'float64':
      return 'DOUBLE';
    case 'bool':
      return 'BOOLEAN';
    case 'timestamp':
      return 'TIMESTAMP';
    case 'list':
      return `${sqlType(type.of)}[]`;
    case 'struct':
      return `STRUCT(${Object.entries(type.fields)
        .map(([name, field]) => `${sqlIdent(name)} ${sqlType(field)}`)
        .join(', ')})`;
  }
}

/** Rejects a value that does not fit its column, naming the column, before anything is appended. */
function checkValue(column: string, type: ColumnType, value: unknown): unknown {
  if (value === null || value === undefined) {
    if (type.nullable) return null;
    throw new AirError('AIR_ROW_INVALID', `column "${column}" is null but not nullable`);
  }
  const bad = (expected: string): never => {
    throw new AirError('AIR_ROW_INVALID', `column "${column}": expected ${expected}, got ${typeof value}`);
  };
  switch (type.kind) {
    case 'string':
      return typeof value === 'string' ? value : bad('a string');
    case 'int32':
      return typeof value === 'number' && Number.isInteger(value) ? value : bad('an integer');
    case 'int64':
      return typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value))
        ? value
        : bad('an integer');
    case 'float64':
      return typeof value === 'number' ? value : bad('a number');
    case 'bool':
      return typeof value === 'boolean' ? value : bad('a boolean');
    case 'timestamp':
      return value instanceof Date && !Number.isNaN(value.getTime()) ? value : bad('a valid Date');
    case 'list':
      return Array.isArray(value)
        ? value.map((item, i) => checkValue(`${column}[${i}]`, type.of, item))
        : bad('an array');
    case 'struct': {
      if (typeof value !== 'object') return bad('an object');
      const record = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const [name, field] of Object.entries(type.fields)) {
        out[name] = checkValue(`${column}.${name}`, field, record[name]);
      }
      return out;
    }
  }
}

function appendCell(appender: DuckDBAppender, type: ColumnType, duckType: DuckDBType, value: unknown): void {
  if (value === null) {
    appender.appendNull();
    return;
  }
  switch (type.kind) {
    case 'string':
      appender.appendVarchar(value as string);
      return;
    case 'int32':
      appender.appendInteger(value as number);
      return;
    case 'int64':
      appender.appendBigInt(BigInt(value as number | bigint));
      return;
    case 'float64':
      appender.appendDouble(value as number);
      return;
    case 'bool':
      appender.appendBoolean(value as boolean);
      return;
    case 'timestamp':
      appender.appendTimestamp(timestampValue(BigInt((value as Date).getTime()) * 1000n));
      return;
    case 'list':
    case 'struct':
      appender.appendValue(toDuckValue(type, value), duckType);
      return;
  }
}

function toDuckValue(type: ColumnType, value: unknown): DuckDBValue {
  if (value === null) return null;
  switch (type.kind) {
    case 'list':
      return listValue((value as unknown[]).map((item) => toDuckValue(type.of, item)));
    case 'struct': {
      const record = value as Record<string, unknown>;
      const entries: Record<string, DuckDBValue> = {};
      for (const [name, field] of Object.entries(type.fields))
        entries[name] = toDuckValue(field, record[name]);
      return structValue(entries);
    }
    case 'timestamp':
      return timestampValue(BigInt((value as Date).getTime()) * 1000n);
    case 'int64':
      return BigInt(value as number | bigint);
    default:
      return value as string | number | boolean;
  }
}

function stringBytes(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((sum: number, v) => sum + stringBytes(v), 0);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.values(value).reduce((sum: number, v) => sum + stringBytes(v), 0);
  }
  return 8;
}
