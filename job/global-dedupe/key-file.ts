import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { writeSync } from 'node:fs';
import { endianness } from 'node:os';
import path from 'node:path';
import { GlobalDedupeError } from './errors.js';

/**
 * The keys pass's files, four per shard under `<root>/dedupe/keys/`, named by the shard's index in the plan:
 * - `<i>.keys`: one fixed-size record per row that passed the filters, in row order, of 32-bit words
 *   (little-endian): row, id offset and id length (UTF-8 bytes in `<i>.ids`), the id's 64-bit hash (what
 *   unique_ids compares), the 64-bit exact key (normalize.ts exactKeyInto), then the `bands` 32-bit LSH band
 *   keys (lsh.ts bandKeysInto; none when near dedupe is off): 28 + 4*bands bytes, 92 at 16 bands;
 * - `<i>.sketch`: the record's 8-bit MinHash sketch (numPerm bytes, 128 by default), what LshIndex verifies
 *   candidates with; apart from the keys so the global step's sequential pass does not read it, and the
 *   decider reads it at random by record number;
 * - `<i>.ids`: the ids, UTF-8, back to back (only read to name `duplicateOf` in drop lists);
 * - `<i>.json`: KeyFileMeta, written last: its presence marks the shard's keys complete.
 */
export const ROW = 0;
export const ID_OFFSET = 1;
export const ID_LENGTH = 2;
export const ID_HASH = 3;
export const EXACT_KEY = 5;
export const BAND_KEYS = 7;

export function recordWords(bands: number): number {
  return BAND_KEYS + bands;
}

/** What the keys were computed for; every shard of one global step must agree. */
export interface DedupeSettings {
  readonly ids: boolean;
  readonly exact: boolean;
  /** Null when near dedupe is off. */
  readonly near: {
    readonly shingle: number;
    readonly numPerm: number;
    readonly bands: number;
    readonly threshold: number;
    readonly seed: number;
  } | null;
}

export interface KeyFileMeta {
  readonly format: 'air-dedupe-keys';
  readonly version: 1;
  readonly index: number;
  readonly shard: string;
  readonly records: number;
  readonly idBytes: number;
  readonly dedupe: DedupeSettings;
  /** The settings that decide which rows reach dedupe (source, length and quality filters), as JSON. */
  readonly filters: string;
}

export function keysDir(root: string): string {
  return path.join(root, 'dedupe', 'keys');
}

function fileOf(root: string, index: number, ext: 'keys' | 'sketch' | 'ids' | 'json'): string {
  return path.join(keysDir(root), `${index}.${ext}`);
}

/** The files are written and read in the machine's byte order, checked to be little-endian. */
function checkEndianness(): void {
  if (endianness() !== 'LE') {
    throw new GlobalDedupeError('AIR_DEDUPE_UNSUPPORTED', 'dedupe key files need a little-endian machine');
  }
}

/** Appends bytes to a file through a 1 MiB buffer, synchronously. */
class BufferedFile {
  private readonly fd: number;
  private readonly buffer = Buffer.allocUnsafe(1 << 20);
  private used = 0;
  bytes = 0;

  constructor(readonly file: string) {
    this.fd = openSync(file, 'w');
  }

  write(bytes: Uint8Array): void {
    if (this.used + bytes.length > this.buffer.length) this.flush();
    if (bytes.length > this.buffer.length) {
      writeFully(this.fd, bytes);
    } else {
      this.buffer.set(bytes, this.used);
      this.used += bytes.length;
    }
    this.bytes += bytes.length;
  }

