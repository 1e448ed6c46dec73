import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { AirError } from '../errors.js';
import { objectStore } from './object-store/store.js';
import { formatObjectUrl, isObjectUrl, parseObjectUrl } from './object-store/url.js';

export interface Shard {
  /** Absolute path, for reading; or an object's `s3://bucket/key` URL (pipeline/io/object-store/). */
  readonly path: string;
  /** Path relative to the input root: stable across machines, used in ids and the ledger. */
  readonly label: string;
  readonly size: number;
  /**
   * Read only file rows [start, end) of it: a slice of consecutive whole row groups (a queue unit of a big
   * shard). Undefined: every row.
   */
  readonly rows?: RowSlice;
}

export interface RowSlice {
  readonly start: number;
  readonly end: number;
}

/**
 * Turns `--input` values (files, folders, globs, and the same in object storage: `s3://bucket/prefix/`,
 * `s3://bucket/prefix/*.parquet`) into a sorted, de-duplicated list of Parquet shards. A folder or a prefix
 * means every `*.parquet` below it. Order is by label, so ids and part files are reproducible.
 */
export async function resolveShards(inputs: readonly string[]): Promise<Shard[]> {
  const found = new Map<string, Shard>();
  for (const input of inputs) {
    for (const shard of await resolveOne(input)) {
      const real = isObjectUrl(shard.path) ? shard.path : await realpath(shard.path);
      if (!found.has(real)) found.set(real, shard);
    }
  }
  const shards = [...found.values()].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  // Labels key the ledger, default ids and resumes: two files under one label would be confused.
  for (let i = 1; i < shards.length; i++) {
    if (shards[i]!.label === shards[i - 1]!.label) {
      throw new AirError(
        'AIR_USAGE',
        `two input files are both named "${shards[i]!.label}" (${shards[i - 1]!.path}, ${shards[i]!.path}): ` +
          'pass their common parent folder as --input, so that their names differ',
      );
    }
  }
  return shards;
}

async function resolveOne(input: string): Promise<Shard[]> {
  if (isObjectUrl(input)) return resolveObjects(input);
  if (isDynamicPattern(input)) {
    const base = globBase(input);
    const files = await glob(input, { absolute: true, onlyFiles: true, dot: false });
    if (files.length === 0)
      throw new AirError('AIR_INPUT_NOT_FOUND', `${input}: the pattern matches no file`);
    return Promise.all(files.map((f) => shardAt(f, path.relative(path.resolve(base), f))));
  }
  const info = await stat(input).catch(() => undefined);
  if (info === undefined) throw new AirError('AIR_INPUT_NOT_FOUND', `${input}: no such file or folder`);
  if (info.isDirectory()) {
    const files = await glob('**/*.parquet', { cwd: input, absolute: true, onlyFiles: true });
    if (files.length === 0) {
      throw new AirError('AIR_INPUT_NOT_FOUND', `${input}: the folder holds no *.parquet file`);
    }
    return Promise.all(files.map((f) => shardAt(f, path.relative(path.resolve(input), f))));
  }
  return [await shardAt(path.resolve(input), path.basename(input))];
}

/** Objects under a prefix or matching a glob, labelled by their key below the listing's fixed folders. */
async function resolveObjects(input: string): Promise<Shard[]> {
  const url = parseObjectUrl(input);
  const dynamic = isDynamicPattern(url.key);
  const folder = url.key.endsWith('/') || url.key === '';
  const listed = await objectStore().list(folder ? `${formatObjectUrl(url)}**/*.parquet` : input);
  if (listed.length === 0) {
    throw new AirError(
      'AIR_INPUT_NOT_FOUND',
      `${input}: ${dynamic ? 'the pattern matches no object' : 'the prefix holds no *.parquet object'}`,
    );
  }
  const base = folder ? url.key : dynamic ? globBase(url.key) : path.posix.dirname(url.key);
  const prefix = base === '.' || base === '' ? '' : base.endsWith('/') ? base : `${base}/`;
  return listed.map((object) => ({
    path: formatObjectUrl(object.url),
    label: object.url.key.slice(prefix.length),
    size: object.size,
  }));
}

async function shardAt(file: string, label: string): Promise<Shard> {
  const info = await stat(file);
  return { path: file, label: label.split(path.sep).join('/'), size: info.size };
}

/** The fixed leading folders of a glob, e.g. `data/web` for `data/web/**\/*.parquet`. */
function globBase(pattern: string): string {
  const parts = pattern.split('/');
  const fixed: string[] = [];
  for (const part of parts) {
    if (isDynamicPattern(part)) break;
    fixed.push(part);
  }
  return fixed.length === 0 ? '.' : fixed.join('/') || '/';
}
