import { readFileSync } from 'node:fs';
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

/**
 * Peak resident memory of this process in MB. On Linux, VmHWM of /proc/self/status: unlike
 * `resourceUsage().maxRSS`, it does not inherit the peak of the parent that spawned the process
 * (ru_maxrss survives fork+exec, so a child of a big parent reports the parent's size).
 */
export function peakRssMB(): number {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    if (match !== null) return Math.round(Number(match[1]) / 1024);
  } catch {
    // not Linux: fall through
  }
  return Math.round(process.resourceUsage().maxRSS / 1024);
}
