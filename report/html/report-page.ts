import { esc } from '../svg.js';
import { figures, type Figure, type ReportRun } from './figures.js';
import {
  constraintTypeTable,
  distributionTable,
  llmTable,
  stepTable,
  replicaTable,
  overviewTable,
  stageTable,
  stopReasonTable,
} from './tables.js';

export type { ReportRun } from './figures.js';

export interface ReportOptions {
  readonly title?: string;
  /** Shown in the header; tests pass a fixed date so pages compare byte for byte. */
  readonly generatedAt?: Date;
}

const STYLE = `
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1340px;padding:0 1rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
nav a{margin-right:1rem}
.grid{display:flex;flex-wrap:wrap;gap:1.2rem}
figure{margin:0;flex:0 1 660px}figure svg{max-width:100%;height:auto;background:#fff}
figcaption{font-size:.85rem;color:#555;max-width:640px}
figure.empty{border:1px dashed #bbb;padding:1rem;color:#666;font-size:.9rem;flex-basis:600px}
table{border-collapse:collapse;margin:1rem 0;font-size:.88rem}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
thead th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{background:#fff6d6;border:1px solid #e6cf7a;padding:.6rem 1rem}
.empty{color:#666}`;

/**
 * `report.html`: one self-contained page (inline SVG and CSS, no script, nothing fetched) with the funnel,
 * the length, constraint-type, domain, score and depth distributions, latency and throughput over time, and
 * the token and cost table. Several runs (`air stats --compare`) share every plot and table.
 */
export function reportHtml(runs: readonly ReportRun[], options: ReportOptions = {}): string {
  if (runs.length === 0) throw new RangeError('a report needs at least one run');
  const all = new Map(figures(runs).map((f) => [f.id, f]));
  const fig = (...ids: string[]): string =>
    `<div class="grid">${ids.map((id) => figureHtml(all.get(id)!)).join('\n')}</div>`;
  const title =
    options.title ??
    (runs.length === 1
      ? `air run report: ${runs[0]!.label}`
      : `air comparison: ${runs.map((r) => r.label).join(' vs ')}`);
  const airRuns = runs.filter((r) => r.stats.kind === 'air');
  const simulated = runs.some((r) =>
    [...r.stats.provenance.guidanceModels, ...r.stats.provenance.studentModels].some((m) =>
      m.startsWith('air-sim-'),
    ),
  );
  const generated = (options.generatedAt ?? new Date()).toISOString();
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><style>${STYLE}</style></head><body>
<header><h1>${esc(title)}</h1>
<p>Generated ${esc(generated)} by <code>air</code>. Every number comes from <code>stats.json</code> (schema version ${runs[0]!.stats.version}).</p>
${simulated ? '<p class="note">Made with <code>--llm sim</code>: the simulator’s replies are seeded nonsense, so these rows are not training data. Point the run at real servers for that.</p>' : ''}
<nav><a href="#overview">Overview</a><a href="#funnel">Funnel</a><a href="#lengths">Lengths</a><a href="#constraints">Constraints and sources</a><a href="#scores">Complexity and quality</a><a href="#depth">Depth</a><a href="#llm">LLM calls</a><a href="#distributions">All distributions</a></nav>
</header>
<section id="overview"><h2>Overview</h2>${overviewTable(runs)}</section>
<section id="funnel"><h2>Funnel</h2>
${fig('funnel', 'losses')}
${runs.map((r) => (r.stats.funnel === null ? '' : `<h3>Stages${runs.length > 1 ? `: ${esc(r.label)}` : ''}</h3>${stageTable(r)}`)).join('\n')}
</section>
<section id="lengths"><h2>Lengths (the paper’s Figure 4)</h2>
${fig('length-instruction', 'length-output', 'length-document')}
</section>
<section id="constraints"><h2>Constraint types and source domains (the paper’s Figure 3)</h2>
${fig('constraint-types', 'tagged-types', 'domains')}
${airRuns.map((r) => `<h3>Constraint types${runs.length > 1 ? `: ${esc(r.label)}` : ''}</h3>${constraintTypeTable(r)}`).join('\n')}
</section>
<section id="scores"><h2>Complexity and quality (the paper’s Figure 5)</h2>
${fig('complexity-quality', 'scores')}
</section>
<section id="depth"><h2>Depth</h2>
${fig('depth')}
${stopReasonTable(runs) === '' ? '' : `<h3>Why refinement stopped</h3>${stopReasonTable(runs)}`}
</section>
<section id="llm"><h2>LLM calls: latency, throughput, tokens and cost</h2>
${fig('throughput', 'latency-time', 'latency-models')}
<h3>Tokens and cost per role and model</h3>
${llmNote(runs)}
${llmTable(runs)}
${stepTable(runs) === '' ? '' : `<h3>Prompt tokens per step: sent, and found in the servers' prefix cache</h3>${stepTable(runs)}`}
${replicaTable(runs) === '' ? '' : `<h3>Per replica</h3>${replicaTable(runs)}`}
</section>
<section id="distributions"><h2>All distributions</h2>
<p>Word counts: quantiles within 1% (log-bucket histograms, merged across shards by adding buckets); small integers (depth, scores, counts per row) are counted exactly.</p>
${distributionTable(runs)}
</section>
</body></html>
`;
}

function figureHtml(figure: Figure): string {
  if (figure.svg === null) {
    return `<figure class="empty" data-figure="${esc(figure.id)}"><p><b>No plot.</b> ${esc(figure.empty ?? '')}</p><figcaption>${esc(figure.caption)}</figcaption></figure>`;
  }
  return `<figure data-figure="${esc(figure.id)}">${figure.svg}<figcaption>${esc(figure.caption)}</figcaption></figure>`;
}

function llmNote(runs: readonly ReportRun[]): string {
  const fromRows = runs.filter((r) => r.stats.llm === null && r.stats.rowCalls.totals.calls > 0);
  if (fromRows.length === 0) return '';
  return `<p class="note">${esc(fromRows.map((r) => r.label).join(', '))}: no ledger with the client’s accounting, so these are the calls listed on the written rows only (calls of dropped documents, errors and cost are not in the rows).</p>`;
}
