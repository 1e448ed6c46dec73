import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';

/**
 * External sort of fixed-size records of 32-bit words: records are buffered, each full buffer is sorted in
 * memory (LSD radix, 16-bit digits) and written as a run, and the runs are merged with a binary heap. Memory
 * is the buffer (words * 4 * maxRecords bytes, grown by doubling up to that), a shared radix scratch of one
 * buffer, and one read chunk per run while merging.
 *
 * Stable on the key words: records with equal keys come out in the order they were pushed (within a run the
 * radix sort is stable; across runs the heap breaks ties by run number, and runs hold consecutive pushes).
 * The global dedupe pushes in ordinal order, so equal keys come out earliest first, as a single process meets
 * them. Synchronous I/O: this is a batch step with nothing else to do meanwhile.
 */
export interface SorterOptions {
  /** Folder for the run files (created by the caller). */
  readonly dir: string;
  /** File name prefix of the runs, unique in `dir`. */
  readonly name: string;
  /** 32-bit words per record (1-4). */
  readonly words: number;
  /** Leading words sorted on, most significant first. */
  readonly keyWords: number;
  /** Records held in memory before a run is written. */
  readonly maxRecords: number;
  /** Records expected in all, when known: the buffer is allocated once at min(expected, maxRecords). */
  readonly expected?: number;
}

/** A sorted stream: after `next()` returns true the record is `records[at .. at + words)`. */
export interface SortedCursor {
  next(): boolean;
  readonly records: Uint32Array;
  readonly at: number;
  close(): void;
}

/** Records read from a run file per refill while merging. */
const CHUNK_RECORDS = 8192;

/** The radix sort's second buffer, shared by every sorter: sorts run one at a time. */
let scratch: Uint32Array = new Uint32Array(0);
/** The radix sort's digit counts (256 KiB), reused: one per call would be garbage V8 frees late. */
const counts = new Uint32Array(65536);

export class ExternalSorter {
  readonly words: number;
  readonly keyWords: number;
  private buffer: Uint32Array;
  private count = 0;
  private pushed = 0;
  private readonly runs: string[] = [];
  private sealed = false;
  /** Bytes written to run files so far. */
  spilledBytes = 0;

  constructor(private readonly options: SorterOptions) {
    const { words, keyWords, maxRecords } = options;
    if (!(words >= 1 && words <= 4 && keyWords >= 1 && keyWords <= words && maxRecords >= 1)) {
      throw new RangeError(`bad sorter shape: ${words} words, ${keyWords} key words, ${maxRecords} records`);
    }
    this.words = words;
    this.keyWords = keyWords;
    // Growing by doubling leaves the smaller copies as garbage V8 frees late: allocate once when the size is known.
    this.buffer = new Uint32Array(Math.max(1, Math.min(maxRecords, options.expected ?? 1024)) * words);
  }

  /** Records pushed in all. */
  get size(): number {
    return this.pushed;
  }

  /** Bytes of the in-memory buffer. */
  get bufferBytes(): number {
    return this.buffer.byteLength;
  }

  push(a: number, b = 0, c = 0, d = 0): void {
    if (this.sealed) throw new Error('push after the sorter was opened for reading');
    const words = this.words;
    if (this.count * words === this.buffer.length) {
      if (this.count >= this.options.maxRecords) this.spill();
      else this.grow();
    }
    const at = this.count * words;
    const buffer = this.buffer;
    buffer[at] = a;
    if (words > 1) buffer[at + 1] = b;
    if (words > 2) buffer[at + 2] = c;
    if (words > 3) buffer[at + 3] = d;
    this.count++;
    this.pushed++;
  }

  /** The records in sorted order; the sorter takes no more pushes. Close the cursor to delete the runs. */
  cursor(): SortedCursor {
    this.sealed = true;
    if (this.runs.length === 0) {
      const sorted = radixSort(this.buffer, this.count, this.words, this.keyWords);
      // The cursor must own its records: if they ended in the shared scratch, the buffer becomes the scratch.
      if (sorted === scratch) scratch = this.buffer;
      this.buffer = new Uint32Array(0);
      return new ArrayCursor(sorted, this.count, this.words);
    }
    if (this.count > 0) this.spill();
    this.buffer = new Uint32Array(0);
    return new MergeCursor(this.runs, this.words, this.keyWords);
  }

  private grow(): void {
    const records = Math.min(this.options.maxRecords, (this.buffer.length / this.words) * 2);
    const bigger = new Uint32Array(records * this.words);
    bigger.set(this.buffer);
    this.buffer = bigger;
  }

  private spill(): void {
    const sorted = radixSort(this.buffer, this.count, this.words, this.keyWords);
    const file = path.join(this.options.dir, `${this.options.name}-${this.runs.length}.run`);
    const fd = openSync(file, 'w');
    try {
      writeAll(fd, sorted.subarray(0, this.count * this.words));
    } finally {
      closeSync(fd);
    }
    this.spilledBytes += this.count * this.words * 4;
    this.runs.push(file);
    // The sorted copy may be the scratch buffer: the buffer itself is reused for the next run.
    this.count = 0;
  }
}

/** Releases the shared radix scratch (after a global step). */
export function releaseSortScratch(): void {
  scratch = new Uint32Array(0);
}

