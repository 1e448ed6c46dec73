import { sumSteps } from '../../llm/accounting.js';
import { formatCount, formatDuration } from '../format.js';
import { sumValues } from '../../pipeline/stats.js';
import type { DistributionSummary, RunStats } from '../../schemas/stats.js';
import { esc } from '../svg.js';
import { constraintTypeRows, llmAccounting, yieldOf } from '../stats/derived.js';
import type { ReportRun } from './figures.js';

/** The report's tables, as HTML. Numbers people compare are right-aligned; unknowns are "-", never 0. */

type Cell = string | number | null;

export function table(head: readonly string[], rows: ReadonlyArray<readonly Cell[]>, className = ''): string {
  const cell = (c: Cell, tag: 'td' | 'th'): string => {
    const numeric = typeof c === 'number';
    const text = c === null ? '-' : numeric ? formatNumber(c) : c;
    return `<${tag}${numeric ? ' class="n"' : ''}>${text}</${tag}>`;
  };
  return (
    `<table class="${className}"><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>` +
    rows.map((r) => `<tr>${r.map((c, i) => cell(c, i === 0 ? 'th' : 'td')).join('')}</tr>`).join('') +
    '</tbody></table>'
  );
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (Number.isInteger(v)) return formatCount(v);
  return Math.abs(v) >= 100 ? formatCount(Math.round(v)) : v.toFixed(Math.abs(v) >= 10 ? 1 : 2);
}

function costText(cost: number | null, currency: string | null): string {
  return cost === null ? 'unpriced' : `${cost.toFixed(4)} ${esc(currency ?? '')}`;
}

/** Text cells are escaped here; table() writes them as they are. */
const text = (s: string): string => esc(s);

export function overviewTable(runs: readonly ReportRun[]): string {
  const row = (name: string, f: (s: RunStats) => Cell): Cell[] => [name, ...runs.map((r) => f(r.stats))];
  const list = (values: readonly string[]): string => (values.length === 0 ? '-' : text(values.join(', ')));
  const llmTotals = (s: RunStats) => llmAccounting(s).accounting.totals;
  return table(
    ['', ...runs.map((r) => r.label)],
    [
      row('data', (s) =>
        text(s.kind === 'air' ? 'AIR examples' : s.kind === 'documents' ? 'documents' : 'instructions'),
      ),
      row('stats from', (s) =>
        text(
          s.origin === 'stream'
            ? 'the run, as it wrote'
            : s.origin === 'parquet'
              ? 'the Parquet output'
              : 'merged stats',
        ),
      ),
      row('rows', (s) => s.rows),
      row('input documents read', (s) => s.funnel?.read ?? null),
      row('input documents written', (s) => s.funnel?.written ?? null),
      row('yield', (s) => {
        const y = yieldOf(s);
        return y === null ? null : `${(100 * y).toFixed(1)}%`;
      }),
      row('runs by status', (s) =>
        s.funnel === null
          ? null
          : text(
              Object.entries(s.funnel.status)
                .filter(([, n]) => n > 0)
                .map(([k, n]) => `${k} ${n}`)
                .join(', '),
            ),
      ),
      row('wall time', (s) => (s.time.wallMs === null ? null : formatDuration(s.time.wallMs))),
      row('rows per second', (s) =>
        s.time.wallMs === null || s.time.wallMs <= 0 ? null : s.rows / (s.time.wallMs / 1000),
      ),
      row('LLM calls', (s) => (llmTotals(s).calls === 0 ? null : llmTotals(s).calls)),
      row('prompt + completion tokens', (s) =>
        llmTotals(s).calls === 0 ? null : llmTotals(s).promptTokens + llmTotals(s).completionTokens,
      ),
      row('cost', (s) => {
        const t = llmTotals(s);
        if (t.calls === 0) return null;
        const priced = Object.entries(t.cost).map(([currency, v]) => `${v.toFixed(4)} ${currency}`);
        const unpriced = t.unpricedModels.length > 0 ? `unpriced: ${t.unpricedModels.join(', ')}` : '';
        return text([...priced, unpriced].filter((x) => x !== '').join('; '));
      }),
      row('guidance model', (s) => list(s.provenance.guidanceModels)),
      row('student model', (s) => list(s.provenance.studentModels)),
      row('prompt version', (s) => list(s.provenance.promptVersions)),
      row('config fingerprint', (s) => list(s.provenance.configFingerprints)),
    ],
    'overview',
  );
}

export function stageTable(run: ReportRun): string {
  const funnel = run.stats.funnel;
  if (funnel === null) return '';
  const reasons = (map: Record<string, number>): string =>
    text(
      Object.entries(map)
        .map(([k, n]) => `${k} ${formatCount(n)}`)
        .join(', '),
    );
  return table(
    ['stage', 'in', 'out', 'dropped', 'by reason', 'failed', 'by error', 'busy'],
    funnel.stages.map((s) => [
      text(s.name),
      s.in,
      s.out,
      sumValues(s.dropped),
      reasons(s.dropped),
      sumValues(s.failed),
      reasons(s.failed),
      formatDuration(s.busyMs),
    ]),
  );
}

const DISTRIBUTION_ROWS: ReadonlyArray<readonly [keyof RunStats['distributions'], string]> = [
  ['documentWords', 'document words'],
  ['initialInstructionWords', 'initial instruction words'],
  ['instructionWords', 'instruction words'],
  ['outputWords', 'output words'],
  ['constraintsPerInstruction', 'constraints per instruction'],
  ['depth', 'depth (constraints merged)'],
  ['depthReached', 'depth reached'],
  ['initialScore', 'initial instruction score (0-5)'],
  ['complexity', 'complexity (1-10)'],
  ['quality', 'quality (1-10)'],
  ['taggedTypes', 'constraint types found by the tagger'],
  ['callsPerRow', 'LLM calls per row'],
];

