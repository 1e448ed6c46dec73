import { describe, expect, it } from 'vitest';
import { parseRunConfig, runConfigSchema, type RunConfigInput } from '../job/config.js';
import { settingKeys } from '../job/config-keys.js';
import { configFingerprint } from '../job/fingerprint.js';
import {
  classifySetting,
  NON_RESULT_SETTINGS,
  RESULT_SETTINGS,
  resultSettings,
} from '../schemas/settings.js';

const base: RunConfigInput = { input: 'shards/', output: 'out' };
const fingerprintOf = (extra: Partial<RunConfigInput>): string =>
  configFingerprint(parseRunConfig({ ...base, ...extra }));

describe('config fingerprint', () => {
  it('classifies every key of the config schema as deciding results or not', () => {
    const keys = settingKeys(runConfigSchema).map((k) => k.path);
    expect(keys.length).toBeGreaterThan(80);
    const unclassified = keys.filter((k) => classifySetting(k) === undefined);
    expect(unclassified, 'add each to RESULT_SETTINGS or NON_RESULT_SETTINGS in schemas/settings.ts').toEqual(
      [],
    );
  });

  it('names only keys that exist, each with a reason', () => {
    const keys = settingKeys(runConfigSchema).map((k) => k.path);
    for (const entry of [...Object.keys(RESULT_SETTINGS), ...Object.keys(NON_RESULT_SETTINGS)]) {
      expect(
        keys.some((k) => k === entry || k.startsWith(`${entry}.`)),
        entry,
      ).toBe(true);
    }
    for (const why of [...Object.values(RESULT_SETTINGS), ...Object.values(NON_RESULT_SETTINGS)]) {
      expect(why.length).toBeGreaterThan(8);
    }
  });

  it('changes with every stage-0 sample setting', () => {
    const reference = fingerprintOf({});
    const changes: Partial<RunConfigInput>[] = [
      { sample: { preSample: { mode: 'rate', rate: 0.5 } } },
      { sample: { preSample: { mode: 'reservoir', perShard: 10 } } },
      { sample: { preSample: { seed: 7 } } },
      { sample: { quality: { symbolRatio: { max: 0.3 } } } },
      { sample: { quality: { duplicateLines: { enabled: false } } } },
      { sample: { quality: { charRun: { maxRun: 20 } } } },
      { sample: { diversity: { enabled: true, keep: 10 } } },
      { sample: { diversity: { dimensions: 128 } } },
    ];
    const seen = new Set([reference]);
    for (const change of changes) {
      const fingerprint = fingerprintOf(change);
      expect(seen.has(fingerprint), JSON.stringify(change)).toBe(false);
      seen.add(fingerprint);
    }
  });

  it('does not change with throughput, paths, display or how calls travel', () => {
    const reference = fingerprintOf({});
    expect(fingerprintOf({ output: 'elsewhere' })).toBe(reference);
    expect(fingerprintOf({ engine: { queueCapacity: 8, workerThreads: 1 } })).toBe(reference);
    expect(fingerprintOf({ writer: { partRows: 10, compression: 'snappy' } })).toBe(reference);
    expect(fingerprintOf({ progress: 'off' })).toBe(reference);
    expect(fingerprintOf({ air: { documentsInFlight: 3 } })).toBe(reference);
    expect(fingerprintOf({ llm: { simulator: { maxConcurrentSequences: 2 } } })).toBe(reference);
    const guidance = { model: 'm', baseUrl: 'http://127.0.0.1:1/v1' };
    const student = { model: 's' };
    const withEndpoints = fingerprintOf({ llm: { guidance, student } });
    expect(
      fingerprintOf({
        llm: { guidance: { ...guidance, baseUrl: 'http://127.0.0.1:2/v1', maxConcurrency: 3 }, student },
      }),
    ).toBe(withEndpoints);
    expect(fingerprintOf({ llm: { guidance: { ...guidance, model: 'other' }, student } })).not.toBe(
      withEndpoints,
    );
  });

  it('keeps no setting out of the result settings unless it is listed as not deciding results', () => {
    const settings = resultSettings(parseRunConfig(base));
    expect(Object.keys(settings).some((k) => k.startsWith('sample.preSample.'))).toBe(true);
    // Transport and throughput keys are out, the model and sampling in (endpoints, in any mode).
    const withEndpoints = resultSettings(
      parseRunConfig({ ...base, llm: { guidance: { model: 'g' }, student: { model: 's' } } }),
    );
    expect(Object.keys(withEndpoints)).toContain('llm.guidance.model');
    expect(Object.keys(withEndpoints)).toContain('llm.guidance.sampling.temperature');
    for (const gone of [
      'llm.guidance.baseUrl',
      'llm.guidance.maxConcurrency',
      'engine.queueCapacity',
      'output',
    ]) {
      expect(Object.keys(withEndpoints), gone).not.toContain(gone);
    }
  });
});
