import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

export const SHARED = path.resolve(import.meta.dirname, '../../../shared');
export const FINEWEB = path.join(SHARED, 'data/web/fineweb-sample.snappy.parquet');
export const DOLMA = path.join(SHARED, 'data/web/dolma-sample.zstd.parquet');
export const SAMPLE = path.resolve(import.meta.dirname, '../../examples/data/sample.parquet');

let shared: Promise<DuckDBConnection> | undefined;

/** One DuckDB connection for tests to make and check Parquet files (independent of air's own instance). */
export function duck(): Promise<DuckDBConnection> {
  shared ??= DuckDBInstance.create(':memory:').then((db) => db.connect());
  return shared;
}

export async function query(sql: string): Promise<unknown[][]> {
  const conn = await duck();
  return (await conn.runAndReadAll(sql)).getRowsJS();
}

export async function scalar(sql: string): Promise<unknown> {
  return (await query(sql))[0]?.[0];
}

/** Writes the result of `select` to a Parquet file with DuckDB's COPY options. */
export async function writeParquet(
  file: string,
  select: string,
  options = 'FORMAT parquet',
): Promise<string> {
  const conn = await duck();
  await conn.run(`COPY (${select}) TO '${file}' (${options})`);
  return file;
}

export async function tempDir(prefix = 'air-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
