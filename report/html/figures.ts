import type { ExactDistributionName, LogDistributionName, RunStats } from '../../schemas/stats.js';
import { barChartSvg, columnChartSvg, type BarSeries } from '../bar-chart.js';
import { bubbleChartSvg } from '../bubble-chart.js';
import { histogramSvg } from '../histogram-chart.js';
import { lineChartSvg } from '../line-chart.js';
import {
  constraintTypeRows,
  funnelSteps,
  llmAccounting,
  lossReasons,
  throughput,
  wordBins,
} from '../stats/derived.js';

/** One run in a report: its stats and the name it goes by (folder name, or --labels). */
export interface ReportRun {
  readonly label: string;
  readonly stats: RunStats;
}

/** A plot, or the reason there is none (a column the data lacks, a run without a ledger). */
export interface Figure {
  readonly id: string;
  readonly caption: string;
  readonly svg: string | null;
  readonly empty?: string;
}

const TOP_CATEGORIES = 15;

/**
 * The report's plots. With one run they show counts; with several (`air stats --compare`) they show shares,
 * so datasets of different sizes compare, and each run is one series.
 */
export function figures(runs: readonly ReportRun[]): Figure[] {
  return [
    funnel(runs),
    losses(runs),
    lengths(runs, 'instructionWords', 'length-instruction', 'Instruction length', 'words per instruction'),
    lengths(runs, 'outputWords', 'length-output', 'Output length', 'words per output'),
    lengths(runs, 'documentWords', 'length-document', 'Source document length', 'words per document'),
    constraintTypes(runs),
    taggedTypes(runs),
    domains(runs),
    complexityQuality(runs),
    scores(runs),
    depth(runs),
    throughputOverTime(runs),
    latencyOverTime(runs),
    latencyByModel(runs),
  ];
}

const shares = (runs: readonly ReportRun[]): boolean => runs.length > 1;

function seriesName(runs: readonly ReportRun[], run: ReportRun, what?: string): string {
  if (what === undefined) return run.label;
  return runs.length > 1 ? `${what} (${run.label})` : what;
}

/** Values as counts, or as % of `total` when comparing runs. */
function scaled(runs: readonly ReportRun[], values: readonly number[], total: number): number[] {
  return shares(runs) ? values.map((v) => (total > 0 ? (100 * v) / total : 0)) : [...values];
}

function percentOr(runs: readonly ReportRun[], unit: string): string {
  return shares(runs) ? `% of ${unit}` : unit;
}

const hasData = (series: readonly BarSeries[]): boolean => series.some((s) => s.values.some((v) => v > 0));

function funnel(runs: readonly ReportRun[]): Figure {
  const caption =
    'Input documents still in the run after each stage, then the documents with at least one row written (the ledger).';
  const withFunnel = runs.filter((r) => r.stats.funnel !== null);
  if (withFunnel.length === 0) {
    return {
      id: 'funnel',
      caption,
      svg: null,
      empty: 'No ledger.json beside these rows: the funnel is unknown.',
    };
  }
  const steps = withFunnel.map((r) => funnelSteps(r.stats.funnel!));
  const categories = unionInOrder(steps.map((s) => s.map((x) => x.step)));
  const series = withFunnel.map((run, i) => ({
    name: run.label,
    values: scaled(
      runs,
      categories.map((c) => steps[i]!.find((x) => x.step === c)?.rows ?? 0),
      run.stats.funnel!.read,
    ),
  }));
  return {
    id: 'funnel',
    caption,
    svg: barChartSvg({
      title: 'Funnel: input documents by stage',
      valueLabel: percentOr(runs, 'input documents'),
      categories,
      series,
    }),
  };
}

function losses(runs: readonly ReportRun[]): Figure {
  const caption =
    'Why input documents did not become rows: drops by "stage:reason", failures by "stage:error".';
  const withFunnel = runs.filter((r) => r.stats.funnel !== null);
  const reasons = withFunnel.map((r) => lossReasons(r.stats.funnel!));
  const categories = topByTotal(reasons.map((list) => new Map(list.map((x) => [x.reason, x.rows]))));
  const series = withFunnel.map((run, i) => ({
    name: run.label,
    values: scaled(
      runs,
      categories.map((c) => reasons[i]!.find((x) => x.reason === c)?.rows ?? 0),
      run.stats.funnel!.read,
    ),
  }));
  if (!hasData(series)) {
    return {
      id: 'losses',
      caption,
      svg: null,
      empty: 'Nothing was dropped or failed (or there is no ledger).',
    };
  }
  return {
    id: 'losses',
    caption,
    svg: barChartSvg({
      title: 'Dropped and failed input documents by reason',
      valueLabel: percentOr(runs, 'input documents'),
      categories,
      series,
    }),
  };
}

