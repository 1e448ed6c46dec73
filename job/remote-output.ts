import { createHash } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { pathExists } from '../pipeline/io/files.js';
import { MANIFEST_FILE, readManifest, type ManifestCommit } from '../pipeline/io/manifest.js';
import { objectStore, type ObjectStore } from '../pipeline/io/object-store/store.js';
import {
  formatObjectUrl,
  objectUnder,
  parseObjectUrl,
  type ObjectUrl,
} from '../pipeline/io/object-store/url.js';
import { DUPLICATES_FILE, LEDGER_FILE } from '../report/stats/ledger-file.js';
import type { RunConfig } from './config.js';
import { LLM_CACHE_FILE } from './llm.js';

/** The files a finished (or stopped) run leaves beside its parts, uploaded at its end when present. */
const END_FILES = [LEDGER_FILE, 'stats.json', 'report.html', 'README.md', 'README.air.md'];

/**
 * An `s3://bucket/prefix/` output. The run writes an ordinary local folder (storage.workDir); after each
 * manifest entry its new part and failure part go up, then the manifest as it stood at that entry (one PUT,
 * atomic), so every part the remote manifest names exists. A resume on a machine without the folder starts
 * from the remote one: manifest, parts, duplicate notes and the LLM cache snapshot. Uploads run behind the
 * writer, at most one entry queued behind the one going up.
 */
export class RemoteOutput {
  /** Uploads in order; each entry's manifest goes up after its files. */
  private chain: Promise<void> = Promise.resolve();
  private lastSnapshot = 0;
  /** Bytes of duplicates.jsonl the bucket holds (at least). */
  private notesUploaded = 0;

  private constructor(
    private readonly store: ObjectStore,
    private readonly prefix: ObjectUrl,
    readonly localDir: string,
    private readonly snapshotMs: number,
    private readonly log: ((line: string) => void) | undefined,
  ) {}

  /**
   * Prepares the local folder of `config.output` (an s3:// URL): continues a local folder that has a manifest
   * (uploading what the remote copy lacks), else fetches the remote folder when it has a manifest.
   */
  static async open(config: RunConfig, log?: (line: string) => void): Promise<RemoteOutput> {
    const prefix = parseObjectUrl(config.output);
    const localDir = config.storage.workDir ?? defaultWorkDir(config.output);
    await mkdir(localDir, { recursive: true });
    const remote = new RemoteOutput(
      objectStore(),
      prefix,
      localDir,
      config.storage.cacheSnapshotSeconds * 1000,
      log,
    );
    if (await pathExists(path.join(localDir, MANIFEST_FILE))) await remote.pushMissing();
    else await remote.pull();
    return remote;
  }

  /** The hook after each manifest entry (Checkpointer): resolves once the entry before it is up. */
  onEntry = (entry: ManifestCommit, manifestBytes: number): Promise<void> => {
    const before = this.chain;
    this.chain = before.then(() => this.uploadEntry(entry, manifestBytes));
    // A failed upload fails the next commit that waits on it, or finish().
    this.chain.catch(() => {});
    return before;
  };

  /** After the run: the queued uploads, then the run's end files, the cache snapshot and the whole manifest. */
  async finish(): Promise<void> {
    await this.chain;
    for (const name of [...END_FILES, DUPLICATES_FILE]) {
      const file = path.join(this.localDir, name);
      if (await pathExists(file)) await this.store.upload(file, this.at(name));
    }
    await this.uploadCacheSnapshot();
    await this.store.upload(path.join(this.localDir, MANIFEST_FILE), this.at(MANIFEST_FILE));
    this.log?.(`uploaded to ${formatObjectUrl(this.prefix)}`);
  }

