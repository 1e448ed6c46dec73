import { color, esc, formatTick, niceTicks } from './svg.js';

export { esc } from './svg.js';

/**
 * A small, dependency-free SVG line chart: labelled axes with units, a legend, one polyline and dots per
 * series. Enough for benchmark curves and timelines in self-contained HTML files that open without a network.
 */
export interface Series {
  readonly name: string;
  readonly points: ReadonlyArray<readonly [number, number]>;
}

export interface LineChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  /** Log-2 x axis (concurrency sweeps). */
  readonly logX?: boolean;
  readonly width?: number;
  readonly height?: number;
  /** A vertical marker, e.g. the recommended concurrency. */
  readonly markX?: { readonly x: number; readonly label: string };
  /**
   * At most this many x tick labels (default 12): with more distinct x values (a timeline), ticks are evenly
   * spaced round numbers instead of one per point.
   */
  readonly maxXTicks?: number;
}

export function lineChartSvg(options: LineChartOptions): string {
  const width = options.width ?? 640;
  const height = options.height ?? 360;
  const margin = { left: 70, right: 20, top: 36, bottom: 50 };
  const all = options.series
    .flatMap((s) => s.points)
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const fx = (x: number): number => (options.logX ? Math.log2(Math.max(x, 1e-9)) : x);
  const xs = all.map(([x]) => fx(x));
  const ys = all.map(([, y]) => y);
  const xMin = Math.min(...xs, 0);
  const xMax = Math.max(...xs, xMin + 1);
  const yTicks = niceTicks(Math.max(...ys, 1e-9), 4);
  const yMax = yTicks[yTicks.length - 1]!;
  const px = (x: number): number =>
    margin.left + ((fx(x) - xMin) / (xMax - xMin)) * (width - margin.left - margin.right);
  const py = (y: number): number =>
    height - margin.bottom - (y / yMax) * (height - margin.top - margin.bottom);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(options.title)}">`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600">${esc(options.title)}</text>`,
  );
  for (const y of yTicks) {
    parts.push(
      `<line x1="${margin.left}" x2="${width - margin.right}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/>`,
      `<text x="${margin.left - 6}" y="${py(y) + 4}" text-anchor="end" font-size="11">${formatTick(y)}</text>`,
    );
  }
  for (const x of xTicks(all, options.maxXTicks ?? 12, options.logX === true)) {
    parts.push(
      `<text x="${px(x)}" y="${height - margin.bottom + 16}" text-anchor="middle" font-size="11">${formatTick(x)}</text>`,
    );
  }
  parts.push(
    `<line x1="${margin.left}" x2="${width - margin.right}" y1="${py(0)}" y2="${py(0)}" stroke="#333"/>`,
    `<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${py(0)}" stroke="#333"/>`,
    `<text x="${(width + margin.left) / 2}" y="${height - 10}" text-anchor="middle" font-size="12">${esc(options.xLabel)}</text>`,
    `<text transform="translate(16 ${(height - margin.bottom + margin.top) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(options.yLabel)}</text>`,
  );
  if (options.markX !== undefined) {
    const x = px(options.markX.x);
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${margin.top}" y2="${py(0)}" stroke="#555" stroke-dasharray="4 3"/>`,
      `<text x="${x + 4}" y="${margin.top + 12}" font-size="11">${esc(options.markX.label)}</text>`,
    );
  }
  options.series.forEach((series, i) => {
    const stroke = color(i);
    const points = series.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    parts.push(
      `<polyline class="series" data-series="${esc(series.name)}" fill="none" stroke="${stroke}" stroke-width="2" points="${points
        .map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`)
        .join(' ')}"/>`,
      ...points.map(
        ([x, y]) =>
          `<circle class="mark" cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${stroke}"><title>${esc(series.name)}: ${formatTick(x)}, ${formatTick(y)}</title></circle>`,
      ),
      `<rect x="${width - margin.right - 150}" y="${margin.top + i * 16}" width="10" height="10" fill="${stroke}"/>`,
      `<text x="${width - margin.right - 135}" y="${margin.top + 9 + i * 16}" font-size="11">${esc(series.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** One tick per distinct x while they are few (concurrency levels); evenly spaced round values beyond. */
function xTicks(points: ReadonlyArray<readonly [number, number]>, max: number, logX: boolean): number[] {
  const distinct = [...new Set(points.map(([x]) => x))].sort((a, b) => a - b);
  if (distinct.length <= max || logX) return distinct;
  return niceTicks(distinct[distinct.length - 1]!, Math.max(2, max - 2)).filter(
    (x) => x >= distinct[0]! || x === 0,
  );
}
