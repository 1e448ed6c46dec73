import type { ShardTally } from '../pipeline/ledger.js';
import { sumValues, type StageStats } from '../pipeline/stats.js';
import type { DownloadProgress } from '../llm/model-files.js';
import { formatCount, formatDuration } from '../report/format.js';

/** in, out, dropped, failed: the columns every stage table shows. */
export function stageCountCells(stage: StageStats): string[] {
  return [
    formatCount(stage.in),
    formatCount(stage.out),
    formatCount(sumValues(stage.dropped)),
    formatCount(sumValues(stage.failed)),
  ];
}

/** read, written, dropped, failed, abandoned, rows out: one ledger line. */
export function tallyCells(tally: Omit<ShardTally, 'shard'>): string[] {
  return [
    formatCount(tally.read),
    formatCount(tally.written),
    formatCount(sumValues(tally.dropped)),
    formatCount(sumValues(tally.failed)),
    formatCount(tally.abandoned),
    formatCount(tally.rowsWritten),
  ];
}

/** "qwen.gguf: 120.3 of 491.4 MB (24%), 12.3 MB/s, ETA 30s". */
export function formatDownload(p: DownloadProgress): string {
  const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);
  const share = p.totalBytes > 0 ? ` (${Math.floor((100 * p.downloadedBytes) / p.totalBytes)}%)` : '';
  const eta = p.etaSeconds === undefined ? '' : `, ETA ${formatDuration(p.etaSeconds * 1000)}`;
  return `${p.file}: ${mb(p.downloadedBytes)} of ${mb(p.totalBytes)} MB${share}, ${mb(p.bytesPerSecond)} MB/s${eta}`;
}
