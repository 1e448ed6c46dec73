import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { AirError } from '../errors.js';
import type { ShardTally } from '../ledger.js';
import type { RowRanges } from '../row-ranges.js';
import { objectStore } from './object-store/store.js';
import { isObjectUrl, parseObjectUrl } from './object-store/url.js';
import type { Shard } from './shards.js';

/**
 * The commit log of a run: `manifest.jsonl` in the output folder, one JSON object per line, appended and
 * fsynced after each part file is renamed into place. A part not named in it was never committed (a crash
 * between rename and append) and is removed on resume; a torn last line is ignored.
 *
 *   {"kind":"header", ...}   what ran: config, the settings that decide results, each shard's identity
 *   {"kind":"commit", ...}   a part (or none), and the input rows settled since the previous commit with their tallies
 *   {"kind":"resume", ...}   a later run continued the folder
 *   {"kind":"complete", ...} the run finished: every input row is settled
 */
export const MANIFEST_FILE = 'manifest.jsonl';

/** What identifies a shard's content cheaply: a replaced file changes at least one of these. */
export interface ShardIdentity {
  readonly label: string;
  readonly size: number;
  readonly mtimeMs: number;
  /**
   * SHA-256 (16 hex) of the Parquet footer, which holds every row group's offsets and statistics; for an object
   * in storage, `etag:<ETag>` (a new ETag whenever it is replaced; its mtime is then 0).
   */
  readonly footerHash: string;
}

/** What a changed identity field is called in messages (an object's footerHash holds its ETag). */
export function identityFieldName(key: 'size' | 'mtimeMs' | 'footerHash', footerHash: string): string {
  return key === 'footerHash' && footerHash.startsWith(ETAG) ? 'ETag' : key;
}

const ETAG = 'etag:';

export interface ManifestHeader {
  readonly kind: 'header';
  readonly version: 1;
  readonly createdAt: string;
  readonly fingerprint: string;
  readonly settings: Readonly<Record<string, unknown>>;
  /** The resolved run config (API keys are never in it: only the names of their variables). */
  readonly config: unknown;
  readonly shards: readonly ShardIdentity[];
}

export interface ManifestCommit {
  readonly kind: 'commit';
  readonly at: string;
  /** The part file committed with this entry (base name), or null for a checkpoint of drops only. */
  readonly part: string | null;
  readonly rows: number;
  /** Failure rows committed with this entry, under failed/. */
  readonly failedPart: string | null;
  /** Input rows settled since the previous entry, by shard label. */
  readonly settled: Readonly<Record<string, RowRanges>>;
  /** Their tallies, by shard label (read = rows settled). */
  readonly tallies: readonly ShardTally[];
  /** Bytes of duplicates.jsonl that belong to committed rows (the rest is cut on resume). */
  readonly notesBytes: number;
}

/** Failed input rows handed back to be run again (`air retry-failed`): no longer settled. */
export interface ManifestRetry {
  readonly kind: 'retry';
  readonly at: string;
  readonly rows: Readonly<Record<string, RowRanges>>;
  /** Subtracted from the tallies (read and the failure reasons, as negative counts). */
  readonly tallies: readonly ShardTally[];
}

export type ManifestEntry =
  | ManifestHeader
  | ManifestCommit
  | ManifestRetry
  | { readonly kind: 'resume'; readonly at: string; readonly fingerprint: string }
  | { readonly kind: 'complete'; readonly at: string };

export interface Manifest {
  readonly header: ManifestHeader;
  /** Every entry in order (the header first). */
  readonly entries: readonly ManifestEntry[];
  readonly commits: readonly ManifestCommit[];
  /** Every input row is settled: a `complete` entry with no `retry` after it. */
  readonly complete: boolean;
}

export async function shardIdentity(shard: Shard): Promise<ShardIdentity> {
  if (isObjectUrl(shard.path)) {
    // One HEAD: S3 gives a new ETag to every replaced object, and reading its footer would cost a GET more.
    const { size, etag } = await objectStore().head(parseObjectUrl(shard.path));
    return { label: shard.label, size, mtimeMs: 0, footerHash: `${ETAG}${etag}` };
  }
  const info = await stat(shard.path);
  const handle = await open(shard.path, 'r');
  try {
    let footerHash = 'none';
    if (info.size >= 12) {
      const tail = Buffer.alloc(8);
      await handle.read(tail, 0, 8, info.size - 8);
      const length = Math.min(tail.readUInt32LE(0), info.size - 8);
      const footer = Buffer.alloc(length);
      await handle.read(footer, 0, length, info.size - 8 - length);
      footerHash = createHash('sha256').update(footer).digest('hex').slice(0, 16);
    }
    return { label: shard.label, size: info.size, mtimeMs: Math.floor(info.mtimeMs), footerHash };
  } finally {
    await handle.close();
  }
}

/** Reads a manifest; undefined when the folder has none. A torn last line (a crash mid-append) is ignored. */
export async function readManifest(dir: string): Promise<Manifest | undefined> {
  const file = path.join(dir, MANIFEST_FILE);
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  const lines = text.split('\n');
  const entries: ManifestEntry[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      entries.push(JSON.parse(line) as ManifestEntry);
    } catch {
      // Only the last line can be torn by a crash; a bad line elsewhere means the file was damaged.
      const last = lines.slice(i + 1).every((rest) => rest.trim() === '');
      if (!last) throw new AirError('AIR_RESUME_MISMATCH', `${file}: line ${i + 1} is not valid JSON`);
    }
  });
  const header = entries[0];
  if (header?.kind !== 'header') throw new AirError('AIR_RESUME_MISMATCH', `${file}: no header line`);
  const lastState = entries.filter((e) => e.kind === 'complete' || e.kind === 'retry').at(-1);
  return {
    header,
    entries,
    commits: entries.filter((e): e is ManifestCommit => e.kind === 'commit'),
    complete: lastState?.kind === 'complete',
  };
}

/** Appends entries durably: each append is written and fsynced before it resolves. */
export class ManifestLog {
  private constructor(private readonly file: string) {}

  /** Starts a new manifest (the folder must not have one) or continues an existing one. */
  static async open(dir: string, first: ManifestEntry): Promise<ManifestLog> {
    const log = new ManifestLog(path.join(dir, MANIFEST_FILE));
    await log.append(first);
    return log;
  }

  /** Resolves with the manifest's size after this entry (what a copy of the log up to it must hold). */
  async append(entry: ManifestEntry): Promise<number> {
    const handle = await open(this.file, 'a');
    try {
      await handle.write(`${JSON.stringify(entry)}\n`);
      await handle.sync();
      return (await handle.stat()).size;
    } finally {
      await handle.close();
    }
  }
}
