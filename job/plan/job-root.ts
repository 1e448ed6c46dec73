import { mkdir, open, readdir, readFile, rm, rmdir, stat, utimes } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { AirError } from '../../pipeline/errors.js';
import { writeAtomically } from '../../pipeline/io/files.js';
import { isMissingObject, objectStore } from '../../pipeline/io/object-store/store.js';
import {
  formatObjectUrl,
  isObjectUrl,
  objectUnder,
  parseObjectUrl,
  type ObjectUrl,
} from '../../pipeline/io/object-store/url.js';
import { defaultWorkDir } from '../remote-output.js';

/** A file of the root: its size and last write (ms since the epoch). */
export interface RootFile {
  readonly size: number;
  readonly modifiedMs: number;
}

/**
 * The root of a job run by many ranks (plan.json, completions/, heartbeats/, dedupe/, ranks/): a folder every
 * rank mounts, or a prefix in a bucket (`s3://bucket/job/`). Ranks coordinate through small files only, so
 * both offer the same few operations; names are relative to the root, `/`-separated.
 *
 * Work that needs files on disk (the dedupe keys pass and global step, merge) runs in `localDir`, laid out as
 * the root: for a folder that is the root itself and `push`/`pull` do nothing; for a bucket it is a scratch
 * folder of this machine, and they copy one file up or down.
 */
export interface JobRoot {
  /** As given: a folder, or an `s3://` prefix. */
  readonly location: string;
  readonly localDir: string;
  /** Where `name` is, as a path or an `s3://` URL (an output, a message). */
  at(name: string): string;
  /** A small file's text; undefined when there is none. */
  readText(name: string): Promise<string | undefined>;
  /** Replaces a small file whole: a reader sees the old text or the new one. */
  writeText(name: string, text: string): Promise<void>;
  /** Creates `name` holding `text` unless it exists; true when this call created it (see BucketRoot). */
  createExclusive(name: string, text: string): Promise<boolean>;
  /** Marks `name` as written now, keeping its text (a lock's refresh). */
  touch(name: string): Promise<void>;
  remove(name: string): Promise<void>;
  stat(name: string): Promise<RootFile | undefined>;
  /** Whether `name` is a file, or a folder with something in it. */
  has(name: string): Promise<boolean>;
  /** The names of the files directly in folder `dir` (one listing: cheaper than asking for each). */
  names(dir: string): Promise<Set<string>>;
  /** Copies `localDir/name` to the root. */
  push(name: string): Promise<void>;
  /** Copies `name` from the root to `localDir/name`; false when the root has no such file. */
  pull(name: string): Promise<boolean>;
  /** Removes the local copy a pull made (a bucket root's scratch stays bounded). */
  release(name: string): Promise<void>;
  /** Removes a bucket root's whole local folder once this process is done with it (a folder root: nothing). */
  dispose(): Promise<void>;
}

/**
 * The root at `location`: a bucket prefix for `s3://…`, else a local folder. A bucket root's local folder is made
 * under `workDir` (the plan's `storage.workDir`, for machines whose /tmp is small), else under the temp folder.
 */
export function jobRoot(location: string, workDir?: string): JobRoot {
  return isObjectUrl(location) ? new BucketRoot(location, workDir) : new LocalRoot(location);
}

/** Fetches of a root file that keeps being replaced while it is read, before the change is an error. */
const PULL_ATTEMPTS = 5;

/** Tells this process's local folders apart from those of another with the same pid (containers' pid 1). */
const PROCESS_TAG = `${process.pid}-${randomBytes(4).toString('hex')}`;

class LocalRoot implements JobRoot {
  constructor(readonly location: string) {}

  get localDir(): string {
    return this.location;
  }

  at(name: string): string {
    return path.join(this.location, name);
  }

  async readText(name: string): Promise<string | undefined> {
    return readFile(this.at(name), 'utf8').catch(() => undefined);
  }

  async writeText(name: string, text: string): Promise<void> {
    await mkdir(path.dirname(this.at(name)), { recursive: true });
    await writeAtomically(this.at(name), text);
  }

