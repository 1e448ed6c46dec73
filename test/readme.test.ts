import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseRunConfig, runConfigSchema } from '../job/config.js';
import { airFields } from '../schemas/air.js';
import { ROOT } from './helpers/cli.js';

describe('README', () => {
  it('documents a config that validates and lists every default the schema has', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const block = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .find((b) => b.startsWith('input:'));
    expect(block).toBeDefined();
    const documented = parseRunConfig(parse(block!), 'README.md');
    const defaults = runConfigSchema.parse({ input: documented.input, output: documented.output });
    // The example shows the defaults; if a default changes, the README must change with it.
    expect(documented).toEqual({ ...defaults, source: { ...defaults.source, idColumn: 'id' } });
  });

  it('documents an llm section that validates', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const block = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .find((b) => b.startsWith('llm:'));
    expect(block).toBeDefined();
    const config = parseRunConfig({ input: 'x', output: 'y', ...(parse(block!) as object) }, 'README.md');
    expect(config.llm.guidance?.apiKeyEnv).toBe('VLLM_API_KEY');
    expect(config.llm.student?.model.startsWith('local:')).toBe(true);
  });

  it('opens with the install-and-test command and the main job on the bundled sample', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const firstBlock = /```bash\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(firstBlock).toMatch(/^npm ci && npm test/m);
    expect(firstBlock).toMatch(/^npx air run --input examples\/data\/sample\.parquet --output \S+/m);
  });

  it('describes every column of the AIR output', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    for (const column of Object.keys(airFields)) expect(readme, column).toContain(`\`${column}\``);
  });
});
