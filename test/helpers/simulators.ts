import { afterEach } from 'vitest';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../llm/simulator/index.js';

/**
 * In-process simulators for one test file: zero latency and seed 1 unless the options say otherwise, each closed
 * after the test that started it. Call at the top level of the file.
 */
export function useSimulators(): (options?: SimulatorOptions) => Promise<Simulator> {
  const open: Simulator[] = [];
  afterEach(async () => {
    while (open.length > 0) await open.pop()!.close();
  });
  return async (options = {}) => {
    const simulator = await startSimulator({ zeroLatency: true, seed: 1, ...options });
    open.push(simulator);
    return simulator;
  };
}
