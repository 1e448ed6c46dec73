import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { EXACT_DUPLICATE } from '../../operators/dedupe/exact-dedupe.js';
import { NEAR_DUPLICATE } from '../../operators/dedupe/near-dedupe.js';
import { DUPLICATE_ID } from '../../operators/dedupe/unique-ids.js';
import type { DropNote } from '../../pipeline/ledger.js';
import { GlobalDedupeError } from './errors.js';
import type { SortedCursor } from './external-sort.js';
import type { KeyFileSet } from './key-file.js';

/** The stage names of a single run's dedupe steps, which the drop lists and the rank operators reuse. */
export type GlobalDedupeStage = 'unique_ids' | 'exact_dedupe' | 'near_dedupe';

/** Drop codes in the drops sorter, and the stage and reason each stands for. */
export const DROP_ID = 1;
export const DROP_EXACT = 2;
export const DROP_NEAR = 3;
const KINDS: Record<number, { stage: GlobalDedupeStage; reason: string }> = {
  [DROP_ID]: { stage: 'unique_ids', reason: DUPLICATE_ID },
  [DROP_EXACT]: { stage: 'exact_dedupe', reason: EXACT_DUPLICATE },
  [DROP_NEAR]: { stage: 'near_dedupe', reason: NEAR_DUPLICATE },
};

/** One line of a drop list: the drop note a single run writes for the row, plus the row's own id. */
export interface GlobalDrop extends DropNote {
  readonly stage: GlobalDedupeStage;
  /** The dropped row's id (a rank checks it against the row it reads, to catch stale lists). */
  readonly id: string;
}

export function dropsDir(root: string): string {
  return path.join(root, 'dedupe', 'drops');
}

export function dropListFile(root: string, index: number): string {
  return path.join(dropsDir(root), `${index}.jsonl`);
}

/**
 * Writes `<root>/dedupe/drops/<i>.jsonl` for every shard of the plan (empty for a shard without drops): one
 * JSON line per dropped row, rows ascending. `drops` holds (ordinal, code, duplicate-of ordinal) sorted by
 * ordinal; rows and ids are looked up in the key files. Returns the count per reason.
 */
export function writeDropLists(root: string, keys: KeyFileSet, drops: SortedCursor): Record<string, number> {
  const counts: Record<string, number> = { [DUPLICATE_ID]: 0, [EXACT_DUPLICATE]: 0, [NEAR_DUPLICATE]: 0 };
  mkdirSync(dropsDir(root), { recursive: true });
  const labels = keys.metas.map((m) => m.shard);
  let shard = -1;
  let fd = -1;
  let text = '';
  const flush = (): void => {
    const bytes = Buffer.from(text, 'utf8');
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    text = '';
  };
  const openUpTo = (target: number): void => {
    while (shard < target) {
      if (fd >= 0) {
        flush();
        closeSync(fd);
        renameSync(`${dropListFile(root, shard)}.tmp`, dropListFile(root, shard));
      }
      shard++;
      fd = shard < labels.length ? openSync(`${dropListFile(root, shard)}.tmp`, 'w') : -1;
    }
  };
  try {
    while (drops.next()) {
      const ordinal = drops.records[drops.at]!;
      const kind = KINDS[drops.records[drops.at + 1]!]!;
      const row = keys.locate(ordinal);
      const of = drops.records[drops.at + 2]!;
      openUpTo(row.shard);
      const drop: GlobalDrop = {
        shard: labels[row.shard]!,
        row: row.row,
        stage: kind.stage,
        reason: kind.reason,
        duplicateOf: of === ordinal ? row.id : keys.locate(of).id,
        id: row.id,
      };
      counts[kind.reason]!++;
      text += JSON.stringify(drop) + '\n';
      if (text.length > 1 << 20) flush();
    }
    openUpTo(labels.length);
  } catch (error) {
    if (fd >= 0) closeSync(fd);
    if (shard >= 0 && shard < labels.length) rmSync(`${dropListFile(root, shard)}.tmp`, { force: true });
    throw error;
  }
  return counts;
}

/** A shard's drop list, by row. */
export type DropList = ReadonlyMap<number, GlobalDrop>;

/** Reads the drop list of plan shard `index`, checking it is the list of `label`. */
export async function readDropList(root: string, index: number, label: string): Promise<DropList> {
  const file = dropListFile(root, index);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new GlobalDedupeError(
      'AIR_DEDUPE_STALE',
      `${file}: no drop list for shard ${index} (${label}); run the global step first`,
      { cause: error },
    );
  }
  const out = new Map<number, GlobalDrop>();
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    const drop = JSON.parse(line) as GlobalDrop;
    if (drop.shard !== label) {
      throw new GlobalDedupeError(
        'AIR_DEDUPE_STALE',
        `${file}: lists drops of ${drop.shard}, the plan has ${label} at index ${index}`,
      );
    }
    out.set(drop.row, drop);
  }
  return out;
}
