import { describe, expect, it } from 'vitest';
import {
  allocateBlock,
  blockBytes,
  blockLayout,
  DEFAULT_BLOCK_ROWS,
  ensureQuerySlots,
  lockBlocks,
  querySlots,
} from '../operators/sample/block-memory.js';
import { jsKernel, matrixOf, rowOf, type VectorMatrix } from '../operators/sample/farthest-point-kernel.js';
import {
  farthestPoint,
  farthestPointParallel,
  type FarthestPointResult,
} from '../operators/sample/farthest-point.js';
import {
  DOTS_WASM,
  hasMemories,
  memoryMatrix,
  prepareSimd,
  SimdKernel,
  simdAvailable,
} from '../operators/sample/simd-kernel.js';
import { VectorStore } from '../operators/sample/vector-store.js';
import { leb, sleb } from '../operators/sample/wasm-bytes.js';
import { seededRandom } from '../pipeline/random.js';

/** n rows of d values in [-0.5, 0.5), unit length, as float32 (seeded). */
function randomRows(n: number, d: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const v = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < d; j++) {
      const x = random() - 0.5;
      v[i * d + j] = x;
      norm += x * x;
    }
    for (let j = 0; j < d; j++) v[i * d + j]! /= Math.sqrt(norm);
  }
  return v;
}

function storeOf(rows: Float32Array, d: number, blockRows: number): VectorMatrix {
  const store = new VectorStore({ blockRows, dimensions: d });
  for (let i = 0; i < rows.length / d; i++) store.set(i, rows.subarray(i * d, (i + 1) * d));
  return store.matrix();
}

const bytesOf = (a: Float64Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function sameResult(a: FarthestPointResult, b: FarthestPointResult): void {
  expect([...b.selected]).toEqual([...a.selected]);
  expect(bytesOf(b.distances).equals(bytesOf(a.distances))).toBe(true);
}

describe('wasm bytes', () => {
  it('encodes LEB128 unsigned and signed as the binary format defines them', () => {
    expect(leb(0)).toEqual([0]);
    expect(leb(127)).toEqual([0x7f]);
    expect(leb(128)).toEqual([0x80, 0x01]);
    expect(leb(65536)).toEqual([0x80, 0x80, 0x04]);
    expect(sleb(-4)).toEqual([0x7c]);
    expect(sleb(63)).toEqual([0x3f]);
    expect(sleb(64)).toEqual([0xc0, 0x00]);
    expect(sleb(-64)).toEqual([0x40]);
    expect(sleb(-65)).toEqual([0xbf, 0x7f]);
  });

  it('assembles a module this runtime validates', () => {
    const validate = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } })
      .WebAssembly.validate;
    expect(validate(DOTS_WASM)).toBe(true);
    expect(simdAvailable).toBe(true);
  });
});

