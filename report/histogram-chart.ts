import { color, esc, formatTick, valueFrame } from './svg.js';

/**
 * A histogram over numeric bins, in the line chart's style: one bar per bin, bars of several series side by
 * side within their bin (the paper's length-distribution figure compares datasets that way). The last bin may
 * be open ("≥ x"), so a long tail does not squeeze the body of the distribution.
 */
export interface HistogramSeries {
  readonly name: string;
  /** One value per bin. */
  readonly values: readonly number[];
}

export interface HistogramOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** Bin edges, ascending: bin i is [edges[i], edges[i+1]). */
  readonly edges: readonly number[];
  /** The last bin holds everything at or above its lower edge. */
  readonly openLast?: boolean;
  readonly series: readonly HistogramSeries[];
  readonly width?: number;
}

export function histogramSvg(options: HistogramOptions): string {
  const bins = options.edges.length - 1;
  const { series } = options;
  const frame = valueFrame(options.title, options.width ?? 640, series, 20);
  const { parts, margin, height, py } = frame;
  const binWidth = frame.plotWidth / Math.max(1, bins);
  const barWidth = binWidth / Math.max(1, series.length);
  const unitBins = options.edges.every((e, i) => i === 0 || e - options.edges[i - 1]! === 1);
  if (unitBins) {
    // Bins of one unit (word counts below 20): label each bin by its value, at its centre.
    const every = Math.max(1, Math.ceil(bins / 16));
    for (let b = 0; b < bins; b += every) {
      const open = options.openLast === true && b === bins - 1;
      parts.push(
        `<text x="${(margin.left + (b + 0.5) * binWidth).toFixed(1)}" y="${height - margin.bottom + 15}" text-anchor="middle" font-size="11">${open ? '≥' : ''}${formatTick(options.edges[b]!)}</text>`,
      );
    }
  } else {
    // Edge labels, about eight so they never overlap; an open last bin is labelled "≥ its lower edge".
    const last = options.openLast === true ? bins - 1 : bins;
    const every = Math.max(1, Math.ceil(bins / 8));
    const edges = new Set<number>();
    for (let e = 0; e <= last; e += every) edges.add(e);
    edges.add(last);
    for (const e of edges) {
      if (e !== last && last - e < every / 2) continue;
      const open = options.openLast === true && e === last;
      parts.push(
        `<text x="${(margin.left + e * binWidth).toFixed(1)}" y="${height - margin.bottom + 15}" text-anchor="${open ? 'start' : 'middle'}" font-size="11">${open ? '≥ ' : ''}${formatTick(options.edges[e]!)}</text>`,
      );
    }
  }
  for (let b = 0; b < bins; b++) {
    const range =
      options.openLast === true && b === bins - 1
        ? `≥ ${formatTick(options.edges[b]!)}`
        : `${formatTick(options.edges[b]!)}–${formatTick(options.edges[b + 1]!)}`;
    series.forEach((s, i) => {
      const value = s.values[b] ?? 0;
      if (!Number.isFinite(value) || value <= 0) return;
      const x = margin.left + b * binWidth + i * barWidth;
      parts.push(
        `<rect class="mark" x="${x.toFixed(1)}" y="${py(value).toFixed(1)}" width="${Math.max(1, barWidth - 0.5).toFixed(1)}" height="${(py(0) - py(value)).toFixed(1)}" fill="${color(i)}" fill-opacity="0.85"><title>${esc(s.name)} · ${esc(range)}: ${formatTick(value)}</title></rect>`,
      );
    });
  }
  return frame.close(options.xLabel, options.yLabel);
}
