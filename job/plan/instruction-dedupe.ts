import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { createMinHashPool, nearDedupe, type NearDedupe } from '../../operators/dedupe/near-dedupe.js';
import { openDuckDB, sqlString } from '../../pipeline/io/duckdb.js';
import { writeAtomically } from '../../pipeline/io/files.js';
import type { Outcome } from '../../pipeline/operator.js';
import type { PartEntry } from '../run-ledger.js';
import { jobRoot } from './job-root.js';

/** Where `air merge` writes the cross-rank instruction dedupe: the drop list and the rewritten parts. */
export const MERGE_DEDUPE_DIR = 'instruction-dedupe';
export const MERGE_DROPS_FILE = 'drops.jsonl';

/** One row `air merge` dropped: where it is in the ranks' output, and the kept row it repeats. */
export interface MergeDrop {
  /** The rank's part file, relative to the root. */
  readonly file: string;
  /** Row number in that file (0-based). */
  readonly row: number;
  /** `document_id@depth`, as instruction dedupe names rows. */
  readonly id: string;
  readonly duplicateOf: string;
}

export interface MergeDedupeResult {
  /** Rows compared. */
  readonly rows: number;
  readonly drops: number;
  /** Documents every row of which was dropped (the ledger counts them as dropped documents). */
  readonly documentsDropped: number;
  /** The deduped dataset: the ranks' parts without drops as they are, the others rewritten. */
  readonly parts: readonly PartEntry[];
  /** Parts rewritten under `instruction-dedupe/parts/`. */
  readonly rewritten: number;
  /** The drop list, relative to the root. */
  readonly dropFile: string;
  /** Bytes the LSH index held at the end (kept instructions). */
  readonly indexBytes: number;
}

interface InstructionRow {
  readonly row: number;
  readonly documentId: string;
  readonly depth: number;
  readonly instruction: string;
}

export interface MergeDedupeOptions {
  readonly threshold: number;
  /** MinHash worker threads (default 2). */
  readonly threads?: number;
  readonly signal?: AbortSignal;
  /** A bucket root's local folder goes under here (the plan's storage.workDir; the same as merge's). */
  readonly workDir?: string;
}

/**
 * Instruction dedupe across ranks. Each rank deduped its own instructions as a single run does; here the rows of
 * all ranks go through one more instruction dedupe stage in rank order, part order and row order, so a row is
 * dropped when it near-duplicates a row of an earlier rank (or an earlier row of its own rank, which the rank's
 * own stage already removed). Ranks' parts are left untouched: drops go to a list, and only parts with drops are
 * rewritten, under `<root>/instruction-dedupe/parts/`; the result names the deduped dataset's parts.
 * Memory: the stage's LSH index, ~290-450 bytes per kept instruction, plus the drop list. A bucket root's parts
 * come down one at a time (disk: one part, and one rewritten part), and what merge writes goes up.
 */
export async function dedupeInstructionsAcrossRanks(
  location: string,
  parts: readonly PartEntry[],
  options: MergeDedupeOptions,
): Promise<MergeDedupeResult> {
  const signal = options.signal ?? new AbortController().signal;
  const pool = createMinHashPool(options.threads ?? 2);
  const stage = nearDedupe<InstructionRow>({
    name: 'instruction_dedupe',
    threshold: options.threshold,
    textOf: (r) => r.instruction,
    idOf: (r) => `${r.documentId}@${r.depth}`,
    pool,
  });
  const db = await openDuckDB({ threads: 2 });
  const conn = await db.connect();
  const files = jobRoot(location, options.workDir);
  const root = files.localDir;
  const outDir = path.join(root, MERGE_DEDUPE_DIR);
  try {
    // A merge run again starts from nothing: the drop list and rewritten parts are derived data.
    await rm(outDir, { recursive: true, force: true });
    await mkdir(path.join(outDir, 'parts'), { recursive: true });
    const drops: MergeDrop[] = [];
    const counts = { rows: 0, documentsDropped: 0 };
    const deduped: PartEntry[] = [];
    for (const part of parts) {
      await files.pull(part.file);
      const partDrops = await dedupePart(conn, root, part, stage, signal, counts);
      drops.push(...partDrops);
      if (partDrops.length === 0) deduped.push(part);
      else {
        const rewritten = await rewritePart(conn, root, part, partDrops, outDir);
        await files.push(rewritten.file);
        await files.release(rewritten.file);
        deduped.push(rewritten);
      }
      await files.release(part.file);
    }
    const dropFile = path.join(outDir, MERGE_DROPS_FILE);
    await writeAtomically(dropFile, drops.map((d) => `${JSON.stringify(d)}\n`).join(''));
    await files.push(relativeTo(root, dropFile));
    return {
      rows: counts.rows,
      drops: drops.length,
      documentsDropped: counts.documentsDropped,
      parts: deduped,
      rewritten: deduped.filter((p, i) => p !== parts[i]).length,
      dropFile: relativeTo(root, dropFile),
      indexBytes: stage.bytes,
    };
  } finally {
    conn.closeSync();
    db.closeSync();
    await pool.close();
  }
}

