import { describe, expect, it } from 'vitest';
import * as air from '../index.js';
import { CollectingSink, CountingSource } from './helpers/memory.js';

describe('library API', () => {
  it('exports the engine, I/O, job, LLM layer and operators, and a graph built from it runs', async () => {
    for (const name of [
      'pipeline',
      'ParquetSource',
      'ParquetSink',
      'runJob',
      'HttpLlmClient',
      'startSimulator',
      'tagConstraints',
      'countConstraints',
      'refine',
      'appendAirStages',
      'airTable',
      'diversitySelect',
      'nearDedupe',
      'StatsCollector',
    ]) {
      expect(air, name).toHaveProperty(name);
    }
    const sink = new CollectingSink<number>();
    const report = await air
      .pipeline(new CountingSource(10))
      .pipe({ name: 'double', process: (n: number) => air.emit(n * 2) })
      .into(sink)
      .run();
    expect(report.status).toBe('completed');
    expect(sink.committed).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
  });
});