describe('block memory', () => {
  it('lays out rows, lock, dots and query slots without overlap, 16-byte aligned', () => {
    for (const [rows, dims] of [
      [4096, 256],
      [37, 7],
      [1, 1],
    ] as const) {
      const l = blockLayout(rows, dims);
      expect(l.lockOffset).toBeGreaterThanOrEqual(rows * dims * 4);
      expect(l.dotsOffset).toBeGreaterThanOrEqual(l.lockOffset + 4);
      expect(l.queryOffset).toBeGreaterThanOrEqual(l.dotsOffset + rows * 8);
      expect(l.queryStride).toBeGreaterThanOrEqual(dims * 8);
      for (const x of [l.lockOffset, l.dotsOffset, l.queryOffset, l.queryStride]) expect(x % 16).toBe(0);
      const { memory, vectors } = allocateBlock(rows, dims);
      expect(memory.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(memory.buffer.byteLength).toBe(blockBytes(rows, dims));
      expect(vectors.length).toBe(rows * dims);
      expect(querySlots(memory, l)).toBeGreaterThanOrEqual(4);
    }
  });

  it('grows for more query slots, keeping the rows and earlier views', () => {
    const l = blockLayout(100, 64);
    const { memory, vectors } = allocateBlock(100, 64);
    vectors[6399] = 0.25;
    const before = memory.buffer.byteLength;
    ensureQuerySlots(memory, l, 200);
    expect(memory.buffer.byteLength).toBeGreaterThan(before);
    expect(querySlots(memory, l)).toBeGreaterThanOrEqual(200);
    expect(vectors[6399]).toBe(0.25);
    expect(new Float32Array(memory.buffer, 0, 6400)[6399]).toBe(0.25);
    expect(() => ensureQuerySlots(memory, l, 257)).toThrow(RangeError);
  });

  it('lets one selection at a time use a block, and releases it', () => {
    const l = blockLayout(10, 4);
    const blocks = [allocateBlock(10, 4).memory, allocateBlock(10, 4).memory];
    const holdSecond = lockBlocks([blocks[1]!], l);
    expect(() => lockBlocks(blocks, l)).toThrow(/already in use/);
    // The failed attempt took block 0 first and gave it back.
    lockBlocks([blocks[0]!], l)();
    holdSecond();
    lockBlocks(blocks, l)();
  });
});

describe('simd kernel', () => {
  it('gives the JS kernel bit for bit: every dimension remainder, block boundary and odd range length', () => {
    for (const [n, d, blockRows] of [
      [50, 1, 7],
      [61, 3, 10],
      [40, 4, 40],
      [77, 5, 13],
      [64, 8, 64],
      [33, 9, 5],
      [90, 255, 31],
      [90, 256, 90],
      [45, 257, 16],
    ] as const) {
      const rows = randomRows(n, d, n + d);
      const m = storeOf(rows, d, blockRows);
      expect(hasMemories(m)).toBe(true);
      const { matrix, release } = prepareSimd(m, 1);
      try {
        const simd = new SimdKernel(matrix, 0);
        const js = jsKernel(m);
        for (const [lo, hi, q] of [
          [0, n, 0],
          [3, n - 2, 7],
          [blockRows - 1, Math.min(n, blockRows + 2), n - 1],
          [5, 6, 2],
          [9, 9, 1],
        ] as const) {
          const a = new Float64Array(n).fill(Infinity);
          a[q] = -Infinity;
          const b = Float64Array.from(a);
          const [bestA, bestB] = [new Float64Array(1), new Float64Array(1)];
          // Two steps: the second exercises min() against the first's distances.
          for (const query of [rowOf(m, q), rowOf(m, (q + 11) % n)]) {
            const ia = js.updateAndArgmax(query, a, lo, hi, bestA);
            const ib = simd.updateAndArgmax(query, b, lo, hi, bestB);
            expect(ib).toBe(ia);
            expect(bytesOf(bestB).equals(bytesOf(bestA))).toBe(true);
            expect(bytesOf(b).equals(bytesOf(a))).toBe(true);
          }
        }
      } finally {
        release();
      }
    }
  });

  it('copies a plain matrix into memories of whole rows', () => {
    const n = DEFAULT_BLOCK_ROWS + 904;
    const rows = randomRows(n, 6, 3);
    const m = matrixOf(rows, 6);
    expect(hasMemories(m)).toBe(false);
    const copy = memoryMatrix(m);
    expect(copy.count).toBe(n);
    expect(copy.memories.length).toBe(copy.blocks.length);
    expect(copy.blocks.length).toBeGreaterThan(1);
    for (const i of [0, DEFAULT_BLOCK_ROWS - 1, DEFAULT_BLOCK_ROWS, n - 1]) {
      expect([...rowOf(copy, i)]).toEqual([...rowOf(m, i)]);
    }
    const stored = storeOf(rows, 6, 100);
    expect(memoryMatrix(stored)).toBe(stored);
  });
});

describe('farthest-point selection with the simd kernel', () => {
  it('selects what the JS kernel selects, bit for bit, from a store or a plain matrix', () => {
    for (const [n, d, k, blockRows] of [
      [300, 16, 60, 37],
      [257, 7, 257, 64],
      [500, 130, 80, 500],
    ] as const) {
      const rows = randomRows(n, d, d);
      const js = farthestPoint(matrixOf(rows, d), { k, seed: 2, kernel: 'js' });
      sameResult(js, farthestPoint(matrixOf(rows, d), { k, seed: 2, kernel: 'simd' }));
      const store = storeOf(rows, d, blockRows);
      sameResult(farthestPoint(store, { k, seed: 2, kernel: 'js' }), farthestPoint(store, { k, seed: 2 }));
    }
  });

  it('returns the identical selection on worker threads, with Atomics or messages, on 1 to 3 threads', async () => {
    const store = storeOf(randomRows(3001, 24, 5), 24, 500);
    // The same values as a plain matrix (the store normalises again, which can change the last bit).
    const plain = new Float32Array(3001 * 24);
    for (let i = 0; i < 3001; i++) plain.set(rowOf(store, i), i * 24);
    const matrices = [matrixOf(plain, 24), store];
    const serial = farthestPoint(matrices[0]!, { k: 300, seed: 8, kernel: 'js' });
    sameResult(serial, farthestPoint(matrices[1]!, { k: 300, seed: 8, kernel: 'simd' }));
    for (const [threads, sync, matrix] of [
      [2, 'atomics', matrices[1]!],
      [3, 'atomics', matrices[0]!],
      [1, 'atomics', matrices[1]!],
      [2, 'messages', matrices[1]!],
      [6, 'atomics', matrices[1]!],
    ] as const) {
      const kernel = 'simd';
      sameResult(serial, await farthestPointParallel(matrix, { k: 300, seed: 8, threads, sync, kernel }));
    }
  });

  it('refuses a second selection on the same vectors while one runs, and frees them after', async () => {
    const m = storeOf(randomRows(2000, 16, 9), 16, 256);
    const running = farthestPointParallel(m, { k: 200, seed: 1, threads: 2, kernel: 'simd' });
    expect(() => farthestPoint(m, { k: 5, seed: 1, kernel: 'simd' })).toThrow(/already in use/);
    // The JS kernel needs no scratch in the blocks.
    const js = farthestPoint(m, { k: 200, seed: 1, kernel: 'js' });
    sameResult(js, await running);
    sameResult(js, farthestPoint(m, { k: 200, seed: 1, kernel: 'simd' }));
  });
});
