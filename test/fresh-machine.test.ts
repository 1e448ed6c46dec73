import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';

// The README's first command must pass by itself on a fresh Debian machine: whatever the tests need beyond npm
// packages is installed by that command, not by CI alone (a green CI once hid a missing Chromium).

const run = promisify(execFile);

async function readmeTestCommand(): Promise<string> {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const firstBlock = /```bash\n([\s\S]*?)```/.exec(readme)![1]!;
  return firstBlock
    .split('\n')[0]!
    .replace(/\s+#.*$/, '')
    .trim();
}

describe('a fresh machine', () => {
  it('CI runs exactly the README test command and installs nothing itself', async () => {
    const ci = await readFile(path.join(ROOT, '.ci/run'), 'utf8');
    const commands = ci.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
    expect(commands).toContain(await readmeTestCommand());
    // Anything CI installed on its own would pass CI and fail a new user's first command.
    expect(ci).not.toMatch(/apt-get|apt install|npm i(nstall)? /);
  });

  it('npm test installs the machine packages the tests need before running them', async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(await readmeTestCommand()).toMatch(/npm test$/);
    expect(pkg.scripts.pretest).toBe('bash scripts/test-deps.sh');
  });

  it('builds an executable CLI, so `npx air` works again after a rebuild', () => {
    // npm sets the bit only when it installs; a reused npx link to a freshly built file would be refused.
    expect(statSync(path.join(ROOT, 'dist/cli/air.js')).mode & 0o111).toBe(0o111);
  });

  it('finds a missing browser and names the Debian package, installing nothing in --check mode', async () => {
    const script = path.join(ROOT, 'scripts/test-deps.sh');
    const missing = run('bash', [script, '--check'], {
      env: { ...process.env, AIR_TEST_CHROMIUM: path.join(ROOT, 'no-such-dir/chromium') },
    });
    await expect(missing).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('missing Debian packages: chromium') as unknown,
    });
    // On this machine the suite is running, so the script has installed what it needs.
    await expect(run('bash', [script, '--check'])).resolves.toMatchObject({ stderr: '' });
  });
});
