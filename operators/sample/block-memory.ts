/**
 * One block of vectors in a shared WebAssembly.Memory, so the SIMD kernel (simd-kernel.ts) reads the rows where
 * they are. Its `.buffer` is a SharedArrayBuffer: worker threads read it without a copy, and the block's
 * Float32Array view (offset 0) serves every JS user as before. Layout, in bytes:
 *
 *   [0, vectorBytes)             the rows, rows × dims float32
 *   [lockOffset, +16)            an Int32 "a selection is using this block" flag (lockBlocks)
 *   [dotsOffset, +rows × 8)      one float64 dot product per row, written by whichever thread owns that row
 *   [queryOffset, ...)           query slots of dims float64, one per thread (slot = worker number)
 *
 * No two threads write the same bytes: a row belongs to one worker's range, and a slot to one worker.
 */

/** The WebAssembly calls used here (the project's TypeScript lib has no WebAssembly types). */
export interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}
interface WasmMemoryApi {
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmMemoryApi }).WebAssembly;

export const PAGE_BYTES = 65536;
/**
 * Rows per block unless told otherwise. Large: V8 reserves ~10 GiB of address space (not memory) per WebAssembly
 * memory for its bounds guards, so 4,096-row blocks would cap a store near 50M rows; 32,768 rows (32 MiB at
 * D = 256) near 400M.
 */
export const DEFAULT_BLOCK_ROWS = 32_768;
/** WebAssembly 32-bit memories hold at most 4 GiB. */
const MAX_PAGES = 65536;
/** Query slots a new block has room for; more threads grow the memory (ensureQuerySlots) up to MAX_QUERY_SLOTS. */
const INITIAL_QUERY_SLOTS = 4;
export const MAX_QUERY_SLOTS = 256;

export interface BlockLayout {
  readonly rows: number;
  readonly dims: number;
  readonly vectorBytes: number;
  readonly lockOffset: number;
  readonly dotsOffset: number;
  readonly queryOffset: number;
  /** Bytes from one query slot to the next. */
  readonly queryStride: number;
}

const align16 = (n: number): number => Math.ceil(n / 16) * 16;

export function blockLayout(rows: number, dims: number): BlockLayout {
  const vectorBytes = rows * dims * 4;
  const lockOffset = align16(vectorBytes);
  const dotsOffset = lockOffset + 16;
  const queryOffset = align16(dotsOffset + rows * 8);
  return { rows, dims, vectorBytes, lockOffset, dotsOffset, queryOffset, queryStride: align16(dims * 8) };
}

function pagesFor(layout: BlockLayout, slots: number): number {
  return Math.ceil((layout.queryOffset + slots * layout.queryStride) / PAGE_BYTES);
}

/** Bytes of a new block's memory (VectorStore.bytes adds these up). */
export function blockBytes(rows: number, dims: number): number {
  return pagesFor(blockLayout(rows, dims), INITIAL_QUERY_SLOTS) * PAGE_BYTES;
}

/** A shared Memory laid out for `rows` rows of `dims` floats, and the Float32Array of its rows (zeros). */
export function allocateBlock(rows: number, dims: number): { memory: WasmMemory; vectors: Float32Array } {
  const layout = blockLayout(rows, dims);
  const maximum = pagesFor(layout, MAX_QUERY_SLOTS);
  if (maximum > MAX_PAGES) {
    throw new RangeError(
      `a block of ${rows} rows of ${dims} dimensions exceeds a WebAssembly memory's 4 GiB`,
    );
  }
  const initial = blockBytes(rows, dims) / PAGE_BYTES;
  const memory = new wasm.Memory({ initial, maximum, shared: true });
  return { memory, vectors: new Float32Array(memory.buffer, 0, rows * dims) };
}

/** Query slots the memory has room for now. */
export function querySlots(memory: WasmMemory, layout: BlockLayout): number {
  return Math.floor((memory.buffer.byteLength - layout.queryOffset) / layout.queryStride);
}

/**
 * Grows the memory until it holds `slots` query slots. Only before a selection starts: views taken earlier keep
 * their length (shared memory never detaches), the grown bytes are reached through `memory.buffer`.
 */
export function ensureQuerySlots(memory: WasmMemory, layout: BlockLayout, slots: number): void {
  if (slots > MAX_QUERY_SLOTS) throw new RangeError(`at most ${MAX_QUERY_SLOTS} threads, got ${slots}`);
  const missing = pagesFor(layout, slots) - memory.buffer.byteLength / PAGE_BYTES;
  if (missing > 0) memory.grow(missing);
}

/**
 * Marks every block as in use by one selection (their dots and query slots are its scratch space) and returns
 * the release. Two selections at once on the same blocks would overwrite each other's scratch: the second
 * throws, holding nothing.
 */
export function lockBlocks(memories: readonly WasmMemory[], layout: BlockLayout): () => void {
  const flags = memories.map((m) => new Int32Array(m.buffer, layout.lockOffset, 1));
  const release = (upTo: number): void => {
    for (let b = 0; b < upTo; b++) Atomics.store(flags[b]!, 0, 0);
  };
  for (let b = 0; b < flags.length; b++) {
    if (Atomics.compareExchange(flags[b]!, 0, 0, 1) !== 0) {
      release(b);
      throw new Error('these vectors are already in use by another farthest-point selection (SIMD kernel)');
    }
  }
  return () => release(flags.length);
}