function lengths(
  runs: readonly ReportRun[],
  name: LogDistributionName,
  id: string,
  title: string,
  unit: string,
): Figure {
  // The paper's Figure 4 analogue; one run shows its initial instructions beside the final ones.
  const parts: Array<{ name: string; run: ReportRun; dist: LogDistributionName }> = runs.map((run) => ({
    name: run.label,
    run,
    dist: name,
  }));
  const single = runs[0]!;
  if (name === 'instructionWords' && runs.length === 1) {
    parts[0] = { name: 'final instruction', run: single, dist: name };
    parts.unshift({ name: 'initial instruction', run: single, dist: 'initialInstructionWords' });
  }
  const filled = parts.filter((p) => p.run.stats.distributions[p.dist].summary.count > 0);
  const caption = `${title} in words (whitespace-separated), ${shares(runs) ? 'as a share of each run’s rows' : 'rows per bin'}.`;
  if (filled.length === 0) {
    const why =
      name === 'documentWords'
        ? 'These rows do not carry their source document (AIR rows keep no document text or word count).'
        : 'No rows with this column.';
    return { id, caption, svg: null, empty: why };
  }
  const bins = wordBins(filled.map((p) => p.run.stats.distributions[p.dist]));
  return {
    id,
    caption,
    svg: histogramSvg({
      title,
      xLabel: unit,
      yLabel: percentOr(runs, 'rows'),
      edges: bins.edges,
      openLast: bins.openLast,
      series: filled.map((p, i) => ({
        name: p.name,
        values: scaled(runs, bins.counts[i]!, p.run.stats.distributions[p.dist].summary.count),
      })),
    }),
  };
}

function constraintTypes(runs: readonly ReportRun[]): Figure {
  const caption =
    'Per constraint type: proposed by the judge, dropped by the student-check gate, rejected as a duplicate (refine counters), and merged into written instructions.';
  const air = runs.filter((r) => r.stats.kind === 'air');
  if (air.length === 0) {
    return { id: 'constraint-types', caption, svg: null, empty: 'Not AIR output: no judge rounds to count.' };
  }
  const rows = constraintTypeRows(air[0]!.stats);
  const categories = rows.map((r) => r.label);
  const series: BarSeries[] =
    air.length === 1 && !shares(runs)
      ? (['chosen', 'gated', 'duplicate', 'merged'] as const).map((what) => ({
          name: {
            chosen: 'proposed',
            gated: 'gated (student check)',
            duplicate: 'duplicate',
            merged: 'merged',
          }[what],
          values: rows.map((r) => r.counts[what]),
        }))
      : air.map((run) => ({
          name: `merged (${run.label})`,
          values: scaled(
            runs,
            constraintTypeRows(run.stats).map((r) => r.counts.merged),
            run.stats.rows,
          ),
        }));
  if (!hasData(series))
    return { id: 'constraint-types', caption, svg: null, empty: 'No constraint was proposed.' };
  return {
    id: 'constraint-types',
    caption,
    svg: barChartSvg({
      title: shares(runs)
        ? 'Constraint types merged into instructions (the paper’s Figure 3)'
        : 'Constraint types (the paper’s Figure 3)',
      valueLabel: shares(runs) ? '% of rows with the type' : 'constraints',
      categories,
      series,
    }),
  };
}

function taggedTypes(runs: readonly ReportRun[]): Figure {
  const caption =
    'Share of instructions stating each constraint type, by the rule-based tagger (air score): a model-free lower bound, comparable across datasets.';
  const tagged = runs.filter((r) => r.stats.distributions.taggedTypes.summary.count > 0);
  if (tagged.length === 0)
    return { id: 'tagged-types', caption, svg: null, empty: 'No instructions to tag.' };
  const categories = constraintTypeRows(tagged[0]!.stats).map((r) => r.label);
  const series = tagged.map((run) => {
    const total = run.stats.distributions.taggedTypes.summary.count;
    return {
      name: run.label,
      values: constraintTypeRows(run.stats)
        .slice(0, categories.length)
        .map((r) => (100 * r.counts.tagged) / total),
    };
  });
  if (!hasData(series)) {
    return {
      id: 'tagged-types',
      caption,
      svg: null,
      empty: 'The tagger found no constraint in any instruction.',
    };
  }
  return {
    id: 'tagged-types',
    caption,
    svg: barChartSvg({
      title: 'Constraint types stated in the instructions (tagger)',
      valueLabel: '% of instructions',
      categories,
      series,
      formatValue: (v) => `${v.toFixed(1)}%`,
    }),
  };
}