export function distributionTable(runs: readonly ReportRun[]): string {
  const columns = ['n', 'mean', 'p50', 'p90', 'p99', 'max'] as const;
  const pick = (s: DistributionSummary): Cell[] => [s.count, s.mean, s.p50, s.p90, s.p99, s.max];
  const head = [
    'measure',
    ...runs.flatMap((r) => columns.map((c) => (runs.length > 1 ? `${c} ${r.label}` : c))),
  ];
  const rows = DISTRIBUTION_ROWS.filter(([name]) =>
    runs.some((r) => r.stats.distributions[name].summary.count > 0),
  ).map(([name, label]) => [label, ...runs.flatMap((r) => pick(r.stats.distributions[name].summary))]);
  return table(head, rows, 'distributions');
}

export function constraintTypeTable(run: ReportRun): string {
  return table(
    [
      'constraint type',
      'proposed',
      'gated (student check)',
      'duplicate',
      'merged into rows',
      'stated (tagger)',
    ],
    constraintTypeRows(run.stats).map((r) => [
      text(r.label),
      r.counts.chosen,
      r.counts.gated,
      r.counts.duplicate,
      r.counts.merged,
      r.counts.tagged,
    ]),
  );
}

export function stopReasonTable(runs: readonly ReportRun[]): string {
  const reasons = [...new Set(runs.flatMap((r) => Object.keys(r.stats.stopReasons)))].sort();
  if (reasons.length === 0) return '';
  return table(
    ['stop reason', ...runs.map((r) => `rows ${r.label}`)],
    reasons.map((reason) => [
      text(reason),
      // A dataset without refinement rounds has no stop reasons: unknown, not 0.
      ...runs.map((r) => (r.stats.kind === 'air' ? (r.stats.stopReasons[reason] ?? 0) : null)),
    ]),
  );
}

export function llmTable(runs: readonly ReportRun[]): string {
  const rows: Cell[][] = [];
  for (const run of runs) {
    const { accounting, from } = llmAccounting(run.stats);
    for (const e of accounting.entries) {
      rows.push([
        text(`${runs.length > 1 ? `${run.label}: ` : ''}${e.role}`),
        text(e.model),
        e.calls,
        e.cacheHits,
        e.promptTokens,
        e.completionTokens,
        e.cachedPromptTokens + e.cachedCompletionTokens,
        e.retries,
        text(
          Object.entries(e.errors)
            .map(([k, n]) => `${k} ${n}`)
            .join(', ') || (from === 'rows' ? '-' : '0'),
        ),
        e.latency.p50,
        e.latency.p95,
        e.latency.p99,
        from === 'rows' ? 'not in rows' : costText(e.cost, e.currency),
      ]);
    }
  }
  if (rows.length === 0) return '<p class="empty">No LLM calls.</p>';
  return table(
    [
      'role',
      'model',
      'calls',
      'cache hits',
      'prompt tokens',
      'completion tokens',
      'cached tokens',
      'retries',
      'errors',
      'p50 ms',
      'p95 ms',
      'p99 ms',
      'cost',
    ],
    rows,
  );
}

/**
 * Per prompt step: prompt tokens sent against those the servers report they found in their prefix cache (the
 * prompt tokens they did not compute). "-" where no server reported it (vLLM: --enable-prompt-tokens-details).
 */
export function stepTable(runs: readonly ReportRun[]): string {
  const rows: Cell[][] = [];
  for (const run of runs) {
    const steps = llmAccounting(run.stats).accounting.steps ?? {};
    const total = sumSteps(steps);
    const named = Object.entries(steps);
    if (named.length === 0) continue;
    for (const [step, s] of [...named, ['all steps', total] as const]) {
      const reported = s.reportedCalls > 0;
      rows.push([
        text(`${runs.length > 1 ? `${run.label}: ` : ''}${step}`),
        s.calls,
        s.promptTokens,
        s.completionTokens,
        reported ? s.serverCachedTokens : null,
        reported && s.reportedPromptTokens > 0
          ? `${((100 * s.serverCachedTokens) / s.reportedPromptTokens).toFixed(1)}%`
          : null,
        reported ? s.promptTokens - s.serverCachedTokens : null,
      ]);
    }
  }
  if (rows.length === 0) return '';
  return table(
    [
      'step',
      'calls',
      'prompt tokens sent',
      'completion tokens',
      'prompt tokens cached by the server',
      'cached share',
      'prompt tokens computed',
    ],
    rows,
  );
}

/** Per replica (server) of a role with several: attempts sent there, answered, errors. Empty without a fleet. */
export function replicaTable(runs: readonly ReportRun[]): string {
  const rows: Cell[][] = [];
  for (const run of runs) {
    for (const e of llmAccounting(run.stats).accounting.entries) {
      for (const [url, r] of Object.entries(e.replicas ?? {})) {
        rows.push([
          text(`${runs.length > 1 ? `${run.label}: ` : ''}${e.role}`),
          text(url),
          r.attempts,
          r.answered,
          text(
            Object.entries(r.errors)
              .map(([k, n]) => `${k} ${n}`)
              .join(', ') || '0',
          ),
        ]);
      }
    }
  }
  if (rows.length === 0) return '';
  return table(['role', 'replica', 'attempts', 'answered', 'errors'], rows);
}
