import { allocateBlock, DEFAULT_BLOCK_ROWS, type WasmMemory } from './block-memory.js';
import type { VectorMatrix } from './farthest-point-kernel.js';

/**
 * The vectors of a blocking stage, L2-normalised on the way in, in blocks of `blockRows` rows, each in its own
 * shared WebAssembly.Memory (block-memory.ts): the store grows without copying what it holds, worker threads read
 * it without a copy, and the SIMD kernel reads it in place. Memory is rows × dimensions × 4 bytes rounded up to
 * whole blocks, plus per block 8 bytes a row and a few query slots of dimensions × 8 bytes, in 64 KiB pages.
 */
export class VectorStore {
  readonly blockRows: number;
  private readonly blocks: Float32Array[] = [];
  private readonly memories: WasmMemory[] = [];
  private dims: number | undefined;
  private rows = 0;
  private filled = 0;

  constructor(options: { blockRows?: number; dimensions?: number } = {}) {
    this.blockRows = options.blockRows ?? DEFAULT_BLOCK_ROWS;
    this.dims = options.dimensions;
  }

  /** Fixed by the constructor or by the first vector stored. */
  get dimensions(): number | undefined {
    return this.dims;
  }

  /** Rows up to the highest one written. */
  get count(): number {
    return this.rows;
  }

  /** Bytes allocated (the blocks' memories). */
  get bytes(): number {
    return this.memories.reduce((n, m) => n + m.buffer.byteLength, 0);
  }

  /** Stores `vector` scaled to unit length (a zero vector stays zero) as row `row`; rows may come in any order. */
  set(row: number, vector: Float32Array): void {
    const d = (this.dims ??= vector.length);
    if (vector.length !== d) {
      throw new RangeError(`vector of ${vector.length} dimensions where every other has ${d}`);
    }
    let norm = 0;
    for (let j = 0; j < d; j++) norm += vector[j]! * vector[j]!;
    if (!Number.isFinite(norm))
      throw new RangeError(`the vector of row ${row} holds a value that is not finite`);
    const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    const b = Math.floor(row / this.blockRows);
    while (this.blocks.length <= b) {
      const { memory, vectors } = allocateBlock(this.blockRows, d);
      this.blocks.push(vectors);
      this.memories.push(memory);
    }
    const block = this.blocks[b]!;
    const offset = (row - b * this.blockRows) * d;
    for (let j = 0; j < d; j++) block[offset + j] = vector[j]! * scale;
    this.filled++;
    if (row >= this.rows) this.rows = row + 1;
  }

  /** The stored rows as a matrix; every row up to `count` must have been written exactly once. */
  matrix(): VectorMatrix {
    if (this.filled !== this.rows) {
      throw new RangeError(`${this.filled} vectors stored for ${this.rows} rows`);
    }
    return {
      count: this.rows,
      dimensions: this.dims ?? 1,
      blockRows: this.blockRows,
      blocks: this.blocks,
      memories: this.memories,
    };
  }

  /** Releases every block. */
  clear(): void {
    this.blocks.length = 0;
    this.memories.length = 0;
    this.rows = 0;
    this.filled = 0;
  }
}
