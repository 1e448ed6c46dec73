// Piscina task: hashing vectors of a batch of packed texts, returned as one transferred buffer.
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { textAt, type PackedTexts } from '../../pipeline/pool/packed-texts.js';
import { HashingVectorizer, type HashingVectorizerOptions } from './hashing-vectorizer.js';

export interface HashingTask {
  readonly texts: PackedTexts;
  readonly options: HashingVectorizerOptions;
}

export interface HashingResult {
  /** n × dimensions values; text i at [i*dimensions, (i+1)*dimensions). */
  readonly vectors: Float32Array;
}

let cached: HashingVectorizer | undefined;

export default function hashingTask(task: HashingTask): HashingResult {
  const { dimensions, bigrams, seed } = task.options;
  if (
    cached === undefined ||
    cached.dimensions !== dimensions ||
    cached.bigrams !== bigrams ||
    cached.seed !== seed
  ) {
    cached = new HashingVectorizer(task.options);
  }
  const n = task.texts.offsets.length;
  const vectors = new Float32Array(n * dimensions);
  for (let i = 0; i < n; i++) cached.vectorizeInto(textAt(task.texts, i), vectors, i * dimensions);
  // As in minhash-worker.ts: piscina transfers the buffers named by transferableSymbol, not nested ones.
  const result = {
    get [transferableSymbol]() {
      return [vectors.buffer];
    },
    get [valueSymbol]() {
      return { vectors };
    },
  };
  return move(result) as unknown as HashingResult;
}
