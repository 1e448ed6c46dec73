import { color, esc, legend, svgFrame } from './svg.js';

/**
 * Counts on an integer grid (complexity x quality, 1-10): a circle per cell with its area proportional to the
 * count. Several series sit side by side within a cell, so two datasets compare on one plot.
 */
export interface BubbleSeries {
  readonly name: string;
  readonly cells: ReadonlyArray<{ readonly x: number; readonly y: number; readonly count: number }>;
}

export interface BubbleChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** Inclusive integer ranges of the axes. */
  readonly x: readonly [number, number];
  readonly y: readonly [number, number];
  readonly series: readonly BubbleSeries[];
  /** Cell counts as shares of each series' total (datasets of different sizes), or raw counts. */
  readonly shares?: boolean;
  readonly width?: number;
}

export function bubbleChartSvg(options: BubbleChartOptions): string {
  const width = options.width ?? 520;
  const { series } = options;
  const key = legend(
    series.map((s) => s.name),
    12,
    30,
    width - 24,
  );
  const margin = { left: 64, right: 20, top: 40 + key.height, bottom: 50 };
  const nx = options.x[1] - options.x[0] + 1;
  const ny = options.y[1] - options.y[0] + 1;
  const plotWidth = width - margin.left - margin.right;
  const cell = plotWidth / nx;
  const plotHeight = cell * ny;
  const height = margin.top + plotHeight + margin.bottom;
  const cx = (x: number): number => margin.left + (x - options.x[0] + 0.5) * cell;
  const cy = (y: number): number => margin.top + plotHeight - (y - options.y[0] + 0.5) * cell;
  const weights = series.map((s) => {
    const total = s.cells.reduce((sum, c) => sum + c.count, 0);
    return s.cells.map((c) => (options.shares === true ? c.count / Math.max(1, total) : c.count));
  });
  const max = Math.max(1e-9, ...weights.flat());
  const maxRadius = (cell * 0.9) / (2 * Math.max(1, Math.sqrt(series.length)));
  const parts = [svgFrame(options.title, width, height), key.svg];
  for (let i = 0; i <= nx; i++) {
    const x = margin.left + i * cell;
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${margin.top}" y2="${margin.top + plotHeight}" stroke="#eee"/>`,
    );
  }
  for (let i = 0; i <= ny; i++) {
    const y = margin.top + i * cell;
    parts.push(
      `<line x1="${margin.left}" x2="${margin.left + plotWidth}" y1="${y}" y2="${y}" stroke="#eee"/>`,
    );
  }
  for (let v = options.x[0]; v <= options.x[1]; v++) {
    parts.push(
      `<text x="${cx(v)}" y="${margin.top + plotHeight + 15}" text-anchor="middle" font-size="11">${v}</text>`,
    );
  }
  for (let v = options.y[0]; v <= options.y[1]; v++) {
    parts.push(`<text x="${margin.left - 6}" y="${cy(v) + 4}" text-anchor="end" font-size="11">${v}</text>`);
  }
  series.forEach((s, i) => {
    const offset = series.length === 1 ? 0 : (i / (series.length - 1) - 0.5) * cell * 0.4;
    s.cells.forEach((c, k) => {
      const weight = weights[i]![k]!;
      if (c.count <= 0) return;
      const r = Math.max(1.5, maxRadius * Math.sqrt(weight / max));
      const label = options.shares === true ? `${(100 * weight).toFixed(1)}%` : String(c.count);
      parts.push(
        `<circle class="mark" cx="${(cx(c.x) + offset).toFixed(1)}" cy="${cy(c.y).toFixed(1)}" r="${r.toFixed(1)}" fill="${color(i)}" fill-opacity="0.6" stroke="${color(i)}"><title>${esc(s.name)}: ${esc(options.xLabel)} ${c.x}, ${esc(options.yLabel)} ${c.y}: ${label}</title></circle>`,
      );
    });
  });
  parts.push(
    `<text x="${margin.left + plotWidth / 2}" y="${height - 10}" text-anchor="middle" font-size="12">${esc(options.xLabel)}</text>`,
    `<text transform="translate(16 ${margin.top + plotHeight / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(options.yLabel)}</text>`,
    '</svg>',
  );
  return parts.join('\n');
}
