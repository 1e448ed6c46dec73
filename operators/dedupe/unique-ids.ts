import { drop, emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import { hash64Into } from './normalize.js';
import { KeyTable } from './key-table.js';

export const DUPLICATE_ID = 'duplicate_id';

/**
 * Keeps the first record of each id and drops later ones (`duplicate_id`, naming the id): ids key the
 * output rows, the seeds of LLM calls and the ledger's notes, so two documents must not share one. 8-16 bytes
 * per id (a 64-bit hash in an open-addressing table; a collision at 10M ids has odds of about 3e-6).
 */
export function uniqueIds<T>(idOf: (record: T) => string): RecordOperator<T, T> {
  const table = new KeyTable();
  const key = new Uint32Array(2);
  return {
    name: 'unique_ids',
    replay: true,
    process(record): Outcome<T> {
      const id = idOf(record);
      hash64Into(id, key);
      if (table.find(key[0]!, key[1]!) >= 0) return drop(DUPLICATE_ID, { duplicateOf: id });
      table.add(key[0]!, key[1]!, 0);
      return emit(record);
    },
  };
}
