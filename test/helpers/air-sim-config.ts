/**
 * A small AIR job against one `air sim` at `url` serving the models `guide` and `student`, for tests that run
 * real processes: a tenth of the documents (decided per id, so ranks and units split it exactly), two refine
 * rounds, four documents in flight and parts of three rows, so a process killed mid-run has committed some.
 */
export function simAirConfig(url: string): Record<string, unknown> {
  return {
    method: 'air',
    llm: {
      guidance: { baseUrl: url, model: 'guide' },
      student: { baseUrl: url, model: 'student' },
    },
    sample: { preSample: { mode: 'rate', rate: 0.1, seed: 7 } },
    air: { documentsInFlight: 4, refine: { maxIterations: 2 } },
    writer: { partRows: 3 },
    progress: 'off',
  };
}
