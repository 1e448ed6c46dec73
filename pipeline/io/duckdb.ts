import { DuckDBInstance } from '@duckdb/node-api';

/**
 * DuckDB is air's Parquet reader (measured choice: see bench/RESULTS.md; the writer is hyparquet-writer). It
 * streams a row group in bounded memory and decompresses on its own threads, off the event loop.
 */
export interface DuckDBOptions {
  /** DuckDB worker threads (decompression and decoding). */
  threads?: number;
  /** Upper bound of DuckDB's own buffer memory, e.g. "512MB". */
  memoryLimit?: string;
}

export async function openDuckDB(options: DuckDBOptions = {}): Promise<DuckDBInstance> {
  const config: Record<string, string> = {};
  if (options.threads !== undefined) config.threads = String(options.threads);
  if (options.memoryLimit !== undefined) config.memory_limit = options.memoryLimit;
  return DuckDBInstance.create(':memory:', config);
}

/** A SQL string literal. File paths go into table functions that take no prepared parameters. */
export function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** A quoted SQL identifier, for column names that may contain anything. */
export function sqlIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** DuckDB prefixes messages with the error class and may append a SQL excerpt; keep the first line. */
export function duckdbMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const first = text.split('\n')[0] ?? text;
  return first.replace(/^[A-Za-z ]+ Error: /, '').trim();
}
