import { open, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parquetMetadata } from 'hyparquet';
import type { ObjectInfo, ObjectStore } from './store.js';
import { formatObjectUrl } from './url.js';

/** One ranged GET covers the footer of most shards (a footer is a few KB to a few MB). */
const TAIL_GUESS = 256 * 1024;
/** Objects this small are fetched whole. */
const WHOLE_BELOW = 1024 * 1024;

/**
 * A remote Parquet shard read through local stand-ins: sparse files of the object's size that hold its head
 * magic, its tail (page indexes, bloom filters, the footer) and at most one row group, at their own offsets,
 * so DuckDB reads them as it reads a local shard while disk holds a row group or two, never the object. The
 * tail waits in a local file (not in memory: a run may list thousands of objects).
 * The measured choice over hyparquet on ranged GETs and whole-object staging: bench/RESULTS-s3.md.
 */
export class StagedShard {
  private count = 0;

  private constructor(
    private readonly store: ObjectStore,
    readonly object: ObjectInfo,
    private readonly dir: string,
    private readonly name: string,
    private readonly head: Uint8Array,
    /** A local file holding the object's bytes from `tailStart` to its end (kept on disk, not in memory). */
    private readonly tailFile: string,
    private readonly tailStart: number,
    /** Byte range [start, end) of each row group's column chunks; empty when the footer did not parse. */
    readonly rowGroups: ReadonlyArray<readonly [number, number]>,
  ) {}

  /** The object's URL, for messages. */
  get url(): string {
    return formatObjectUrl(this.object.url);
  }

  /** Fetches the head and tail of `object` (one or two ranged GETs of that version). */
  static async open(store: ObjectStore, object: ObjectInfo, dir: string, name: string): Promise<StagedShard> {
    const { size, etag } = object;
    const tailFile = path.join(dir, `${name}.tail`);
    if (size <= WHOLE_BELOW) {
      const all = await store.read(object.url, 0, size, etag);
      await writeFile(tailFile, all);
      const groups = rowGroupRanges(all, size);
      return new StagedShard(store, object, dir, name, all.slice(0, 4), tailFile, 0, groups);
    }
    let tailStart = size - TAIL_GUESS;
    let tail = await store.read(object.url, tailStart, size, etag);
    const footerLength = new DataView(tail.buffer, tail.byteOffset, tail.byteLength).getUint32(
      tail.length - 8,
      true,
    );
    if (footerLength + 8 > tail.length && footerLength + 8 <= size - 4) {
      tailStart = size - 8 - footerLength;
      tail = await store.read(object.url, tailStart, size, etag);
    }
    const head = await store.read(object.url, 0, 4, etag);
    const groups = rowGroupRanges(tail, size);
    // Page indexes and bloom filters sit between the last row group and the footer: keep them with the tail.
    const lastEnd = groups.reduce((end, [, e]) => Math.max(end, e), 0);
    if (groups.length > 0 && lastEnd < tailStart) {
      tailStart = lastEnd;
      tail = await store.read(object.url, tailStart, size, etag);
    } else if (groups.length > 0 && lastEnd > tailStart) {
      // The guess reached into the last row group: those bytes come with that row group.
      tail = tail.subarray(lastEnd - tailStart);
      tailStart = lastEnd;
    }
    await writeFile(tailFile, tail);
    return new StagedShard(store, object, dir, name, head, tailFile, tailStart, groups);
  }

  /** A stand-in holding the footer only: enough to inspect the shard (schema, row groups). */
  async footerFile(): Promise<string> {
    return this.stage(undefined);
  }

  /**
   * A stand-in holding row groups [first, last) as well (one ranged GET: they are contiguous in the object);
   * the caller removes it when done (see `remove`).
   */
  async rowGroupFile(first: number, last = first + 1): Promise<string> {
    return this.stage([first, last]);
  }

  async remove(file: string): Promise<void> {
    await rm(file, { force: true });
  }

  private async stage(groups: readonly [number, number] | undefined): Promise<string> {
    const file = path.join(this.dir, `${this.name}-${this.count++}.parquet`);
    const handle = await open(file, 'w');
    try {
      // A sparse file: only the ranges written below take disk space.
      await handle.truncate(this.object.size);
      await handle.write(this.head, 0, this.head.length, 0);
      const tail = await readFile(this.tailFile);
      await handle.write(tail, 0, tail.length, this.tailStart);
    } finally {
      await handle.close();
    }
    if (groups !== undefined) {
      const start = this.rowGroups[groups[0]]![0];
      const end = this.rowGroups[groups[1] - 1]![1];
      await this.store.download(
        this.object.url,
        file,
        start,
        Math.min(end, this.tailStart),
        this.object.etag,
      );
    }
    return file;
  }
}

/** Each row group's byte range from the footer at the end of `tail`; [] when it does not parse. */
function rowGroupRanges(tail: Uint8Array, size: number): Array<[number, number]> {
  let metadata: ReturnType<typeof parquetMetadata>;
  try {
    metadata = parquetMetadata(tail);
  } catch {
    return []; // not Parquet, truncated or encrypted: DuckDB's inspection of the stand-in says which
  }
  return metadata.row_groups.map((group) => {
    let start = size;
    let end = 0;
    for (const column of group.columns) {
      const meta = column.meta_data;
      if (meta === undefined) continue;
      const data = Number(meta.data_page_offset);
      // Some writers put 0 here for "no dictionary page".
      const dictionary = Number(meta.dictionary_page_offset ?? 0);
      const from = dictionary > 0 && dictionary < data ? dictionary : data;
      start = Math.min(start, from);
      end = Math.max(end, from + Number(meta.total_compressed_size));
    }
    return [Math.min(start, end), end];
  });
}
