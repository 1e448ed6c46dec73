import { describe, expect, it } from 'vitest';
import { ProgressReporter } from '../cli/progress.js';
import type { ProgressSnapshot } from '../pipeline/run.js';
import { newStageStats } from '../pipeline/stats.js';

function snapshot(seconds: number, read: number): ProgressSnapshot {
  const readStage = { ...newStageStats('read'), in: read, out: read };
  const filter = {
    ...newStageStats('length_filter'),
    in: read,
    out: Math.floor(read / 2),
    dropped: { too_short: read - Math.floor(read / 2) },
  };
  return {
    elapsedMs: seconds * 1000,
    expectedRows: 10_000,
    stages: [readStage, filter],
    queues: [3, 1],
    inFlight: 4,
    rowsRead: read,
    rowsWritten: Math.floor(read / 2),
  };
}

describe('ProgressReporter', () => {
  it('logs one line per update with rows read of the footer total, the rate and the ETA', () => {
    const lines: string[] = [];
    const reporter = new ProgressReporter('log', (t) => lines.push(t));
    reporter.update(snapshot(1, 1000));
    reporter.update(snapshot(2, 2000)); // 1,000 rows/s, 8,000 to go
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/read 2,000\/10,000 rows \(20\.0%\) · 1,000 rows\/s · ETA 8s/);
    expect(lines[1]).toMatch(/length_filter 2,000→1,000 -1,000/);
  });

  it('redraws a table in place on a terminal', () => {
    const out: string[] = [];
    const reporter = new ProgressReporter('tty', (t) => out.push(t));
    reporter.update(snapshot(1, 1000));
    reporter.update(snapshot(2, 2000));
    expect(out[0]).not.toContain('\x1b[3F');
    expect(out[1]!.startsWith('\x1b[4F')).toBe(true); // headline + header + 2 stages
    expect(out[1]).toMatch(/length_filter\s+2,000\s+1,000\s+1,000\s+0\s+500/);
  });
});
