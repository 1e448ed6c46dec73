// Piscina task: MinHash signatures of a batch of packed texts, returned as one transferred buffer.
import { move, transferableSymbol, valueSymbol } from 'piscina';
import type { PackedTexts } from '../../pipeline/pool/packed-texts.js';
import { MinHasher } from './minhash.js';

export interface MinHashTask {
  readonly texts: PackedTexts;
  readonly shingle: number;
  readonly numPerm: number;
  readonly seed: number;
}

export interface MinHashResult {
  /** n * numPerm values; text i at [i*numPerm, (i+1)*numPerm). */
  readonly signatures: Uint32Array;
}

// Deriving the coefficients is cheap, but batches arrive thousands of times with the same parameters.
let cached: MinHasher | undefined;

export default function minhashTask(task: MinHashTask): MinHashResult {
  if (
    cached === undefined ||
    cached.shingle !== task.shingle ||
    cached.numPerm !== task.numPerm ||
    cached.seed !== task.seed
  ) {
    cached = new MinHasher({ shingle: task.shingle, numPerm: task.numPerm, seed: task.seed });
  }
  const signatures = cached.signPacked(task.texts);
  // move() transfers only a top-level value, and a moved array nested in an object is cloned. piscina's
  // Transferable protocol sends `valueSymbol` as the result and transfers the buffers of `transferableSymbol`.
  const result = {
    get [transferableSymbol]() {
      return [signatures.buffer];
    },
    get [valueSymbol]() {
      return { signatures };
    },
  };
  return move(result) as unknown as MinHashResult;
}
