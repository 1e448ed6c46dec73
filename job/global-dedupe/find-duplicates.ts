import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { collectGarbage, peakRssMB } from '../../pipeline/memory.js';
import { Bitmap } from './bitmap.js';
import { emitCandidates, type CandidateStats } from './candidates.js';
import { decideNear, type NearStats } from './decide.js';
import { DROP_EXACT, DROP_ID, DROP_NEAR, writeDropLists } from './drop-list.js';
import { ExternalSorter, releaseSortScratch, type SortedCursor } from './external-sort.js';
import { EXACT_KEY, ID_HASH, KeyFileSet, BAND_KEYS, type DedupeSettings } from './key-file.js';

export interface GlobalDedupeOptions {
  /** Memory for sort buffers, in MiB (default 256); the sketch cache and bitmaps come on top (see README). */
  readonly memoryMB?: number;
  /** Live documents a band bucket may hold before it is handled as a big bucket (default 16; candidates.ts). */
  readonly maxBucket?: number;
  /** Sketch page cache, in MiB (default 16). */
  readonly sketchCacheMB?: number;
  /** Folder for sort runs (default `<root>/dedupe/tmp`, removed at the end). */
  readonly tmpDir?: string;
  readonly log?: (line: string) => void;
}

export interface GlobalDedupeSummary {
  readonly shards: readonly string[];
  readonly dedupe: DedupeSettings;
  /** Rows that passed the filters (records in the key files), and rows kept by every dedupe step. */
  readonly documents: number;
  readonly kept: number;
  /** Drops by reason (duplicate_id, exact_duplicate, near_duplicate). */
  readonly drops: Record<string, number>;
  readonly candidates: CandidateStats;
  readonly near: NearStats | null;
  /** Bytes of the key files read, and of sort runs written to disk. */
  readonly disk: { keys: number; sketches: number; ids: number; sortRuns: number };
  /** Wall time per phase and in all, ms. */
  readonly timings: Record<string, number>;
  readonly wallMs: number;
  /** The process's peak resident set (VmHWM: over the whole process's life, not this step alone). */
  readonly peakRssMB: number;
}

export const SUMMARY_FILE = 'summary.json';

/**
 * The global step: reads every shard's key files in plan order (`shards`, the plan's shard labels; the global
 * order is shard order, then row order) and writes, per shard, the rows a single process would drop in its
 * unique_ids, exact_dedupe and near_dedupe steps, with the same reasons and duplicateOf ids
 * (`<root>/dedupe/drops/<i>.jsonl`), then `<root>/dedupe/summary.json` (written last: its presence says the
 * lists are complete). Bounded memory: keys go through external sorts, never into a hash table of every
 * document; what grows with n is two bitmaps' worth of bits (n/8 bytes) and the big-bucket lists.
 *
 * 1. One sequential pass over the key files pushes (id hash, ordinal), (exact key, ordinal) and, per band,
 *    (band key, ordinal) into external sorters.
 * 2. unique_ids: in id-hash order, every record of a hash after the first is dropped (duplicateOf = its id).
 * 3. exact_dedupe: in exact-key order, skipping records dropped in 2, every record after the first is dropped
 *    as a duplicate of the first.
 * 4. near_dedupe: each band's buckets give candidate pairs or big-bucket memberships (candidates.ts), sorted by
 *    the later document; decide.ts replays the greedy rule in ordinal order.
 * 5. The drops, sorted by ordinal, become per-shard drop lists.
 */