function writeAll(fd: number, words: Uint32Array): void {
  const bytes = Buffer.from(words.buffer, words.byteOffset, words.byteLength);
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

/**
 * Stable LSD radix sort of the first `n` records on their first `keyWords` words, two 16-bit digits a word;
 * a digit every record shares is skipped. Returns whichever of `data` and the scratch holds the result.
 */
export function radixSort(data: Uint32Array, n: number, words: number, keyWords: number): Uint32Array {
  if (n < 2) return data;
  if (scratch.length < n * words) scratch = new Uint32Array(Math.max(n * words, data.length));
  let from: Uint32Array = data;
  let to: Uint32Array = scratch;
  for (let w = keyWords - 1; w >= 0; w--) {
    for (let shift = 0; shift <= 16; shift += 16) {
      counts.fill(0);
      for (let i = 0, at = w; i < n; i++, at += words) counts[(from[at]! >>> shift) & 0xffff]!++;
      if (counts[(from[w]! >>> shift) & 0xffff] === n) continue;
      let sum = 0;
      for (let digit = 0; digit < 65536; digit++) {
        const c = counts[digit]!;
        counts[digit] = sum;
        sum += c;
      }
      for (let i = 0, at = 0; i < n; i++, at += words) {
        const dst = counts[(from[at + w]! >>> shift) & 0xffff]!++ * words;
        for (let k = 0; k < words; k++) to[dst + k] = from[at + k]!;
      }
      const swap = from;
      from = to;
      to = swap;
    }
  }
  return from;
}

class ArrayCursor implements SortedCursor {
  at = 0;
  private index = -1;

  constructor(
    public records: Uint32Array,
    private count: number,
    private readonly words: number,
  ) {}

  next(): boolean {
    if (this.index + 1 >= this.count) return false;
    this.index++;
    this.at = this.index * this.words;
    return true;
  }

  /** Lets the records go (a closed cursor may stay referenced until the step ends). */
  close(): void {
    this.records = new Uint32Array(0);
    this.count = 0;
  }
}

/** One run being merged: a chunk of its records in memory. */
class RunReader {
  readonly chunk: Uint32Array;
  private readonly bytes: Buffer;
  private readonly fd: number;
  private length = 0;
  pos = 0;

  constructor(
    readonly file: string,
    private readonly words: number,
  ) {
    this.chunk = new Uint32Array(CHUNK_RECORDS * words);
    this.bytes = Buffer.from(this.chunk.buffer);
    this.fd = openSync(file, 'r');
  }

  /** Reads the next chunk; false at the end of the run. */
  refill(): boolean {
    let filled = 0;
    for (;;) {
      const got = readSync(this.fd, this.bytes, filled, this.bytes.length - filled, null);
      if (got === 0) break;
      filled += got;
      if (filled === this.bytes.length) break;
    }
    if (filled % (this.words * 4) !== 0) throw new Error(`${this.file}: truncated run`);
    this.length = filled / (this.words * 4);
    this.pos = 0;
    return this.length > 0;
  }

  /** Moves to the next record; false at the end of the run. */
  advance(): boolean {
    this.pos++;
    return this.pos < this.length || this.refill();
  }

  close(): void {
    closeSync(this.fd);
    rmSync(this.file, { force: true });
  }
}

class MergeCursor implements SortedCursor {
  readonly records: Uint32Array;
  readonly at = 0;
  private readonly readers: RunReader[];
  private readonly heap: number[] = [];
  private started = false;

  constructor(
    files: readonly string[],
    private readonly words: number,
    private readonly keyWords: number,
  ) {
    this.records = new Uint32Array(words);
    this.readers = files.map((f) => new RunReader(f, words));
  }

  next(): boolean {
    const heap = this.heap;
    if (!this.started) {
      this.started = true;
      this.readers.forEach((reader, run) => {
        if (reader.refill()) heap.push(run);
      });
      for (let i = (heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
    } else if (heap.length > 0 && !this.readers[heap[0]!]!.advance()) {
      const last = heap.pop()!;
      if (heap.length > 0) heap[0] = last;
    }
    if (heap.length === 0) return false;
    this.siftDown(0);
    const top = this.readers[heap[0]!]!;
    const at = top.pos * this.words;
    for (let k = 0; k < this.words; k++) this.records[k] = top.chunk[at + k]!;
    return true;
  }

  close(): void {
    for (const reader of this.readers.splice(0)) reader.close();
  }

  /** Run a's current record sorts before run b's: keys, then the run number (stability). */
  private less(a: number, b: number): boolean {
    const ra = this.readers[a]!;
    const rb = this.readers[b]!;
    const atA = ra.pos * this.words;
    const atB = rb.pos * this.words;
    for (let k = 0; k < this.keyWords; k++) {
      const x = ra.chunk[atA + k]!;
      const y = rb.chunk[atB + k]!;
      if (x !== y) return x < y;
    }
    return a < b;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) return;
      const r = l + 1;
      const child = r < heap.length && this.less(heap[r]!, heap[l]!) ? r : l;
      if (!this.less(heap[child]!, heap[i]!)) return;
      const swap = heap[i]!;
      heap[i] = heap[child]!;
      heap[child] = swap;
      i = child;
    }
  }
}
