/**
 * A small, dependency-free SVG line chart: labelled axes with units, a legend, one polyline and dots per
 * series. Enough for benchmark curves in self-contained HTML files that open without a network.
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
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

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
  const yMax = niceCeil(Math.max(...ys, 1e-9));
  const px = (x: number): number =>
    margin.left + ((fx(x) - xMin) / (xMax - xMin)) * (width - margin.left - margin.right);
  const py = (y: number): number =>
    height - margin.bottom - (y / yMax) * (height - margin.top - margin.bottom);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(options.title)}">`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600">${esc(options.title)}</text>`,
  );
  for (let i = 0; i <= 4; i++) {
    const y = (yMax * i) / 4;
    parts.push(
      `<line x1="${margin.left}" x2="${width - margin.right}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/>`,
      `<text x="${margin.left - 6}" y="${py(y) + 4}" text-anchor="end" font-size="11">${formatTick(y)}</text>`,
    );
  }
  const xTicks = [...new Set(all.map(([x]) => x))].sort((a, b) => a - b);
  for (const x of xTicks) {
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
    const color = COLORS[i % COLORS.length]!;
    const points = series.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    parts.push(
      `<polyline class="series" data-series="${esc(series.name)}" fill="none" stroke="${color}" stroke-width="2" points="${points
        .map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`)
        .join(' ')}"/>`,
      ...points.map(
        ([x, y]) => `<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${color}"/>`,
      ),
      `<rect x="${width - margin.right - 150}" y="${margin.top + i * 16}" width="10" height="10" fill="${color}"/>`,
      `<text x="${width - margin.right - 135}" y="${margin.top + 9 + i * 16}" font-size="11">${esc(series.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function niceCeil(v: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= v) return step * magnitude;
  return 10 * magnitude;
}

function formatTick(v: number): string {
  if (v >= 10_000) return `${Math.round(v / 1000)}k`;
  if (v >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(1);
}

export function esc(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}