  flush(): void {
    writeFully(this.fd, this.buffer.subarray(0, this.used));
    this.used = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Writes one shard's key files; `finish` renames them into place and writes the meta last. */
export class KeyFileWriter {
  private readonly keys: BufferedFile;
  private readonly sketches: BufferedFile | undefined;
  private readonly ids: BufferedFile;
  private readonly words: number;
  private readonly record: Uint32Array;
  private readonly recordBytes: Uint8Array;
  private readonly sketch: Uint8Array;
  private records = 0;
  private lastRow = -1;

  constructor(
    private readonly root: string,
    readonly index: number,
    readonly shard: string,
    private readonly settings: DedupeSettings,
    private readonly filters: string,
  ) {
    checkEndianness();
    this.words = recordWords(settings.near?.bands ?? 0);
    this.record = new Uint32Array(this.words);
    this.recordBytes = new Uint8Array(this.record.buffer);
    this.sketch = new Uint8Array(settings.near?.numPerm ?? 0);
    this.keys = new BufferedFile(`${fileOf(root, index, 'keys')}.tmp`);
    this.ids = new BufferedFile(`${fileOf(root, index, 'ids')}.tmp`);
    this.sketches = settings.near ? new BufferedFile(`${fileOf(root, index, 'sketch')}.tmp`) : undefined;
  }

  /** Rows must come in ascending order; `bandKeys` and `sketch` only when near dedupe is on. */
  append(
    row: number,
    id: string,
    idHash: Uint32Array,
    exactKey: Uint32Array,
    bandKeys?: Uint32Array,
    sketch?: Uint8Array,
  ): void {
    if (row <= this.lastRow) {
      throw new Error(`${this.shard}: row ${row} after row ${this.lastRow}: rows must come in order`);
    }
    this.lastRow = row;
    const idBytes = Buffer.from(id, 'utf8');
    if (this.ids.bytes + idBytes.length > 0xffffffff) {
      throw new GlobalDedupeError('AIR_DEDUPE_UNSUPPORTED', `${this.shard}: more than 4 GiB of ids`);
    }
    const r = this.record;
    r[ROW] = row;
    r[ID_OFFSET] = this.ids.bytes;
    r[ID_LENGTH] = idBytes.length;
    r[ID_HASH] = idHash[0]!;
    r[ID_HASH + 1] = idHash[1]!;
    r[EXACT_KEY] = exactKey[0]!;
    r[EXACT_KEY + 1] = exactKey[1]!;
    if (this.sketches !== undefined) {
      if (bandKeys === undefined || sketch === undefined) throw new Error('near dedupe keys missing');
      r.set(bandKeys, BAND_KEYS);
      this.sketches.write(sketch);
    }
    this.keys.write(this.recordBytes);
    this.ids.write(idBytes);
    this.records++;
  }

  finish(): KeyFileMeta {
    for (const file of [this.keys, this.ids, this.sketches]) file?.close();
    for (const file of [this.keys, this.ids, this.sketches]) {
      if (file !== undefined) renameSync(file.file, file.file.slice(0, -'.tmp'.length));
    }
    const meta: KeyFileMeta = {
      format: 'air-dedupe-keys',
      version: 1,
      index: this.index,
      shard: this.shard,
      records: this.records,
      idBytes: this.ids.bytes,
      dedupe: this.settings,
      filters: this.filters,
    };
    const json = fileOf(this.root, this.index, 'json');
    const fd = openSync(`${json}.tmp`, 'w');
    writeFully(fd, Buffer.from(JSON.stringify(meta, null, 1) + '\n'));
    closeSync(fd);
    renameSync(`${json}.tmp`, json);
    return meta;
  }

  /** Closes and deletes the unfinished files. */
  abort(): void {
    for (const file of [this.keys, this.ids, this.sketches]) {
      if (file === undefined) continue;
      try {
        file.close();
      } catch {
        // already closed
      }
      rmSync(file.file, { force: true });
    }
  }
}

/**
 * Whether shard `index` has finished key files for `label`, written with these dedupe and filter settings: the
 * meta is written last (see KeyFileWriter.finish), so its presence says the files are whole.
 */
export function keyFilesComplete(
  root: string,
  index: number,
  label: string,
  settings: DedupeSettings,
  filters: string,
): boolean {
  let meta: unknown;
  try {
    meta = JSON.parse(readFileSync(fileOf(root, index, 'json'), 'utf8'));
  } catch {
    return false;
  }
  return keyMetaMatches(meta, index, label, settings, filters);
}

/** Whether a meta file (parsed) is that of finished key files of shard `index` under these settings. */
export function keyMetaMatches(
  value: unknown,
  index: number,
  label: string,
  settings: DedupeSettings,
  filters: string,
): boolean {
  const meta = value as Partial<KeyFileMeta> | undefined;
  return (
    meta?.format === 'air-dedupe-keys' &&
    meta.version === 1 &&
    meta.index === index &&
    meta.shard === label &&
    meta.filters === filters &&
    JSON.stringify(meta.dedupe) === JSON.stringify(settings)
  );
}

/** The key files of shard `index`, relative to `<root>/dedupe/keys/`, the meta last (its presence says whole). */
export function keyFileNames(index: number, settings: DedupeSettings): string[] {
  const exts = settings.near === null ? ['keys', 'ids', 'json'] : ['keys', 'ids', 'sketch', 'json'];
  return exts.map((ext) => `${index}.${ext}`);
}

/** Removes a shard's meta first (so the files never look complete while being replaced), then the rest. */
export function removeKeyFiles(root: string, index: number): void {
  for (const ext of ['json', 'keys', 'sketch', 'ids'] as const)
    rmSync(fileOf(root, index, ext), { force: true });
}

interface OpenShard {
  readonly meta: KeyFileMeta;
  readonly keys: number;
  readonly sketch: number | undefined;
  readonly ids: number;
}

/** Records per page of the sketch cache. */
const SKETCH_PAGE = 256;

/**
 * The key files of every shard of a plan, in plan order: record k of shard s has the global ordinal
 * `base[s] + k`, which is the order a single process meets the rows in.
 */
export class KeyFileSet {
  readonly settings: DedupeSettings;
  readonly total: number;
  readonly words: number;
  readonly numPerm: number;
  /** First ordinal of each shard, and the total at the end. */
  readonly bases: readonly number[];
  private readonly shards: OpenShard[];
  private readonly small = new Uint32Array(BAND_KEYS);
  private readonly pages = new Map<number, Uint8Array>();

  private constructor(
    shards: OpenShard[],
    private readonly maxPages: number,
  ) {
    this.shards = shards;
    const first = shards[0]?.meta;
    this.settings = first?.dedupe ?? { ids: false, exact: false, near: null };
    this.words = recordWords(this.settings.near?.bands ?? 0);
    this.numPerm = this.settings.near?.numPerm ?? 0;
    const bases = [0];
    for (const s of shards) bases.push(bases[bases.length - 1]! + s.meta.records);
    this.bases = bases;
    this.total = bases[bases.length - 1]!;
    if (this.total >= 0xffffffff) {
      throw new GlobalDedupeError(
        'AIR_DEDUPE_UNSUPPORTED',
        `${this.total} documents: a global step addresses at most 2^32 - 1 (split the plan)`,
      );
    }
  }

  /** Opens and checks the key files of `labels` (the plan's shards, in order). */
  static open(root: string, labels: readonly string[], sketchCacheMB = 16): KeyFileSet {
    checkEndianness();
    const shards: OpenShard[] = [];
    try {
      labels.forEach((label, index) => {
        const json = fileOf(root, index, 'json');
        if (!existsSync(json)) {
          throw new GlobalDedupeError(
            'AIR_DEDUPE_KEYS_INVALID',
            `${json}: no keys for shard ${index} (${label}); its rank has not finished the keys pass`,
          );
        }
        const meta = JSON.parse(readFileSync(json, 'utf8')) as KeyFileMeta;
        if (meta.format !== 'air-dedupe-keys' || meta.version !== 1) {
          throw new GlobalDedupeError('AIR_DEDUPE_KEYS_INVALID', `${json}: not a version 1 dedupe key file`);
        }
        if (meta.shard !== label || meta.index !== index) {
          throw new GlobalDedupeError(
            'AIR_DEDUPE_KEYS_INVALID',
            `${json}: keys of shard ${meta.index} (${meta.shard}), the plan has ${label} at ${index}`,
          );
        }
        const first = shards[0]?.meta;
        if (
          first !== undefined &&
          (JSON.stringify(first.dedupe) !== JSON.stringify(meta.dedupe) || first.filters !== meta.filters)
        ) {
          throw new GlobalDedupeError(
            'AIR_DEDUPE_KEYS_INVALID',
            `${json}: written with other dedupe or filter settings than shard 0 (${first.shard}); ` +
              'every rank must run with the same config',
          );
        }
        const words = recordWords(meta.dedupe.near?.bands ?? 0);
        const keys = openChecked(fileOf(root, index, 'keys'), meta.records * words * 4);
        const ids = openChecked(fileOf(root, index, 'ids'), meta.idBytes);
        const sketch = meta.dedupe.near
          ? openChecked(fileOf(root, index, 'sketch'), meta.records * meta.dedupe.near.numPerm)
          : undefined;
        shards.push({ meta, keys, ids, sketch });
      });
    } catch (error) {
      closeShards(shards);
      throw error;
    }
    const numPerm = shards[0]?.meta.dedupe.near?.numPerm ?? 1;
    return new KeyFileSet(shards, Math.max(4, Math.floor((sketchCacheMB << 20) / (SKETCH_PAGE * numPerm))));
  }

  get metas(): KeyFileMeta[] {
    return this.shards.map((s) => s.meta);
  }

  /** Bytes of every key, sketch and id file. */
  get diskBytes(): { keys: number; sketches: number; ids: number } {
    let keys = 0;
    let sketches = 0;
    let ids = 0;
    for (const s of this.shards) {
      keys += s.meta.records * this.words * 4;
      sketches += s.meta.records * this.numPerm;
      ids += s.meta.idBytes;
    }
    return { keys, sketches, ids };
  }

  /** The plan index of the shard holding `ordinal`. */
  shardOf(ordinal: number): number {
    let lo = 0;
    let hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.bases[mid]! <= ordinal) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Visits every record in ordinal order: its words are `records[at .. at + words)`. */
  scan(visit: (ordinal: number, records: Uint32Array, at: number) => void, chunkRecords = 8192): void {
    const words = this.words;
    const chunk = new Uint32Array(chunkRecords * words);
    const bytes = Buffer.from(chunk.buffer);
    let ordinal = 0;
    for (const shard of this.shards) {
      let left = shard.meta.records;
      let position = 0;
      while (left > 0) {
        const n = Math.min(left, chunkRecords);
        readFully(shard.keys, bytes, n * words * 4, position);
        position += n * words * 4;
        for (let i = 0, at = 0; i < n; i++, at += words) visit(ordinal++, chunk, at);
        left -= n;
      }
    }
  }

  /** Row number and id of the record at `ordinal` (random access). */
  locate(ordinal: number): { readonly shard: number; readonly row: number; readonly id: string } {
    const shard = this.shardOf(ordinal);
    const s = this.shards[shard]!;
    const bytes = Buffer.from(this.small.buffer);
    readFully(s.keys, bytes, BAND_KEYS * 4, (ordinal - this.bases[shard]!) * this.words * 4);
    const length = this.small[ID_LENGTH]!;
    const id = Buffer.allocUnsafe(length);
    readFully(s.ids, id, length, this.small[ID_OFFSET]!);
    return { shard, row: this.small[ROW]!, id: id.toString('utf8') };
  }

  /**
   * The page holding `ordinal`'s sketch and where in it the sketch starts, through an LRU cache of pages of
   * 256 records (the decider asks for a document and its earlier candidates: recent pages repeat).
   */
  sketchAt(ordinal: number): { readonly page: Uint8Array; readonly at: number } {
    const shard = this.shardOf(ordinal);
    const local = ordinal - this.bases[shard]!;
    const pageNo = Math.floor(local / SKETCH_PAGE);
    const key = this.bases[shard]! + pageNo * SKETCH_PAGE;
    let page = this.pages.get(key);
    if (page !== undefined) {
      this.pages.delete(key);
    } else {
      const s = this.shards[shard]!;
      const records = Math.min(SKETCH_PAGE, s.meta.records - pageNo * SKETCH_PAGE);
      // The least recently used page's buffer is reused: evicted buffers would be garbage V8 frees late.
      if (this.pages.size >= this.maxPages) {
        const [oldest, buffer] = this.pages.entries().next().value!;
        this.pages.delete(oldest);
        page = buffer;
      } else {
        page = new Uint8Array(SKETCH_PAGE * this.numPerm);
      }
      readFully(s.sketch!, page, records * this.numPerm, pageNo * SKETCH_PAGE * this.numPerm);
    }
    this.pages.set(key, page);
    return { page, at: (local - pageNo * SKETCH_PAGE) * this.numPerm };
  }

  close(): void {
    closeShards(this.shards);
    this.pages.clear();
  }
}

function openChecked(file: string, bytes: number): number {
  if (!existsSync(file)) {
    throw new GlobalDedupeError('AIR_DEDUPE_KEYS_INVALID', `${file}: missing`);
  }
  const fd = openSync(file, 'r');
  const size = fstatSync(fd).size;
  if (size !== bytes) {
    closeSync(fd);
    throw new GlobalDedupeError(
      'AIR_DEDUPE_KEYS_INVALID',
      `${file}: ${size} bytes, its meta says ${bytes}; rerun the keys pass for this shard`,
    );
  }
  return fd;
}

function readFully(fd: number, into: Uint8Array, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const got = readSync(fd, into, done, length - done, position + done);
    if (got === 0) throw new GlobalDedupeError('AIR_DEDUPE_KEYS_INVALID', 'key file ended early');
    done += got;
  }
}

function closeShards(shards: readonly OpenShard[]): void {
  for (const s of shards) {
    for (const fd of [s.keys, s.ids, s.sketch]) if (fd !== undefined) closeSync(fd);
  }
}
