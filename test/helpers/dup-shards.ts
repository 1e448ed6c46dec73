import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { DOLMA, FINEWEB, query, SAMPLE } from './duckdb.js';

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

const long = (r: Row): boolean => {
  const n = r.text.split(/\s+/).length;
  return n >= 100 && n <= 1500;
};

/**
 * The ranks tests' input folder: the shared FineWeb and Dolma samples, the bundled sample, and two generated
 * shards of planted copies. aa-gen sorts first, so its copies are the originals and the FineWeb rows the
 * duplicates; gen-z sorts after the web shards, so its copies are the duplicates. 25 exact copies (re-formatted
 * where that keeps the normalised text) and 30 near-copies at Jaccard ~0.9.
 */
export async function writePlantedInput(input: string): Promise<void> {
  await mkdir(input, { recursive: true });
  for (const f of [FINEWEB, DOLMA, SAMPLE]) await copyFile(f, path.join(input, path.basename(f)));
  const fineweb = (await rowsOf(FINEWEB)).filter(long);
  const dolma = (await rowsOf(DOLMA)).filter(long);
  const first: Row[] = [];
  for (let i = 0; i < 15; i++) first.push({ id: `aa-near-${i}`, text: nearCopy(fineweb[i]!.text, `a${i}`) });
  for (let i = 15; i < 25; i++) first.push({ id: `aa-exact-${i}`, text: reformat(fineweb[i]!.text) });
  const last: Row[] = [];
  for (let i = 0; i < 15; i++) last.push({ id: `z-near-${i}`, text: nearCopy(dolma[i]!.text, `z${i}`) });
  for (let i = 15; i < 25; i++) last.push({ id: `z-exact-${i}`, text: dolma[i]!.text });
  for (let i = 30; i < 40; i++) last.push({ id: `z-fw-${i}`, text: reformat(fineweb[i]!.text) });
  await writeShard(path.join(input, 'aa-gen.parquet'), first);
  await writeShard(path.join(input, 'gen-z.parquet'), last);
}

/**
 * Rewrites the planted input's FineWeb shard (id, text, url) in row groups of `rows` rows, the same rows in the
 * same order: a big shard that queue mode cuts into slices. Returns its row count.
 */
export async function rewriteFinewebInRowGroups(input: string, rows: number): Promise<number> {
  const data = await query(`SELECT id, text, url FROM read_parquet('${FINEWEB}') ORDER BY file_row_number`);
  const columnData = ['id', 'text', 'url'].map((name, c) => ({
    name,
    data: data.map((r) => String(r[c])),
    type: 'STRING' as const,
  }));
  const buffer = parquetWriteBuffer({ columnData, rowGroupSize: rows });
  await writeFile(path.join(input, path.basename(FINEWEB)), new Uint8Array(buffer));
  return data.length;
}

/** Rank r of a 2-element Slurm array of 2 tasks each: element r / 2, task r % 2 (world size 4). */
export function slurmEnv(rank: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    SLURM_ARRAY_TASK_ID: String(Math.floor(rank / 2)),
    SLURM_ARRAY_TASK_MIN: '0',
    SLURM_ARRAY_TASK_COUNT: '2',
    SLURM_NTASKS: '2',
    SLURM_PROCID: String(rank % 2),
  };
}
