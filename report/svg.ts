/**
 * What every chart in report/ shares: escaping, the palette, tick arithmetic and the frame (title, legend).
 * Charts are plain SVG strings so a report is one self-contained file that opens without a network; every
 * data element carries class "mark", which tests count to prove a plot is not empty.
 */
export const COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#9467bd',
  '#ff7f0e',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
];

export function color(i: number): string {
  return COLORS[i % COLORS.length]!;
}

export function esc(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

/** The smallest of 1, 2, 2.5, 5 x 10^k that is >= v. */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= v) return step * magnitude;
  return 10 * magnitude;
}

/**
 * Tick values 0, s, 2s, ... up to a nice maximum >= max, about `count` of them; whole steps for counts
 * (`integer`), so an axis of 0-3 rows does not read 0.5 rows.
 */
export function niceTicks(max: number, count = 5, integer = false): number[] {
  let step = niceCeil(Math.max(max, 1e-9) / count);
  if (integer) step = step < 1 ? 1 : Number.isInteger(step) ? step : niceCeil(step * 1.5);
  const top = Math.ceil(Math.max(max, 1e-9) / step) * step;
  const ticks: number[] = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

export function formatTick(v: number): string {
  if (Math.abs(v) >= 1_000_000) return `${Number((v / 1_000_000).toPrecision(3))}M`;
  if (Math.abs(v) >= 10_000) return `${Number((v / 1000).toPrecision(3))}k`;
  if (Math.abs(v) >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return String(Number(v.toPrecision(2)));
}

/** The opening tag and the title line; the caller closes with `</svg>`. */
export function svgFrame(title: string, width: number, height: number): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(title)}" font-family="system-ui, sans-serif">` +
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600">${esc(title)}</text>`
  );
}

/** A one-line legend under the title (rows wrap when names are long); returns the markup and its height. */
export function legend(
  names: readonly string[],
  x: number,
  y: number,
  width: number,
): { svg: string; height: number } {
  if (names.length <= 1) return { svg: '', height: 0 };
  const parts: string[] = [];
  let cx = x;
  let cy = y;
  names.forEach((name, i) => {
    const w = 18 + name.length * 6.5 + 14;
    if (cx + w > x + width && cx > x) {
      cx = x;
      cy += 16;
    }
    parts.push(
      `<rect x="${cx}" y="${cy}" width="10" height="10" fill="${color(i)}"/>`,
      `<text x="${cx + 14}" y="${cy + 9}" font-size="11">${esc(name)}</text>`,
    );
    cx += w;
  });
  return { svg: parts.join(''), height: cy - y + 18 };
}

/** Whether every value is a whole number (then axes tick in whole steps). */
export function allIntegers(values: Iterable<number>): boolean {
  for (const v of values) if (!Number.isInteger(v)) return false;
  return true;
}

/** Shortens long category labels (hosts, drop reasons) so the plot keeps its width; the title keeps all. */
export function clip(label: string, max: number): string {
  return label.length <= max ? label : `${label.slice(0, max - 1)}…`;
}

/**
 * The frame of a chart whose values rise from a baseline at 0 (histogram, columns): title, legend, plot area,
 * value gridlines with their labels. `close` adds the axes and their titles and returns the whole SVG.
 */
export interface ValueFrame {
  /** Markup so far; the caller pushes its marks, then calls `close`. */
  readonly parts: string[];
  readonly width: number;
  readonly height: number;
  readonly margin: {
    readonly left: number;
    readonly right: number;
    readonly top: number;
    readonly bottom: number;
  };
  readonly plotWidth: number;
  readonly plotHeight: number;
  /** The y pixel of a value. */
  py(value: number): number;
  close(xLabel: string, yLabel: string): string;
}

export function valueFrame(
  title: string,
  width: number,
  /** Legend entries (none for one series); their values set the axis' top and whether it ticks in whole steps. */
  series: ReadonlyArray<{ readonly name: string; readonly values: readonly number[] }>,
  rightMargin: number,
): ValueFrame {
  const key = legend(
    series.map((s) => s.name),
    12,
    30,
    width - 24,
  );
  const margin = { left: 64, right: rightMargin, top: 40 + key.height, bottom: 50 };
  const height = 340 + key.height;
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const finite = series.flatMap((s) => s.values).filter(Number.isFinite);
  const ticks = niceTicks(Math.max(1e-9, ...finite), 5, allIntegers(finite));
  const top = ticks[ticks.length - 1]!;
  const py = (v: number): number => margin.top + plotHeight - (v / top) * plotHeight;
  const parts = [svgFrame(title, width, height), key.svg];
  for (const tick of ticks) {
    parts.push(
      `<line x1="${margin.left}" x2="${width - margin.right}" y1="${py(tick)}" y2="${py(tick)}" stroke="#e3e3e3"/>`,
      `<text x="${margin.left - 6}" y="${py(tick) + 4}" text-anchor="end" font-size="11">${formatTick(tick)}</text>`,
    );
  }
  return {
    parts,
    width,
    height,
    margin,
    plotWidth,
    plotHeight,
    py,
    close(xLabel, yLabel) {
      parts.push(
        `<line x1="${margin.left}" x2="${width - margin.right}" y1="${py(0)}" y2="${py(0)}" stroke="#333"/>`,
        `<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${py(0)}" stroke="#333"/>`,
        `<text x="${margin.left + plotWidth / 2}" y="${height - 10}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>`,
        `<text transform="translate(16 ${margin.top + plotHeight / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`,
        '</svg>',
      );
      return parts.join('\n');
    },
  };
}
