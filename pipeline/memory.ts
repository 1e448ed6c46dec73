import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Explicit garbage collection, for the few places where air knows a large batch of memory just died.
 *
 * Streaming gigabytes of text makes V8 (and ArrayBuffers it tracks only loosely) grow far past what is
 * live: with a small live heap, V8 sees no reason to collect, and peak RSS doubles. Collecting right after
 * a row group is written or every few tens of MB read costs a few milliseconds and keeps RSS near the live
 * size (figures in bench/RESULTS.md). `--expose-gc` is enabled at run time so `npx air` needs no flags.
 */
type Collect = (options?: { type?: 'major' | 'minor' }) => void;

let collect: Collect | undefined;

function gcFunction(): Collect {
  if (collect === undefined) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as Collect;
  }
  return collect;
}

/** Runs a full collection now. */
export function collectGarbage(): void {
  gcFunction()();
}

/**
 * Collects after every `everyBytes` of data passed through `track`, so a streaming loop's garbage never
 * piles up beyond that amount.
 */
export class GarbageBudget {
  private sinceLast = 0;

  constructor(private readonly everyBytes: number) {}

  track(bytes: number): void {
    this.sinceLast += bytes;
    if (this.sinceLast < this.everyBytes) return;
    this.sinceLast = 0;
    collectGarbage();
  }
}