  async createExclusive(name: string, text: string): Promise<boolean> {
    await mkdir(path.dirname(this.at(name)), { recursive: true });
    let handle;
    try {
      handle = await open(this.at(name), 'wx');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
    try {
      await handle.writeFile(text);
    } finally {
      await handle.close();
    }
    return true;
  }

  async touch(name: string): Promise<void> {
    const now = new Date();
    await utimes(this.at(name), now, now);
  }

  async remove(name: string): Promise<void> {
    await rm(this.at(name), { force: true });
  }

  async stat(name: string): Promise<RootFile | undefined> {
    const info = await stat(this.at(name)).catch(() => undefined);
    return info === undefined ? undefined : { size: info.size, modifiedMs: info.mtimeMs };
  }

  async has(name: string): Promise<boolean> {
    return (await stat(this.at(name)).catch(() => undefined)) !== undefined;
  }

  async names(dir: string): Promise<Set<string>> {
    const entries = await readdir(this.at(dir), { withFileTypes: true }).catch(() => []);
    return new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
  }

  async push(): Promise<void> {}

  async pull(name: string): Promise<boolean> {
    return this.has(name);
  }

  async release(): Promise<void> {}

  async dispose(): Promise<void> {}
}

/**
 * A root in a bucket. S3 has no exclusive create: `createExclusive` PUTs with `If-None-Match: *` (AWS S3 and
 * MinIO refuse it with 412 when the object exists) and reads the object back, so that on a server that ignores
 * the condition (s3rver) the last writer is the one that wins; two writers may then both believe they won, which
 * callers must tolerate (the global dedupe step is deterministic: README, "Object storage").
 */
class BucketRoot implements JobRoot {
  private readonly prefix: ObjectUrl;
  readonly location: string;
  readonly localDir: string;

  constructor(location: string, workDir: string | undefined) {
    const url = parseObjectUrl(location);
    this.prefix = {
      bucket: url.bucket,
      key: url.key === '' || url.key.endsWith('/') ? url.key : `${url.key}/`,
    };
    this.location = formatObjectUrl(this.prefix);
    // One folder per process: ranks of one machine (two Slurm tasks, one TMPDIR) never write each other's copies,
    // and two ranks that both believe they hold the dedupe lock (see above) run the step apart.
    const base = workDir === undefined ? defaultWorkDir(this.location) : path.join(workDir, 'job-root');
    this.localDir = path.join(base, `root-${PROCESS_TAG}`);
  }

  at(name: string): string {
    return formatObjectUrl(this.url(name));
  }

  readText(name: string): Promise<string | undefined> {
    return objectStore().getText(this.url(name));
  }

  writeText(name: string, text: string): Promise<void> {
    return objectStore().putText(this.url(name), text);
  }

  async createExclusive(name: string, text: string): Promise<boolean> {
    // Read back either way: a server that ignores If-None-Match may have let a later writer replace ours, and
    // a PUT that landed but whose reply was lost comes back from its retry as "exists" (our own text).
    await objectStore().putIfAbsent(this.url(name), text);
    return (await this.readText(name)) === text;
  }

  async touch(name: string): Promise<void> {
    // S3 cannot change a date alone: the same text again. Gone meanwhile (released): nothing to refresh.
    const text = await this.readText(name);
    if (text !== undefined) await this.writeText(name, text);
  }

  remove(name: string): Promise<void> {
    return objectStore().delete(this.url(name));
  }

  async stat(name: string): Promise<RootFile | undefined> {
    try {
      const info = await objectStore().head(this.url(name));
      return { size: info.size, modifiedMs: info.modifiedMs };
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw error;
    }
  }

  async has(name: string): Promise<boolean> {
    if ((await this.stat(name)) !== undefined) return true;
    return (await objectStore().list(`${this.at(name).replace(/\/?$/, '/')}`)).length > 0;
  }

  async names(dir: string): Promise<Set<string>> {
    const base = this.url(`${dir}/`).key;
    const listed = await objectStore().list(formatObjectUrl(this.url(`${dir}/`)));
    return new Set(listed.map((o) => o.url.key.slice(base.length)).filter((n) => !n.includes('/')));
  }

  push(name: string): Promise<void> {
    return objectStore().upload(path.join(this.localDir, name), this.url(name));
  }

  async pull(name: string): Promise<boolean> {
    const store = objectStore();
    const file = path.join(this.localDir, name);
    // A running rank rewrites its manifest after every commit: a version replaced between the HEAD and the GET
    // (pinned to the HEAD's ETag) is fetched again, as it now is.
    for (let attempt = 1; ; attempt++) {
      try {
        const info = await store.head(this.url(name));
        await mkdir(path.dirname(file), { recursive: true });
        // download() writes into an existing file at offsets: start it empty (a stale longer copy would stay long).
        await (await open(file, 'w')).close();
        await store.download(info.url, file, 0, info.size, info.etag);
        return true;
      } catch (error) {
        if (isMissingObject(error)) {
          await rm(file, { force: true });
          return false;
        }
        if (
          !(error instanceof AirError && error.code === 'AIR_STORAGE_CHANGED') ||
          attempt === PULL_ATTEMPTS
        ) {
          throw error;
        }
      }
    }
  }

  async release(name: string): Promise<void> {
    await rm(path.join(this.localDir, name), { force: true });
  }

  async dispose(): Promise<void> {
    await rm(this.localDir, { recursive: true, force: true });
    // The root's folder too, unless another process of this machine still works in it.
    await rmdir(path.dirname(this.localDir)).catch(() => {});
  }

  private url(name: string): ObjectUrl {
    return objectUnder(this.prefix, name);
  }
}
