import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { drop, emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import type { Document } from '../../schemas/documents.js';
import type { RunConfig } from '../config.js';
import { readDropList, type DropList, type GlobalDedupeStage } from './drop-list.js';
import { GlobalDedupeError } from './errors.js';
import { SUMMARY_FILE, type GlobalDedupeSummary } from './find-duplicates.js';

/** The drop lists of a rank's shards, by shard label. */
export type RankDropLists = ReadonlyMap<string, DropList>;

/**
 * Reads the drop lists of a rank's shards (`index` in the plan, `label` as the source names the shard), once
 * the global step has finished (its summary exists) for a plan with these shards at these indices.
 */
export async function readRankDropLists(
  root: string,
  shards: ReadonlyArray<{ readonly index: number; readonly label: string }>,
): Promise<RankDropLists> {
  const summaryFile = path.join(root, 'dedupe', SUMMARY_FILE);
  let summary: Pick<GlobalDedupeSummary, 'shards'>;
  try {
    summary = JSON.parse(await readFile(summaryFile, 'utf8')) as GlobalDedupeSummary;
  } catch (error) {
    throw new GlobalDedupeError(
      'AIR_DEDUPE_STALE',
      `${summaryFile}: missing or unreadable; the global step has not finished`,
      { cause: error },
    );
  }
  for (const { index, label } of shards) {
    if (summary.shards[index] !== label) {
      throw new GlobalDedupeError(
        'AIR_DEDUPE_STALE',
        `${summaryFile}: the global step ran over ${summary.shards[index] ?? 'no shard'} at index ${index}, ` +
          `this rank reads ${label} there`,
      );
    }
  }
  const out = new Map<string, DropList>();
  for (const { index, label } of shards) out.set(label, await readDropList(root, index, label));
  return out;
}

export interface GlobalDuplicateDropOptions {
  /** Drop only the rows this stage of a single run drops, under its name (default: all three, one stage). */
  readonly stage?: GlobalDedupeStage;
  /** Stage name (default: `stage`, or "global_dedupe"). */
  readonly name?: string;
}

/**
 * Drops exactly the rows the global step listed for this rank's shards, each with the reason and duplicateOf
 * a single run gives it; every other record passes. Records are found by (sourceFile, sourceRow), and the
 * listed id must be the record's id, else the list is stale (the shards changed) and the run stops.
 *
 * With `stage` set, one operator per dedupe step (see globalDedupeStages) makes a rank's ledger read like a
 * single run's: stages unique_ids, exact_dedupe, near_dedupe with their own reasons. Without it one stage,
 * "global_dedupe", drops with all three reasons: the same rows, the ledger's stage names differ.
 */
export function globalDuplicateDrop(
  lists: RankDropLists,
  options: GlobalDuplicateDropOptions = {},
): RecordOperator<Document, Document> {
  const stage = options.stage;
  return {
    name: options.name ?? stage ?? 'global_dedupe',
    process(doc): Outcome<Document> {
      const listed = lists.get(doc.sourceFile)?.get(doc.sourceRow);
      if (listed === undefined || (stage !== undefined && listed.stage !== stage)) return emit(doc);
      if (listed.id !== doc.id) {
        throw new GlobalDedupeError(
          'AIR_DEDUPE_STALE',
          `${doc.sourceFile} row ${doc.sourceRow}: the drop list names id ${listed.id}, the row has ${doc.id}; ` +
            'the shards changed since the keys pass',
        );
      }
      return drop(listed.reason, { duplicateOf: listed.duplicateOf });
    },
  };
}

/**
 * The rank's replacement for stage 0's unique_ids, exact_dedupe and near_dedupe: one thin operator per step
 * the config turns on, under the same names, so ledgers and drop notes match a single run's.
 */
export function globalDedupeStages(
  lists: RankDropLists,
  dedupe: Pick<RunConfig['dedupe'], 'ids' | 'exact'> & { readonly near: { readonly enabled: boolean } },
): Array<RecordOperator<Document, Document>> {
  const stages: GlobalDedupeStage[] = [];
  if (dedupe.ids) stages.push('unique_ids');
  if (dedupe.exact) stages.push('exact_dedupe');
  if (dedupe.near.enabled) stages.push('near_dedupe');
  return stages.map((stage) => globalDuplicateDrop(lists, { stage }));
}