  private async uploadEntry(entry: ManifestCommit, manifestBytes: number): Promise<void> {
    const files = [entry.part, entry.failedPart].filter((f): f is string => f !== null);
    await Promise.all(files.map((f) => this.store.upload(path.join(this.localDir, f), this.at(f))));
    // The notes named by notesBytes must be there before a manifest that names them.
    const notes = path.join(this.localDir, DUPLICATES_FILE);
    if (entry.notesBytes > this.notesUploaded && (await pathExists(notes))) {
      // The whole file (S3 has no append), only when the entry names notes the bucket does not have yet.
      await this.store.upload(notes, this.at(DUPLICATES_FILE));
      this.notesUploaded = entry.notesBytes;
    }
    if (Date.now() - this.lastSnapshot >= this.snapshotMs) await this.uploadCacheSnapshot();
    await this.store.putText(
      this.at(MANIFEST_FILE),
      await readPrefix(path.join(this.localDir, MANIFEST_FILE), manifestBytes),
    );
  }

  /** A consistent copy of the LLM cache (SQLite's backup, taken while the run writes it), uploaded. */
  private async uploadCacheSnapshot(): Promise<void> {
    this.lastSnapshot = Date.now();
    const cache = path.join(this.localDir, LLM_CACHE_FILE);
    if (!(await pathExists(cache))) return;
    const snapshot = path.join(this.localDir, `.${LLM_CACHE_FILE}.snapshot`);
    const db = new Database(cache, { readonly: true, fileMustExist: true });
    try {
      await db.backup(snapshot);
    } finally {
      db.close();
    }
    await this.store.upload(snapshot, this.at(LLM_CACHE_FILE));
    await rm(snapshot, { force: true });
  }

  /** Fetches the remote folder (everything under the prefix) when it holds a manifest. */
  private async pull(): Promise<void> {
    const manifest = await this.store.getText(this.at(MANIFEST_FILE));
    if (manifest === undefined) return;
    const base = this.at('').key;
    const objects = await this.store.list(`${formatObjectUrl(this.prefix).replace(/\/?$/, '/')}**`);
    for (const object of objects) {
      const name = object.url.key.slice(base.length);
      if (name === MANIFEST_FILE || name.startsWith('.')) continue;
      const file = path.join(this.localDir, name);
      await mkdir(path.dirname(file), { recursive: true });
      await (await open(file, 'w')).close();
      await this.store.download(object.url, file, 0, object.size, object.etag);
    }
    // A run starts its duplicate notes empty and its manifest may name none of them yet.
    const notes = path.join(this.localDir, DUPLICATES_FILE);
    if (!(await pathExists(notes))) await (await open(notes, 'w')).close();
    // The manifest last: a folder with one is a folder air continues.
    const handle = await open(path.join(this.localDir, MANIFEST_FILE), 'w');
    await handle.writeFile(manifest);
    await handle.close();
    this.log?.(`fetched ${objects.length} files of ${formatObjectUrl(this.prefix)} into ${this.localDir}`);
  }

  /** A local folder that is ahead of the remote one (a crash before its uploads): sends what is missing. */
  private async pushMissing(): Promise<void> {
    const manifest = await readManifest(this.localDir);
    if (manifest === undefined) return;
    const there = new Set(
      (await this.store.list(`${formatObjectUrl(this.prefix).replace(/\/?$/, '/')}**`)).map((o) => o.url.key),
    );
    const committed = manifest.commits
      .flatMap((c) => [c.part, c.failedPart])
      .filter((f): f is string => f !== null);
    for (const name of committed) {
      if (!there.has(this.at(name).key))
        await this.store.upload(path.join(this.localDir, name), this.at(name));
    }
    const notes = path.join(this.localDir, DUPLICATES_FILE);
    if (await pathExists(notes)) await this.store.upload(notes, this.at(DUPLICATES_FILE));
    await this.store.upload(path.join(this.localDir, MANIFEST_FILE), this.at(MANIFEST_FILE));
  }

  private at(name: string): ObjectUrl {
    return objectUnder(this.prefix, name);
  }
}

/** The default local folder of an s3:// output: one per output URL, so a rerun on this machine finds it. */
export function defaultWorkDir(output: string): string {
  const id = createHash('sha256').update(output).digest('hex').slice(0, 16);
  return path.join(os.tmpdir(), 'air-work', id);
}

/** The first `bytes` of a file (the manifest as it stood after one entry). */
async function readPrefix(file: string, bytes: number): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
