import type { RunReport } from '../pipeline/run.js';
import { formatCount, formatDuration, formatTable } from '../report/format.js';
import { stageCountCells, tallyCells } from './format.js';

/** The end-of-run ledger: where every input row went, per shard and per stage. */
export function summaryLines(report: RunReport, outputDir: string): string[] {
  const lines: string[] = [];
  const shardRows: string[][] = [['shard', 'read', 'written', 'dropped', 'failed', 'abandoned', 'rows out']];
  for (const s of report.shards) shardRows.push([s.shard, ...tallyCells(s)]);
  const t = report.totals;
  shardRows.push(['total', ...tallyCells(t)]);
  lines.push('ledger (input rows):', ...formatTable(shardRows).map((l) => `  ${l}`));
  const reasons = Object.entries({ ...t.dropped, ...t.failed }).sort((a, b) => b[1] - a[1]);
  if (reasons.length > 0) {
    lines.push('dropped / failed by reason:');
    for (const [reason, n] of reasons) lines.push(`  ${reason}: ${formatCount(n)}`);
  }
  const stageRows: string[][] = [['stage', 'in', 'out', 'dropped', 'failed', 'busy']];
  for (const s of report.stages) stageRows.push([s.name, ...stageCountCells(s), formatDuration(s.busyMs)]);
  lines.push('stages:', ...formatTable(stageRows).map((l) => `  ${l}`));
  const verdict =
    report.status === 'completed'
      ? `done in ${formatDuration(report.wallMs)}: ${formatCount(t.rowsWritten)} rows written to ${outputDir}`
      : report.status === 'interrupted'
        ? `interrupted after ${formatDuration(report.wallMs)}: ${formatCount(t.rowsWritten)} rows committed to ${outputDir}; ` +
          `${formatCount(t.abandoned)} rows were in flight`
        : `failed after ${formatDuration(report.wallMs)}: ${report.error ?? 'unknown error'}`;
  lines.push(verdict);
  return lines;
}
