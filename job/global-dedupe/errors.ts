import { AirError } from '../../pipeline/errors.js';

/**
 * - AIR_DEDUPE_KEYS_INVALID: a key file is missing, unfinished, truncated, or was written for another shard or
 *   with other settings than its siblings (ranks must share one config).
 * - AIR_DEDUPE_UNSUPPORTED: a setting the split run cannot reproduce (e.g. `source.limit`), or more
 *   documents than 32-bit ordinals address.
 * - AIR_DEDUPE_STALE: a drop list does not match the rows a rank reads (other shards, or rewritten ones).
 * - AIR_DEDUPE_TIMEOUT: a rank waited longer than its timeout for the other ranks' keys or the global step.
 */
export type GlobalDedupeCode =
  'AIR_DEDUPE_KEYS_INVALID' | 'AIR_DEDUPE_UNSUPPORTED' | 'AIR_DEDUPE_STALE' | 'AIR_DEDUPE_TIMEOUT';

export class GlobalDedupeError extends AirError<GlobalDedupeCode> {
  /** Ends a run rather than failing one record: a rank with a stale drop list must not go on. */
  readonly fatal = true;

  constructor(code: GlobalDedupeCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'GlobalDedupeError';
  }
}
