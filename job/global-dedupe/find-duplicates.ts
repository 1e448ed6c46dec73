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
  const maxBucket = options.maxBucket ?? 16;
  if (!(Number.isInteger(maxBucket) && maxBucket >= 2)) throw new RangeError(`maxBucket must be >= 2`);
  // Checked before anything is touched: a refused plan leaves the previous results as they were.
  const keys = KeyFileSet.open(root, shards, options.sketchCacheMB);
  // No summary while the lists are rewritten: ranks refuse lists without one (readRankDropLists).
  rmSync(path.join(root, 'dedupe', SUMMARY_FILE), { force: true });
  const scope = new SortScope(options.tmpDir ?? path.join(root, 'dedupe', 'tmp'), options);
  try {
    const settings = keys.settings;
    const sorted = scanKeys(keys, scope);
    scope.phase('scan');
    const dropped = new Bitmap(keys.total);
    if (sorted.ids !== undefined) {
      firstOfEachKey(scope.open(sorted.ids), dropped, (ordinal) => {
        dropped.set(ordinal);
        sorted.drops.push(ordinal, DROP_ID, ordinal);
      });
      scope.phase('unique_ids');
    }
    if (sorted.exact !== undefined) {
      firstOfEachKey(scope.open(sorted.exact), dropped, (ordinal, first) => {
        dropped.set(ordinal);
        sorted.drops.push(ordinal, DROP_EXACT, first);
      });
      scope.phase('exact_dedupe');
    }
    const candidates: CandidateStats = { pairs: 0, bigBuckets: 0, bigMembers: 0 };
    const near =
      settings.near === null
        ? null
        : findNear(keys, scope, sorted, dropped, {
            maxBucket,
            threshold: settings.near.threshold,
            candidates,
          });
    const counts = writeDropLists(root, keys, scope.open(sorted.drops));
    scope.phase('drop_lists');
    return writeSummary(root, { shards, keys, counts, candidates, near, scope });
  } finally {
    scope.close();
    keys.close();
    releaseSortScratch();
    if (options.tmpDir === undefined) rmSync(scope.dir, { recursive: true, force: true });
  }
}

/** The external sorters and cursors of one global step, its memory budget and its phase timings. */
class SortScope {
  readonly started = performance.now();
  readonly timings: Record<string, number> = {};
  readonly sorters: ExternalSorter[] = [];
  private readonly cursors: SortedCursor[] = [];
  private phaseStart = this.started;
  private readonly memory: number;

  constructor(
    readonly dir: string,
    private readonly options: GlobalDedupeOptions,
  ) {
    this.memory = (options.memoryMB ?? 256) * 1024 * 1024;
    mkdirSync(dir, { recursive: true });
  }

  /** A sorter of `words`-word records keyed by the first `keyWords`, with `share` of the memory budget. */
  sorter(name: string, words: number, keyWords: number, share: number, expected?: number): ExternalSorter {
    const maxRecords = Math.max(1024, Math.floor((this.memory * share) / (words * 4)));
    const s = new ExternalSorter({ dir: this.dir, name, words, keyWords, maxRecords, expected });
    this.sorters.push(s);
    return s;
  }

  open(s: ExternalSorter): SortedCursor {
    const cursor = s.cursor();
    this.cursors.push(cursor);
    return cursor;
  }

  phase(name: string): void {
    // What the phase let go (closed cursors' buffers, merge chunks) is freed now, not at V8's leisure.
    collectGarbage();
    const now = performance.now();
    this.timings[name] = Math.round(now - this.phaseStart);
    this.phaseStart = now;
    this.options.log?.(`global dedupe: ${name} ${this.timings[name]} ms, peak RSS ${peakRssMB()} MB`);
  }

  close(): void {
    for (const cursor of this.cursors) cursor.close();
  }
}

