import type { ProgressSnapshot } from '../pipeline/run.js';
import { sumValues } from '../pipeline/stats.js';
import { formatCount, formatDuration, formatRate, formatTable } from '../report/format.js';
import { stageCountCells } from './format.js';

/**
 * Turns engine snapshots into progress output: a live table redrawn in place on a terminal, or one log
 * line every few seconds elsewhere (CI logs, files). Rates are smoothed over recent snapshots so the ETA
 * does not jump with every chunk.
 */
export class ProgressReporter {
  private previous: ProgressSnapshot | undefined;
  private readRate = Number.NaN;
  private readonly stageRates = new Map<string, number>();
  private drawnLines = 0;

  constructor(
    private readonly mode: 'tty' | 'log',
    private readonly write: (text: string) => void,
  ) {}

  update(snapshot: ProgressSnapshot): void {
    this.updateRates(snapshot);
    if (this.mode === 'tty') this.draw(this.tableLines(snapshot));
    else this.write(`${this.logLine(snapshot)}\n`);
  }

  /** Leaves the last table on screen and moves below it. */
  finish(snapshot: ProgressSnapshot): void {
    if (this.mode === 'tty') {
      this.updateRates(snapshot);
      this.draw(this.tableLines(snapshot));
      this.drawnLines = 0;
    }
  }

  headline(s: ProgressSnapshot): string {
    const parts = [`${formatDuration(s.elapsedMs)} elapsed`];
    if (s.expectedRows !== undefined && s.expectedRows > 0) {
      const pct = ((100 * s.rowsRead) / s.expectedRows).toFixed(1);
      parts.push(`read ${formatCount(s.rowsRead)}/${formatCount(s.expectedRows)} rows (${pct}%)`);
    } else {
      parts.push(`read ${formatCount(s.rowsRead)} rows`);
    }
    parts.push(`${formatRate(this.readRate)} rows/s`);
    parts.push(`ETA ${this.eta(s)}`);
    parts.push(`written ${formatCount(s.rowsWritten)}`);
    parts.push(`in flight ${formatCount(s.inFlight)}`);
    return parts.join(' · ');
  }

  private eta(s: ProgressSnapshot): string {
    if (s.expectedRows === undefined || !(this.readRate > 0)) return '-';
    return formatDuration((1000 * Math.max(0, s.expectedRows - s.rowsRead)) / this.readRate);
  }

  private tableLines(s: ProgressSnapshot): string[] {
    const rows: string[][] = [['stage', 'in', 'out', 'dropped', 'failed', 'out/s', 'queue']];
    s.stages.forEach((stage, i) => {
      rows.push([
        stage.name,
        ...stageCountCells(stage),
        formatRate(this.stageRates.get(stage.name) ?? Number.NaN),
        i < s.queues.length ? formatCount(s.queues[i]!) : '',
      ]);
    });
    return [`air run · ${this.headline(s)}`, ...formatTable(rows)];
  }

  private logLine(s: ProgressSnapshot): string {
    const stages = s.stages
      .map((st) => {
        const dropped = sumValues(st.dropped);
        const failed = sumValues(st.failed);
        return `${st.name} ${formatCount(st.in)}→${formatCount(st.out)}${dropped ? ` -${formatCount(dropped)}` : ''}${failed ? ` !${formatCount(failed)}` : ''}`;
      })
      .join(' | ');
    return `progress: ${this.headline(s)} | ${stages}`;
  }

  private draw(lines: string[]): void {
    // Move up over the previous table and clear each line before rewriting it.
    let out = this.drawnLines > 0 ? `\x1b[${this.drawnLines}F` : '';
    for (const line of lines) out += `\x1b[2K${line}\n`;
    this.write(out);
    this.drawnLines = lines.length;
  }

  private updateRates(s: ProgressSnapshot): void {
    const prev = this.previous;
    this.previous = s;
    if (prev === undefined) return;
    const seconds = (s.elapsedMs - prev.elapsedMs) / 1000;
    if (seconds <= 0) return;
    this.readRate = smooth(this.readRate, (s.rowsRead - prev.rowsRead) / seconds);
    for (const stage of s.stages) {
      const before = prev.stages.find((p) => p.name === stage.name);
      if (before === undefined) continue;
      const rate = (stage.out - before.out) / seconds;
      this.stageRates.set(stage.name, smooth(this.stageRates.get(stage.name) ?? Number.NaN, rate));
    }
  }
}

function smooth(previous: number, current: number): number {
  return Number.isNaN(previous) ? current : 0.7 * previous + 0.3 * current;
}
