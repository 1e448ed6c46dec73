import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { query } from './duckdb.js';

/** Rows of Parquet `files` (paths or globs) as one sortable string each, by a DuckDB expression, sorted. */
async function rowsAs(expression: string, files: readonly string[]): Promise<string[]> {
  const list = files.map((f) => `'${f}'`).join(', ');
  const rows = await query(`SELECT ${expression} FROM read_parquet([${list}]) ORDER BY 1`);
  return rows.map(([r]) => r as string);
}

/** Every written row as `source_file#source_row id`, sorted: a documents run's output compared across runs. */
export function writtenRows(files: readonly string[]): Promise<string[]> {
  return rowsAs(`source_file || '#' || source_row || ' ' || id`, files);
}

/** (document_id, depth, instruction) of every row, sorted: an AIR run's output compared across runs. */
export function instructionRows(files: readonly string[]): Promise<string[]> {
  return rowsAs(`document_id || ' @' || depth || ' ' || instruction`, files);
}

/** The part files a merged job's ledger.json lists, as paths. */
export async function mergedParts(job: string): Promise<string[]> {
  const ledger = JSON.parse(await readFile(path.join(job, 'ledger.json'), 'utf8')) as {
    parts: Array<{ file: string }>;
  };
  return ledger.parts.map((p) => path.join(job, p.file));
}