interface ScannedKeys {
  readonly ids: ExternalSorter | undefined;
  readonly exact: ExternalSorter | undefined;
  readonly bands: readonly ExternalSorter[];
  readonly drops: ExternalSorter;
}

/** One pass over the key files, in plan order, into a sorter per dedupe key (ids, exact keys, each band). */
function scanKeys(keys: KeyFileSet, scope: SortScope): ScannedKeys {
  const settings = keys.settings;
  const n = keys.total;
  const bandCount = settings.near?.bands ?? 0;
  // The scan's sorters share 40% of the budget in proportion to their record size; the radix scratch can be
  // as large again as the biggest buffer; pairs, members and drops get the rest.
  const words = (settings.ids ? 3 : 0) + (settings.exact ? 3 : 0) + bandCount * 2;
  const unit = 0.4 / Math.max(1, words);
  const ids = settings.ids ? scope.sorter('ids', 3, 2, unit * 3, n) : undefined;
  const exact = settings.exact ? scope.sorter('exact', 3, 2, unit * 3, n) : undefined;
  const bands = Array.from({ length: bandCount }, (_, b) => scope.sorter(`band${b}`, 2, 1, unit * 2, n));
  const drops = scope.sorter('drops', 3, 1, 0.05);
  keys.scan((ordinal, r, at) => {
    ids?.push(r[at + ID_HASH]!, r[at + ID_HASH + 1]!, ordinal);
    exact?.push(r[at + EXACT_KEY]!, r[at + EXACT_KEY + 1]!, ordinal);
    for (let b = 0; b < bandCount; b++) bands[b]!.push(r[at + BAND_KEYS + b]!, ordinal);
  });
  return { ids, exact, bands, drops };
}

/** near_dedupe: candidates from each band's buckets, then the greedy decision in ordinal order. */
function findNear(
  keys: KeyFileSet,
  scope: SortScope,
  sorted: ScannedKeys,
  dropped: Bitmap,
  settings: { maxBucket: number; threshold: number; candidates: CandidateStats },
): NearStats {
  const pairs = scope.sorter('pairs', 2, 1, 0.2);
  const members = scope.sorter('members', 2, 1, 0.1);
  for (const band of sorted.bands) {
    const cursor = scope.open(band);
    emitCandidates(cursor, dropped, settings.maxBucket, pairs, members, settings.candidates);
    cursor.close();
  }
  scope.phase('candidates');
  const near = decideNear(
    keys,
    scope.open(pairs),
    scope.open(members),
    settings.candidates.bigBuckets,
    dropped,
    settings.threshold,
    (ordinal, of) => sorted.drops.push(ordinal, DROP_NEAR, of),
  );
  scope.phase('near_dedupe');
  return near;
}

/** Writes summary.json last (atomically): ranks take the drop lists only once it exists. */
function writeSummary(
  root: string,
  run: {
    shards: readonly string[];
    keys: KeyFileSet;
    counts: GlobalDedupeSummary['drops'];
    candidates: CandidateStats;
    near: NearStats | null;
    scope: SortScope;
  },
): GlobalDedupeSummary {
  const n = run.keys.total;
  const dropTotal = Object.values(run.counts).reduce((a, b) => a + b, 0);
  const summary: GlobalDedupeSummary = {
    shards: run.shards,
    dedupe: run.keys.settings,
    documents: n,
    kept: n - dropTotal,
    drops: run.counts,
    candidates: run.candidates,
    near: run.near,
    disk: {
      ...run.keys.diskBytes,
      sortRuns: run.scope.sorters.reduce((sum, s) => sum + s.spilledBytes, 0),
    },
    timings: run.scope.timings,
    wallMs: Math.round(performance.now() - run.scope.started),
    peakRssMB: peakRssMB(),
  };
  const file = path.join(root, 'dedupe', SUMMARY_FILE);
  writeFileSync(`${file}.tmp`, JSON.stringify(summary, null, 2) + '\n');
  renameSync(`${file}.tmp`, file);
  return summary;
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