/**
 * One part's rows through the stage, a DuckDB chunk at a time, in row order. A document's rows are written
 * together (one record gives all its depths), so a run of equal document ids is one document: it counts as
 * dropped when every one of its rows was.
 */
async function dedupePart(
  conn: DuckDBConnection,
  root: string,
  part: PartEntry,
  stage: NearDedupe<InstructionRow>,
  signal: AbortSignal,
  counts: { rows: number; documentsDropped: number },
): Promise<MergeDrop[]> {
  const file = path.join(root, part.file);
  const result = await conn.stream(
    `SELECT file_row_number, document_id::VARCHAR, depth::INTEGER, instruction::VARCHAR
     FROM read_parquet(${sqlString(file)}, file_row_number = true) ORDER BY file_row_number`,
  );
  const ctx = { signal, count: (): void => {} };
  const drops: MergeDrop[] = [];
  let current: { id: string; rows: number; dropped: number } | undefined;
  const endDocument = (): void => {
    if (current !== undefined && current.rows === current.dropped) counts.documentsDropped++;
  };
  for (;;) {
    const chunk = await result.fetchChunk();
    if (chunk === null || chunk.rowCount === 0) break;
    const rows: InstructionRow[] = chunk.getRows().map(([row, id, depth, instruction]) => ({
      row: Number(row),
      documentId: String(id),
      depth: Number(depth),
      instruction: String(instruction ?? ''),
    }));
    const outcomes: Array<Outcome<InstructionRow>> = await stage.processBatch(rows, ctx);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      const outcome = outcomes[i]!;
      if (current?.id !== r.documentId) {
        endDocument();
        current = { id: r.documentId, rows: 0, dropped: 0 };
      }
      current.rows++;
      if (outcome.kind === 'fail') {
        throw new Error(`${file}: row ${r.row}: instruction dedupe failed`, { cause: outcome.error });
      }
      if (outcome.kind !== 'drop') continue;
      current.dropped++;
      drops.push({
        file: part.file,
        row: r.row,
        id: `${r.documentId}@${r.depth}`,
        duplicateOf: String(outcome.duplicateOf ?? ''),
      });
    }
    counts.rows += rows.length;
  }
  endDocument();
  return drops;
}

/** Writes the part without its dropped rows (same columns, same order) and returns it as a dataset part. */
async function rewritePart(
  conn: DuckDBConnection,
  root: string,
  part: PartEntry,
  drops: readonly MergeDrop[],
  outDir: string,
): Promise<PartEntry> {
  // ranks/00003/part-00001.parquet → parts/00003-part-00001.parquet: unique, and sorts as the ranks do.
  const name = part.file.split('/').slice(-2).join('-');
  const target = path.join(outDir, 'parts', name);
  const temp = `${target}.tmp`;
  const rows = drops.map((d) => d.row).join(', ');
  await conn.run(
    `COPY (SELECT * EXCLUDE (file_row_number)
           FROM read_parquet(${sqlString(path.join(root, part.file))}, file_row_number = true)
           WHERE file_row_number NOT IN (${rows}) ORDER BY file_row_number)
     TO ${sqlString(temp)} (FORMAT parquet, COMPRESSION zstd)`,
  );
  await rename(temp, target);
  return { file: relativeTo(root, target), rows: part.rows - drops.length };
}

function relativeTo(root: string, file: string): string {
  return path.relative(root, file).split(path.sep).join('/');
}
