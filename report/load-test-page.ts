import type { LevelResult, LoadTestReport } from '../llm/load-test.js';
import { esc, lineChartSvg, type Series } from './line-chart.js';

/** `air bench`'s page: throughput and latency curves against concurrency, the knee, and the raw table. */
export function loadTestHtml(report: LoadTestReport): string {
  const levels = report.levels;
  const chart = (title: string, yLabel: string, series: readonly Series[]): string =>
    lineChartSvg({
      title,
      xLabel: 'requests in flight (log scale)',
      yLabel,
      logX: true,
      markX: { x: report.knee, label: `knee: ${report.knee}` },
      series,
    });
  const throughput = chart('Throughput by concurrency', 'requests / s', [
    { name: 'requests/s', points: levels.map((l) => [l.concurrency, l.requestsPerS] as const) },
  ]);
  const tokens = chart('Tokens by concurrency', 'tokens / s', [
    {
      name: 'completion tokens/s',
      points: levels.map((l) => [l.concurrency, l.completionTokensPerS] as const),
    },
    { name: 'prompt tokens/s', points: levels.map((l) => [l.concurrency, l.promptTokensPerS] as const) },
  ]);
  const latency = chart(
    'Latency by concurrency',
    'latency (ms)',
    (['p50', 'p95', 'p99'] as const).map((q) => ({
      name: q,
      points: levels.map((l) => [l.concurrency, l.latencyMs[q]] as const),
    })),
  );
  const rows = levels.map(levelRow).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>air bench: ${esc(report.endpoint)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:1000px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}figure{margin:1rem 0}</style>
</head><body>
<h1>air bench</h1>
<p>Endpoint: <code>${esc(report.endpoint)}</code> · started ${esc(report.startedAt)} ·
recommended <code>maxConcurrency: ${report.recommendedConcurrency}</code> (the knee: past it, throughput gains less than 10% while median latency grows more than 30%, or errors pass 1%).</p>
<figure>${throughput}</figure>
<figure>${tokens}</figure>
<figure>${latency}</figure>
<table><thead><tr><th>concurrency</th><th>req/s</th><th>prompt tok/s</th><th>completion tok/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>errors</th></tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>
`;
}

/** One row of the raw table: a concurrency level's rates, latency quantiles and error share. */
function levelRow(l: LevelResult): string {
  return (
    `<tr><td>${l.concurrency}</td><td>${l.requestsPerS.toFixed(1)}</td><td>${l.promptTokensPerS.toFixed(0)}</td>` +
    `<td>${l.completionTokensPerS.toFixed(0)}</td><td>${l.latencyMs.p50.toFixed(0)}</td><td>${l.latencyMs.p95.toFixed(0)}</td>` +
    `<td>${l.latencyMs.p99.toFixed(0)}</td><td>${((100 * l.errors) / l.requests).toFixed(1)}%</td></tr>`
  );
}
