import { rm, writeFile } from 'node:fs/promises';
import { query } from './duckdb.js';

/** Shards with planted duplicates (global dedupe and ranks tests): rows, and copies that dedupe must catch. */
export interface Row {
  id: string;
  text: string;
}

export async function rowsOf(file: string): Promise<Row[]> {
  const rows = await query(
    `SELECT id, text FROM read_parquet('${file}', file_row_number = true) ORDER BY file_row_number`,
  );
  return rows.map(([id, text]) => ({ id: id as string, text: text as string }));
}

export async function writeShard(file: string, rows: readonly Row[]): Promise<void> {
  const jsonl = `${file}.jsonl`;
  await writeFile(jsonl, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  await query(
    `COPY (SELECT id, text FROM read_json('${jsonl}', columns = {id: 'VARCHAR', text: 'VARCHAR'},
      format = 'newline_delimited')) TO '${file}' (FORMAT parquet)`,
  );
  await rm(jsonl);
}

/** Re-formats a text without changing its normalised form. */
export function reformat(text: string): string {
  const upper = text.replace(/[a-z]/g, (c) => c.toUpperCase());
  return `  ${upper.replaceAll(' ', ' \t ').replaceAll('\n', '\n\n')} !!`;
}

/** Replaces a contiguous 5% of the words (J ~0.9 at 5-word shingles). */
export function nearCopy(text: string, tag: string): string {
  const words = text.split(/\s+/);
  const span = Math.max(1, Math.round(words.length * 0.05));
  const start = Math.floor(words.length / 3);
  for (let i = 0; i < span; i++) words[start + i] = `zq${tag}x${i}`;
  return words.join(' ');
}
