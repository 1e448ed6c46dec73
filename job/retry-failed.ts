import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { openDuckDB, sqlString } from '../pipeline/io/duckdb.js';
import { ManifestLog, readManifest, MANIFEST_FILE, type Manifest } from '../pipeline/io/manifest.js';
import { AirError } from '../pipeline/errors.js';
import { tallyIn, type ShardTally } from '../pipeline/ledger.js';
import { toRanges, type RowRanges } from '../pipeline/row-ranges.js';
import { parseRunConfig, type RunConfig } from './config.js';

export interface RetryPlan {
  readonly config: RunConfig;
  /** Input rows handed back, by shard label. */
  readonly rows: number;
  readonly byShard: Readonly<Record<string, number>>;
}

interface FailedRow {
  shard: string;
  row: number;
  reason: string;
}

/**
 * Prepares `air retry-failed <dir>`: finds the input rows whose records failed and are still failed (a row
 * that failed again after an earlier retry counts once, a row with any written output never), and appends a
 * `retry` entry to the manifest that hands them back: they are no longer settled and their failures leave
 * the tallies. Running the folder's own config then redoes just those rows (LLM calls answered before come
 * from the cache), while stages with state replay the rest as usual.
 */
export async function prepareRetry(dir: string): Promise<RetryPlan> {
  const manifest = await readManifest(dir);
  if (manifest === undefined)
    throw new AirError('AIR_USAGE', `${dir}: no ${MANIFEST_FILE} here: not an air output folder`);
  const failed = await stillFailedRows(dir, manifest);
  const config = parseRunConfig(
    { ...(manifest.header.config as object), output: dir },
    `${dir}/${MANIFEST_FILE}`,
  );
  const { rows, byShard, tallies } = handBack(failed);
  if (failed.length > 0) {
    await ManifestLog.open(dir, { kind: 'retry', at: new Date().toISOString(), rows, tallies });
  }
  return { config, rows: failed.length, byShard };
}

/**
 * The rows whose records failed and still stand failed: failures of every commit, less the rows a later retry
 * handed back, less any row with written output (retrying it would write that row twice).
 */
async function stillFailedRows(dir: string, manifest: Manifest): Promise<FailedRow[]> {
  const failedNow = new Map<string, FailedRow>();
  const db = await openDuckDB({ threads: 1, memoryLimit: '256MB' });
  const conn = await db.connect();
  try {
    const read = async (file: string): Promise<FailedRow[]> => {
      const result = await conn.runAndReadAll(
        `SELECT source_file, source_row, stage, error_kind FROM read_parquet(${sqlString(path.join(dir, file))})`,
      );
      return result.getRowsJS().map(([shard, row, stage, kind]) => ({
        shard: String(shard),
        row: Number(row),
        reason: `${String(stage)}:${String(kind)}`,
      }));
    };
    for (const entry of manifest.entries) {
      if (entry.kind === 'commit' && entry.failedPart !== null) {
        for (const f of await read(entry.failedPart)) failedNow.set(`${f.shard}\0${f.row}`, f);
      } else if (entry.kind === 'retry') {
        for (const [label, ranges] of Object.entries(entry.rows)) {
          for (const [a, b] of ranges) for (let r = a; r < b; r++) failedNow.delete(`${label}\0${r}`);
        }
      }
    }
    const parts = (await readdir(dir)).filter((f) => /^part-\d+\.parquet$/.test(f));
    if (parts.length > 0 && failedNow.size > 0) {
      const written = await conn.runAndReadAll(
        `SELECT DISTINCT source_file, source_row FROM read_parquet(${sqlString(path.join(dir, 'part-*.parquet'))})`,
      );
      for (const [shard, row] of written.getRowsJS()) failedNow.delete(`${String(shard)}\0${Number(row)}`);
    }
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  return [...failedNow.values()];
}

/** The rows to hand back as ranges per shard, and the tally corrections that take their failures out. */
function handBack(failed: readonly FailedRow[]): {
  rows: Record<string, RowRanges>;
  byShard: Record<string, number>;
  tallies: ShardTally[];
} {
  const rowsByShard = new Map<string, number[]>();
  const tallies = new Map<string, ShardTally>();
  for (const f of failed) {
    let rows = rowsByShard.get(f.shard);
    if (rows === undefined) rowsByShard.set(f.shard, (rows = []));
    rows.push(f.row);
    const tally = tallyIn(tallies, f.shard);
    tally.read -= 1;
    tally.failed[f.reason] = (tally.failed[f.reason] ?? 0) - 1;
  }
  const byShard: Record<string, number> = {};
  const rows: Record<string, RowRanges> = {};
  for (const [label, list] of rowsByShard) {
    rows[label] = toRanges(list);
    byShard[label] = list.length;
  }
  return { rows, byShard, tallies: [...tallies.values()] };
}
