/**
 * Child-process entry of the benchmark's simulator: `air sim` without the CLI, so every reply option (the
 * heavy-tailed `replyLength`) can be set. Reads the options as JSON from argv, prints the base URL, and on
 * SIGTERM prints its own counters as one JSON line and exits.
 */
import { startSimulator, type SimulatorOptions } from '../../llm/simulator/index.js';

const options = JSON.parse(process.argv[2] ?? '{}') as SimulatorOptions;
const sim = await startSimulator(options);
process.stdout.write(`${sim.url}\n`);
process.once('SIGTERM', () => {
  const stats = sim.stats();
  void sim.close().then(() => {
    process.stdout.write(`${JSON.stringify(stats)}\n`);
    process.exit(0);
  });
});