function domains(runs: readonly ReportRun[]): Figure {
  const caption = `Source domains: host of each row’s url column (lower case, without "www."), the ${TOP_CATEGORIES} most frequent.`;
  const withHosts = runs.filter((r) => Object.keys(r.stats.domains.hosts).length > 0);
  if (withHosts.length === 0)
    return { id: 'domains', caption, svg: null, empty: 'The rows have no url column.' };
  const maps = withHosts.map((r) => new Map(Object.entries(r.stats.domains.hosts)));
  const categories = topByTotal(maps);
  const series = withHosts.map((run, i) => {
    const total = Object.values(run.stats.domains.hosts).reduce((a, b) => a + b, 0) + run.stats.domains.other;
    return {
      name: run.label,
      values: scaled(
        runs,
        categories.map((c) => maps[i]!.get(c) ?? 0),
        total,
      ),
    };
  });
  return {
    id: 'domains',
    caption,
    svg: barChartSvg({
      title: 'Source domains',
      valueLabel: percentOr(runs, 'rows with a URL'),
      categories,
      series,
    }),
  };
}

function complexityQuality(runs: readonly ReportRun[]): Figure {
  const caption =
    'LLM-judged complexity against quality (1-10), one circle per score pair, its area proportional to the rows there (the paper’s Figure 5).';
  const scored = runs.filter((r) => Object.keys(r.stats.complexityQuality).length > 0);
  if (scored.length === 0) {
    return { id: 'complexity-quality', caption, svg: null, empty: 'No rows with both LLM scores.' };
  }
  const series = scored.map((run) => ({
    name: run.label,
    cells: Object.entries(run.stats.complexityQuality).map(([key, count]) => {
      const [x, y] = key.split(',').map(Number) as [number, number];
      return { x, y, count };
    }),
  }));
  const all = series.flatMap((s) => s.cells);
  const lo = Math.min(1, ...all.map((c) => Math.min(c.x, c.y)));
  const hi = Math.max(10, ...all.map((c) => Math.max(c.x, c.y)));
  return {
    id: 'complexity-quality',
    caption,
    svg: bubbleChartSvg({
      title: 'Complexity vs quality',
      xLabel: 'complexity (1-10)',
      yLabel: 'quality (1-10)',
      x: [lo, hi],
      y: [lo, hi],
      series,
      shares: shares(runs),
    }),
  };
}

function scores(runs: readonly ReportRun[]): Figure {
  const caption = 'Distribution of the LLM-judged complexity and quality scores.';
  return exactColumns(runs, 'scores', caption, 'Complexity and quality scores', 'score (1-10)', [
    ['complexity', 'complexity'],
    ['quality', 'quality'],
  ]);
}

function depth(runs: readonly ReportRun[]): Figure {
  const caption =
    'Constraints accepted per document (depth reached) of the written rows; with one run, also every refined document, those that reached depth 0 included (refine counters).';
  const figure = exactColumns(runs, 'depth', caption, 'Depth reached', 'constraints accepted (depth)', [
    ['depthReached', 'rows'],
  ]);
  const refine =
    runs.length === 1 ? runs[0]!.stats.funnel?.stages.find((s) => s.name === 'refine') : undefined;
  if (refine === undefined || figure.svg === null) return figure;
  const byDepth = new Map<number, number>();
  for (const [key, n] of Object.entries(refine.counters)) {
    const match = /^depth:(\d+)$/.exec(key);
    if (match !== null) byDepth.set(Number(match[1]), n);
  }
  const rows = runs[0]!.stats.distributions.depthReached.counts;
  const max = Math.max(...byDepth.keys(), ...Object.keys(rows).map(Number));
  const categories = Array.from({ length: max + 1 }, (_, d) => String(d));
  return {
    ...figure,
    svg: columnChartSvg({
      title: 'Depth reached',
      valueLabel: 'documents',
      categoryLabel: 'constraints accepted (depth)',
      categories,
      series: [
        { name: 'refined documents', values: categories.map((d) => byDepth.get(Number(d)) ?? 0) },
        { name: 'written rows', values: categories.map((d) => rows[d] ?? 0) },
      ],
    }),
  };
}