export async function findGlobalDuplicates(
  root: string,
  shards: readonly string[],
  options: GlobalDedupeOptions = {},
): Promise<GlobalDedupeSummary> {
  const started = performance.now();
  const timings: Record<string, number> = {};
  let phaseStart = started;
  const phase = (name: string): void => {
    // What the phase let go (closed cursors' buffers, merge chunks) is freed now, not at V8's leisure.
    collectGarbage();
    const now = performance.now();
    timings[name] = Math.round(now - phaseStart);
    phaseStart = now;
    options.log?.(`global dedupe: ${name} ${timings[name]} ms, peak RSS ${peakRssMB()} MB`);
  };
  const memory = (options.memoryMB ?? 256) * 1024 * 1024;
  const maxBucket = options.maxBucket ?? 16;
  if (!(Number.isInteger(maxBucket) && maxBucket >= 2)) throw new RangeError(`maxBucket must be >= 2`);
  // Checked before anything is touched: a refused plan leaves the previous results as they were.
  const keys = KeyFileSet.open(root, shards, options.sketchCacheMB);
  // No summary while the lists are rewritten: ranks refuse lists without one (readRankDropLists).
  rmSync(path.join(root, 'dedupe', SUMMARY_FILE), { force: true });
  const tmp = options.tmpDir ?? path.join(root, 'dedupe', 'tmp');
  mkdirSync(tmp, { recursive: true });
  const sorters: ExternalSorter[] = [];
  const cursors: SortedCursor[] = [];
  const sorter = (
    name: string,
    words: number,
    keyWords: number,
    share: number,
    expected?: number,
  ): ExternalSorter => {
    const s = new ExternalSorter({
      dir: tmp,
      name,
      words,
      keyWords,
      maxRecords: Math.max(1024, Math.floor((memory * share) / (words * 4))),
      expected,
    });
    sorters.push(s);
    return s;
  };
  const open = (s: ExternalSorter): SortedCursor => {
    const cursor = s.cursor();
    cursors.push(cursor);
    return cursor;
  };
  try {
    const settings = keys.settings;
    const n = keys.total;
    const bands = settings.near?.bands ?? 0;
    // Phase 1's sorters share 40% of the budget in proportion to their record size; the radix scratch can be
    // as large again as the biggest buffer; pairs, members and drops get the rest.
    const phase1Words = (settings.ids ? 3 : 0) + (settings.exact ? 3 : 0) + bands * 2;
    const unit = 0.4 / Math.max(1, phase1Words);
    const ids = settings.ids ? sorter('ids', 3, 2, unit * 3, n) : undefined;
    const exact = settings.exact ? sorter('exact', 3, 2, unit * 3, n) : undefined;
    const bandSorters = Array.from({ length: bands }, (_, b) => sorter(`band${b}`, 2, 1, unit * 2, n));
    const drops = sorter('drops', 3, 1, 0.05);

    keys.scan((ordinal, r, at) => {
      ids?.push(r[at + ID_HASH]!, r[at + ID_HASH + 1]!, ordinal);
      exact?.push(r[at + EXACT_KEY]!, r[at + EXACT_KEY + 1]!, ordinal);
      for (let b = 0; b < bands; b++) bandSorters[b]!.push(r[at + BAND_KEYS + b]!, ordinal);
    });
    phase('scan');

    const dropped = new Bitmap(n);
    if (ids !== undefined) {
      firstOfEachKey(open(ids), dropped, (ordinal) => {
        dropped.set(ordinal);
        drops.push(ordinal, DROP_ID, ordinal);
      });
      phase('unique_ids');
    }
    if (exact !== undefined) {
      firstOfEachKey(open(exact), dropped, (ordinal, first) => {
        dropped.set(ordinal);
        drops.push(ordinal, DROP_EXACT, first);
      });
      phase('exact_dedupe');
    }

    const candidates: CandidateStats = { pairs: 0, bigBuckets: 0, bigMembers: 0 };
    let near: NearStats | null = null;
    if (settings.near !== null) {
      const pairs = sorter('pairs', 2, 1, 0.2);
      const members = sorter('members', 2, 1, 0.1);
      for (const band of bandSorters) {
        const cursor = open(band);
        emitCandidates(cursor, dropped, maxBucket, pairs, members, candidates);
        cursor.close();
      }
      phase('candidates');
      near = decideNear(
        keys,
        open(pairs),
        open(members),
        candidates.bigBuckets,
        dropped,
        settings.near.threshold,
        (ordinal, of) => drops.push(ordinal, DROP_NEAR, of),
      );
      phase('near_dedupe');
    }

    const counts = writeDropLists(root, keys, open(drops));
    phase('drop_lists');
    const dropTotal = Object.values(counts).reduce((a, b) => a + b, 0);
    const summary: GlobalDedupeSummary = {
      shards,
      dedupe: settings,
      documents: n,
      kept: n - dropTotal,
      drops: counts,
      candidates,
      near,
      disk: { ...keys.diskBytes, sortRuns: sorters.reduce((sum, s) => sum + s.spilledBytes, 0) },
      timings,
      wallMs: Math.round(performance.now() - started),
      peakRssMB: peakRssMB(),
    };
    const file = path.join(root, 'dedupe', SUMMARY_FILE);
    writeFileSync(`${file}.tmp`, JSON.stringify(summary, null, 2) + '\n');
    renameSync(`${file}.tmp`, file);
    return summary;
  } finally {
    for (const cursor of cursors) cursor.close();
    keys.close();
    releaseSortScratch();
    if (options.tmpDir === undefined) rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Walks (key hi, key lo, ordinal) records in key order; within each key, the first record not already dropped
 * is the one kept and every later live one is reported with the first's ordinal.
 */
function firstOfEachKey(
  cursor: SortedCursor,
  dropped: Bitmap,
  onDuplicate: (ordinal: number, first: number) => void,
): void {
  let hi = -1;
  let lo = -1;
  let first = -1;
  while (cursor.next()) {
    const r = cursor.records;
    const at = cursor.at;
    const ordinal = r[at + 2]!;
    if (r[at] !== hi || r[at + 1] !== lo) {
      hi = r[at]!;
      lo = r[at + 1]!;
      first = -1;
    }
    if (dropped.has(ordinal)) continue;
    if (first < 0) first = ordinal;
    else onDuplicate(ordinal, first);
  }
}
