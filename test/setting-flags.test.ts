import { describe, expect, it } from 'vitest';
import { settingOption, settingsFromFlags, SETTING_FLAGS } from '../cli/setting-flags.js';
import { parseRunConfig, runConfigSchema } from '../job/config.js';
import { settingKeys } from '../job/config-keys.js';

const defaults = runConfigSchema.parse({ input: 'x', output: 'y' }) as unknown as Record<string, unknown>;
const valueAt = (object: unknown, key: string): unknown =>
  key.split('.').reduce<unknown>((v, part) => (v as Record<string, unknown> | undefined)?.[part], object);

describe('air run setting flags', () => {
  it('name keys the config schema has', () => {
    const keys = new Set(settingKeys(runConfigSchema).map((k) => k.path));
    for (const flag of SETTING_FLAGS) expect(keys.has(flag.key), flag.key).toBe(true);
  });

  it("quote the schema's default and offer the schema's choices", () => {
    const compression = settingOption(SETTING_FLAGS.find((f) => f.key === 'writer.compression')!);
    expect(compression.argChoices).toEqual(['zstd', 'snappy', 'gzip', 'brotli', 'uncompressed']);
    // Literal values, so a wrong rule for showing defaults cannot pass by being copied here.
    const help = (key: string): string =>
      settingOption(SETTING_FLAGS.find((f) => f.key === key)!).description;
    expect(help('writer.partRows')).toContain('(default: 100000)');
    expect(help('source.metaColumns')).toContain('(default: url,metadata.url,language)');
    expect(help('source.limit')).toContain('(default: all)');
    expect(help('air.refine.maxIterations')).toContain('(default: 5)');
    // And every flag with a schema default quotes it.
    for (const flag of SETTING_FLAGS) {
      const value = valueAt(defaults, flag.key);
      if (value !== undefined)
        expect(settingOption(flag).description, flag.flags).toMatch(/\(default: [^)]+\)/);
    }
  });

  it('put each given value at its key, and only the given ones', () => {
    const config = settingsFromFlags({ partMb: 3, maxIterations: 2, progress: 'off', textColumn: undefined });
    expect(config).toEqual({ writer: { partMB: 3 }, air: { refine: { maxIterations: 2 } }, progress: 'off' });
    const parsed = parseRunConfig({ input: 'x', output: 'y', ...config });
    expect(parsed.writer.partMB).toBe(3);
    expect(parsed.air.refine.maxIterations).toBe(2);
  });
});
