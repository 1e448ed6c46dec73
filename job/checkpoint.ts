import { readdir, readFile, rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import { AirError } from '../pipeline/errors.js';
import type { FailureRows } from '../pipeline/io/failure-rows.js';
import { FAILED_DIR } from '../pipeline/io/failure-rows.js';
import {
  identityFieldName,
  MANIFEST_FILE,
  ManifestLog,
  readManifest,
  shardIdentity,
  type Manifest,
  type ManifestCommit,
  type ManifestEntry,
  type ShardIdentity,
} from '../pipeline/io/manifest.js';
import type { CommittedPart } from '../pipeline/io/parquet-sink.js';
import type { Shard } from '../pipeline/io/shards.js';
import { addTally, tallyIn, type Settlement, type ShardTally } from '../pipeline/ledger.js';
import { subtractRanges, toRanges, type RowRanges } from '../pipeline/row-ranges.js';
import type { RunConfig } from './config.js';
import { resultSettings } from '../schemas/settings.js';
import { configFingerprint, differingSettings } from './fingerprint.js';

/** Where an output folder stands before a run: fresh, or the remains of an interrupted run to continue. */
export interface StartingPoint {
  readonly resumed: boolean;
  /** The earlier run finished: nothing is left to do. */
  readonly complete: boolean;
  readonly settled: ReadonlyMap<string, RowRanges>;
  readonly tallies: readonly ShardTally[];
  readonly nextPart: number;
  readonly nextFailedPart: number;
  /** Bytes of duplicates.jsonl to keep (undefined: start the file afresh). */
  readonly notesBytes: number | undefined;
  readonly log: ManifestLog;
}

const PART = /^part-(\d{5,})\.parquet$/;

/**
 * Opens the output folder for a run. A folder with a manifest is continued: the settings that decide results
 * and the shards must be those of the earlier run (unless `force`), parts it renamed but never recorded are
 * removed, and what it settled is returned so the run skips it. A folder with part files but no manifest is
 * refused: air did not make it, or cannot tell what it holds.
 */
export async function openOutput(
  config: RunConfig,
  shards: readonly Shard[],
  force = false,
): Promise<StartingPoint> {
  const dir = config.output;
  const fingerprint = configFingerprint(config);
  const identities = await Promise.all(shards.map(shardIdentity));
  const manifest = await readManifest(dir);
  if (manifest === undefined) {
    const parts = (await readdir(dir)).filter((f) => PART.test(f));
    if (parts.length > 0) {
      throw new AirError(
        'AIR_USAGE',
        `${dir}: holds ${parts.length} part files but no ${MANIFEST_FILE}; write to an empty folder`,
      );
    }
    const log = await ManifestLog.open(dir, {
      kind: 'header',
      version: 1,
      createdAt: new Date().toISOString(),
      fingerprint,
      settings: resultSettings(config),
      config,
      shards: identities,
    });
    return fresh(log);
  }
  checkSameRun(dir, manifest, config, identities, force);
  await cutTornTail(path.join(dir, MANIFEST_FILE));
  const committed = new Set(manifest.commits.map((c) => c.part).filter((p): p is string => p !== null));
  const committedFailed = new Set(
    manifest.commits.map((c) => c.failedPart).filter((p): p is string => p !== null),
  );
  await removeUncommitted(dir, committed, '');
  await removeUncommitted(path.join(dir, FAILED_DIR), committedFailed, `${FAILED_DIR}/`);
  const log = await ManifestLog.open(dir, { kind: 'resume', at: new Date().toISOString(), fingerprint });
  const { settled, tallies } = settledSoFar(manifest.entries);
  const last = manifest.commits[manifest.commits.length - 1];
  return {
    resumed: true,
    complete: manifest.complete,
    settled,
    tallies,
    nextPart: nextIndex(committed),
    nextFailedPart: nextIndex(new Set([...committedFailed].map((p) => p.slice(FAILED_DIR.length + 1)))),
    notesBytes: last?.notesBytes ?? 0,
    log,
  };
}

/**
 * The input rows a folder's manifest records as settled, by shard label, with their tallies: every commit adds
 * its rows, every retry takes its rows back. This is what a resume skips and what `air status` counts.
 */
export function settledSoFar(entries: readonly ManifestEntry[]): {
  settled: Map<string, RowRanges>;
  tallies: ShardTally[];
} {
  const settled = new Map<string, RowRanges>();
  const tallies = new Map<string, ShardTally>();
  for (const entry of entries) {
    if (entry.kind === 'commit') {
      for (const [label, ranges] of Object.entries(entry.settled)) {
        settled.set(label, toRanges([], [...(settled.get(label) ?? []), ...ranges]));
      }
      for (const t of entry.tallies) addTally(tallyIn(tallies, t.shard), t);
    } else if (entry.kind === 'retry') {
      for (const [label, ranges] of Object.entries(entry.rows)) {
        settled.set(label, subtractRanges(settled.get(label) ?? [], ranges));
      }
      for (const t of entry.tallies) addTally(tallyIn(tallies, t.shard), t);
    }
  }
  return { settled, tallies: [...tallies.values()] };
}

function fresh(log: ManifestLog): StartingPoint {
  return {
    resumed: false,
    complete: false,
    settled: new Map(),
    tallies: [],
    nextPart: 0,
    nextFailedPart: 0,
    notesBytes: undefined,
    log,
  };
}

function checkSameRun(
  dir: string,
  manifest: Manifest,
  config: RunConfig,
  identities: readonly ShardIdentity[],
  force: boolean,
): void {
  const settings = resultSettings(config);
  const differing = differingSettings(manifest.header.settings, settings);
  if (differing.length > 0 && !force) {
    const show = (v: unknown): string => (v === undefined ? 'unset' : JSON.stringify(v));
    const lines = differing.map((k) => `${k}: ${show(manifest.header.settings[k])} -> ${show(settings[k])}`);
    throw new AirError(
      'AIR_RESUME_MISMATCH',
      `${dir}: an interrupted run with other settings is here; resuming would mix their results (${lines.join('; ')}). ` +
        'Run with the same settings, write to another folder, or pass --force to resume anyway',
    );
  }
  const before = new Map(manifest.header.shards.map((s) => [s.label, s]));
  for (const now of identities) {
    const then = before.get(now.label);
    if (then === undefined) continue; // a new shard changes `input`, caught above
    const changed = (['size', 'mtimeMs', 'footerHash'] as const)
      .filter((k) => then[k] !== now[k])
      .map((k) => identityFieldName(k, then.footerHash));
    if (changed.length > 0) {
      throw new AirError(
        'AIR_RESUME_MISMATCH',
        `${now.label}: the shard changed since the interrupted run (${changed.join(', ')} differ); ` +
          'its rows cannot be matched to what was written. Restore it or write to another folder',
      );
    }
  }
}

/** Removes part files (and temporaries) a crashed run left that its manifest never recorded. */
async function removeUncommitted(dir: string, committed: ReadonlySet<string>, prefix: string): Promise<void> {
  const files = await readdir(dir).catch(() => [] as string[]);
  for (const file of files) {
    const orphanPart = PART.test(file) && !committed.has(`${prefix}${file}`);
    const temporary = file.startsWith('.') && file.endsWith('.tmp');
    if (orphanPart || temporary) await rm(path.join(dir, file), { force: true });
  }
}

/** Drops a last line cut short by a crash, so the next append starts on a line of its own. */
async function cutTornTail(file: string): Promise<void> {
  const text = await readFile(file);
  if (text.length === 0 || text[text.length - 1] === 0x0a) return;
  await truncate(file, text.lastIndexOf(0x0a) + 1);
}

function nextIndex(parts: ReadonlySet<string>): number {
  let next = 0;
  for (const part of parts) {
    const match = PART.exec(path.basename(part));
    if (match !== null) next = Math.max(next, Number(match[1]) + 1);
  }
  return next;
}

/**
 * Turns settlements into manifest entries: each committed part is followed by one entry naming the input
 * rows settled since the last (those whose rows it holds, and those dropped or failed meanwhile), written
 * after the failure rows and the duplicate notes they depend on are durable.
 */
export class Checkpointer {
  private rows = new Map<string, number[]>();
  private tallies = new Map<string, ShardTally>();
  /** Entries are appended one at a time, in the order they were taken (notesBytes only grows). */
  private queue: Promise<void> = Promise.resolve();

  /**
   * `afterEntry`, when given, is awaited after each commit entry is durable, with the manifest's size then (an
   * s3:// output uploads the entry's files, then the manifest up to it).
   */
  constructor(
    private readonly log: ManifestLog,
    private readonly failures: FailureRows,
    private readonly notesCheckpoint: () => number,
    private readonly afterEntry?: (entry: ManifestCommit, manifestBytes: number) => Promise<void>,
  ) {}

  settle(s: Settlement): void {
    let rows = this.rows.get(s.shard);
    if (rows === undefined) this.rows.set(s.shard, (rows = []));
    rows.push(s.row);
    addTally(tallyIn(this.tallies, s.shard), {
      read: 1,
      written: s.outcome === 'written' ? 1 : 0,
      rowsWritten: s.rows,
      dropped: s.outcome === 'dropped' ? { [s.reason]: 1 } : {},
      failed: s.outcome === 'failed' ? { [s.reason]: 1 } : {},
      abandoned: 0,
    });
  }

  /** Records a committed part (or, with null, only what settled since the last entry). */
  commit(part: CommittedPart | null): Promise<void> {
    const entry = this.queue.then(() => this.append(part));
    this.queue = entry.catch(() => {});
    return entry;
  }

  private async append(part: CommittedPart | null): Promise<void> {
    // Taken before the first await: what settles while this entry is written belongs to the next one.
    const rows = this.rows;
    const tallies = this.tallies;
    this.rows = new Map();
    this.tallies = new Map();
    const failedPart = this.failures.flush();
    const notesBytes = this.notesCheckpoint();
    if (part === null && rows.size === 0) {
      await failedPart;
      return;
    }
    const settled: Record<string, RowRanges> = {};
    for (const [label, list] of rows) settled[label] = toRanges(list);
    const entry: ManifestCommit = {
      kind: 'commit',
      at: new Date().toISOString(),
      part: part === null ? null : path.basename(part.file),
      rows: part?.rows ?? 0,
      failedPart: await failedPart,
      settled,
      tallies: [...tallies.values()],
      notesBytes,
    };
    const bytes = await this.log.append(entry);
    await this.afterEntry?.(entry, bytes);
  }

  async complete(): Promise<void> {
    await this.queue;
    await this.log.append({ kind: 'complete', at: new Date().toISOString() });
  }
}