function exactColumns(
  runs: readonly ReportRun[],
  id: string,
  caption: string,
  title: string,
  categoryLabel: string,
  which: ReadonlyArray<readonly [ExactDistributionName, string]>,
): Figure {
  const parts = runs.flatMap((run) =>
    which
      .filter(([name]) => run.stats.distributions[name].summary.count > 0)
      .map(([name, what]) => ({
        run,
        name,
        series: seriesName(runs, run, which.length > 1 || runs.length === 1 ? what : undefined),
      })),
  );
  if (parts.length === 0) return { id, caption, svg: null, empty: 'No rows with these columns.' };
  const values = parts.map((p) => p.run.stats.distributions[p.name]);
  const keys = values.flatMap((d) => Object.keys(d.counts).map(Number));
  const lo = Math.min(...keys);
  const hi = Math.max(...keys);
  const categories = Array.from({ length: hi - lo + 1 }, (_, i) => String(lo + i));
  return {
    id,
    caption,
    svg: columnChartSvg({
      title,
      valueLabel: percentOr(runs, 'rows'),
      categoryLabel,
      categories,
      series: parts.map((p, i) => ({
        name: p.series,
        values: scaled(
          runs,
          categories.map((c) => values[i]!.counts[c] ?? 0),
          values[i]!.summary.count,
        ),
      })),
    }),
  };
}

function throughputOverTime(runs: readonly ReportRun[]): Figure {
  const caption =
    'Rows written and LLM calls answered per second, per minute of the run (calls: every call when the job reports them, else the calls listed on the rows written in that minute).';
  const series = runs.flatMap((run) => {
    const points = throughput(run.stats);
    if (points.length === 0) return [];
    const calls = run.stats.time.callsFrom === 'client' ? 'LLM calls/s' : 'LLM calls/s (of rows written)';
    return [
      { name: seriesName(runs, run, 'rows/s'), points: points.map((p) => [p.minute, p.rowsPerS] as const) },
      { name: seriesName(runs, run, calls), points: points.map((p) => [p.minute, p.callsPerS] as const) },
    ];
  });
  if (series.length === 0) {
    return {
      id: 'throughput',
      caption,
      svg: null,
      empty: 'Recomputed from Parquet: rows carry no write time.',
    };
  }
  return {
    id: 'throughput',
    caption,
    svg: lineChartSvg({
      title: 'Throughput over time',
      xLabel: 'minutes since the run started',
      yLabel: 'per second',
      series,
    }),
  };
}

function latencyOverTime(runs: readonly ReportRun[]): Figure {
  const caption =
    'Mean latency of the LLM calls that reached a server (cache hits excluded), per minute of the run.';
  const series = runs.flatMap((run) => {
    const points = throughput(run.stats).filter((p) => p.meanLatencyMs !== null);
    return points.length === 0
      ? []
      : [
          {
            name: seriesName(runs, run, 'mean latency'),
            points: points.map((p) => [p.minute, p.meanLatencyMs!] as const),
          },
        ];
  });
  if (series.length === 0) {
    return {
      id: 'latency-time',
      caption,
      svg: null,
      empty: 'No timed LLM calls (recomputed from Parquet, or no LLM).',
    };
  }
  return {
    id: 'latency-time',
    caption,
    svg: lineChartSvg({
      title: 'LLM latency over time',
      xLabel: 'minutes since the run started',
      yLabel: 'mean latency (ms)',
      series,
    }),
  };
}

function latencyByModel(runs: readonly ReportRun[]): Figure {
  const caption = 'Latency percentiles of the calls that reached a server, per role and model.';
  const entries = runs.flatMap((run) =>
    llmAccounting(run.stats)
      .accounting.entries.filter((e) => e.latency.count > 0)
      .map((e) => ({
        label: runs.length > 1 ? `${run.label}: ${e.role} ${e.model}` : `${e.role} · ${e.model}`,
        e,
      })),
  );
  if (entries.length === 0) return { id: 'latency-models', caption, svg: null, empty: 'No LLM calls.' };
  return {
    id: 'latency-models',
    caption,
    svg: barChartSvg({
      title: 'LLM latency by role and model',
      valueLabel: 'latency (ms)',
      categories: entries.map((x) => x.label),
      series: (['p50', 'p95', 'p99'] as const).map((q) => ({
        name: q,
        values: entries.map((x) => x.e.latency[q] ?? 0),
      })),
      formatValue: (v) => `${Math.round(v)} ms`,
    }),
  };
}

/** Category names in first-seen order across lists. */
function unionInOrder(lists: readonly (readonly string[])[]): string[] {
  const seen = new Set<string>();
  for (const list of lists) for (const item of list) seen.add(item);
  return [...seen];
}

/** The most frequent keys over all maps (summed), at most TOP_CATEGORIES, ties by name. */
function topByTotal(maps: ReadonlyArray<ReadonlyMap<string, number>>): string[] {
  const totals = new Map<string, number>();
  for (const map of maps) for (const [k, v] of map) totals.set(k, (totals.get(k) ?? 0) + v);
  return [...totals.entries()]
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1))
    .slice(0, TOP_CATEGORIES)
    .map(([k]) => k);
}
