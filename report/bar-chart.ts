import { allIntegers, clip, color, esc, formatTick, legend, niceTicks, svgFrame, valueFrame } from './svg.js';

/**
 * Grouped bar charts in the line chart's style: horizontal bars for named categories (constraint types, hosts,
 * drop reasons: long labels read left to right), vertical columns for small ordered ones (depth, scores).
 */
export interface BarSeries {
  readonly name: string;
  /** One value per category, in the categories' order. */
  readonly values: readonly number[];
}

export interface BarChartOptions {
  readonly title: string;
  /** The value axis, with its unit: "rows", "% of rows". */
  readonly valueLabel: string;
  /** The category axis (vertical charts only; horizontal ones name each bar). */
  readonly categoryLabel?: string;
  readonly categories: readonly string[];
  readonly series: readonly BarSeries[];
  readonly width?: number;
  /** Printed at the end of each bar (default: the tick format). */
  readonly formatValue?: (value: number) => string;
}

const LABEL_CHARS = 40;

export function barChartSvg(options: BarChartOptions): string {
  const width = options.width ?? 640;
  const format = options.formatValue ?? formatTick;
  const { series, categories } = options;
  const longest = Math.max(4, ...categories.map((c) => clip(c, LABEL_CHARS).length));
  const top = 36;
  const key = legend(
    series.map((s) => s.name),
    12,
    top - 6,
    width - 24,
  );
  const margin = { left: Math.min(250, 16 + longest * 6.6), right: 48, top: top + key.height, bottom: 44 };
  const barHeight = series.length === 1 ? 16 : Math.max(7, 14 - series.length);
  const band = series.length * barHeight + 8;
  const height = margin.top + categories.length * band + margin.bottom;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values.filter(Number.isFinite)));
  const ticks = niceTicks(max, 5, allIntegers(series.flatMap((s) => s.values)));
  const axisMax = ticks[ticks.length - 1]!;
  const plotWidth = width - margin.left - margin.right;
  const px = (v: number): number => margin.left + (v / axisMax) * plotWidth;
  const parts = [svgFrame(options.title, width, height), key.svg];
  for (const tick of ticks) {
    parts.push(
      `<line x1="${px(tick)}" x2="${px(tick)}" y1="${margin.top}" y2="${height - margin.bottom}" stroke="#e3e3e3"/>`,
      `<text x="${px(tick)}" y="${height - margin.bottom + 15}" text-anchor="middle" font-size="11">${formatTick(tick)}</text>`,
    );
  }
  categories.forEach((category, c) => {
    const y0 = margin.top + c * band + 4;
    parts.push(
      `<text x="${margin.left - 6}" y="${y0 + (series.length * barHeight) / 2 + 4}" text-anchor="end" font-size="11">${esc(clip(category, LABEL_CHARS))}<title>${esc(category)}</title></text>`,
    );
    series.forEach((s, i) => {
      const value = s.values[c] ?? 0;
      if (!Number.isFinite(value)) return;
      const y = y0 + i * barHeight;
      const w = Math.max(0, px(value) - margin.left);
      parts.push(
        `<rect class="mark" x="${margin.left}" y="${y}" width="${w.toFixed(1)}" height="${barHeight - 1}" fill="${color(i)}"><title>${esc(s.name)} · ${esc(category)}: ${esc(format(value))}</title></rect>`,
      );
      if (series.length <= 2) {
        parts.push(
          `<text x="${(margin.left + w + 3).toFixed(1)}" y="${y + barHeight - 4}" font-size="10" fill="#444">${esc(format(value))}</text>`,
        );
      }
    });
  });
  parts.push(
    `<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${height - margin.bottom}" stroke="#333"/>`,
    `<text x="${margin.left + plotWidth / 2}" y="${height - 10}" text-anchor="middle" font-size="12">${esc(options.valueLabel)}</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

/** Vertical grouped columns for short, ordered categories (0-5, 1-10). */
export function columnChartSvg(options: BarChartOptions): string {
  const { series, categories } = options;
  const frame = valueFrame(options.title, options.width ?? 640, series, 16);
  const { parts, margin, height, py } = frame;
  const band = frame.plotWidth / Math.max(1, categories.length);
  const barWidth = Math.max(2, (band * 0.8) / Math.max(1, series.length));
  const format = options.formatValue ?? formatTick;
  categories.forEach((category, c) => {
    const x0 = margin.left + c * band + band * 0.1;
    parts.push(
      `<text x="${(margin.left + (c + 0.5) * band).toFixed(1)}" y="${height - margin.bottom + 15}" text-anchor="middle" font-size="11">${esc(category)}</text>`,
    );
    series.forEach((s, i) => {
      const value = s.values[c] ?? 0;
      if (!Number.isFinite(value)) return;
      parts.push(
        `<rect class="mark" x="${(x0 + i * barWidth).toFixed(1)}" y="${py(value).toFixed(1)}" width="${(barWidth - 1).toFixed(1)}" height="${(py(0) - py(value)).toFixed(1)}" fill="${color(i)}"><title>${esc(s.name)} · ${esc(category)}: ${esc(format(value))}</title></rect>`,
      );
    });
  });
  return frame.close(options.categoryLabel ?? '', options.valueLabel);
}
