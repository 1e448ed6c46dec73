import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../job/config.js';
import { resolveLocalModels } from '../job/llm.js';
import type { DownloadProgress } from '../llm/model-files.js';
import { ROOT, startAir, type CliResult } from './helpers/cli.js';
import { SAMPLE, tempDir } from './helpers/duckdb.js';

// Every model is found or downloaded before any input is read: an unreachable host fails the run at once, a
// download shows its progress, and SIGTERM stops air in that phase too, through `npx air` as well.

const TINY_GGUF = path.resolve(import.meta.dirname, '../../shared/models/tiny-random-llama.gguf');

let dir: string;
let cleanup: () => Promise<void>;
let model: Buffer;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-download-'));
  model = await readFile(TINY_GGUF);
});
afterAll(() => cleanup());

/** Serves the tiny GGUF at /tiny.gguf, `chunk` bytes every `everyMs` (Infinity: all at once). */
async function modelServer(chunk = Infinity, everyMs = 0) {
  const finished: boolean[] = [];
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-length': model.length, 'content-type': 'application/octet-stream' });
    if (req.method === 'HEAD') return res.end();
    const index = finished.push(false) - 1;
    let sent = 0;
    const next = (): void => {
      if (res.destroyed) return;
      const end = Math.min(model.length, sent + chunk);
      res.write(model.subarray(sent, end));
      sent = end;
      if (sent < model.length) setTimeout(next, everyMs);
      else res.end(() => (finished[index] = true));
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tiny.gguf`;
  return {
    url,
    /** Whether any download ran to its last byte. */
    completedAny: () => finished.includes(true),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // keep-alive sockets would hold close() for their timeout
      }),
  };
}

async function configFile(name: string, modelSpec: string, extra: object = {}): Promise<string> {
  const file = path.join(dir, `${name}.json`);
  const endpoint = { model: modelSpec, local: { modelsDir: path.join(dir, `${name}-models`) } };
  await writeFile(file, JSON.stringify({ llm: { guidance: endpoint, student: endpoint }, ...extra }));
  return file;
}

describe('model resolution before the run', () => {
  it('fails at once, reading no input, when the model host cannot be reached', async () => {
    // A closed port on this machine stands for an offline one: nothing answers.
    const closed = await modelServer();
    await closed.close();
    const out = path.join(dir, 'offline');
    const config = await configFile('offline', `local:${closed.url}`);
    const result = await startAir(['run', '-i', SAMPLE, '-o', out, '-c', config, '--progress', 'log']).done;
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(
      /cannot resolve the model http:\/\/127\.0\.0\.1:\d+\/tiny\.gguf: http:\/\/127\.0\.0\.1:\d+ cannot be reached \(ECONNREFUSED\)/,
    );
    expect(result.stderr).not.toMatch(/progress:/);
    // Not even the output folder was made: no shard was opened.
    expect(existsSync(out)).toBe(false);
  });

  it('also for the default model with no endpoint configured (a Hugging Face mirror that is down)', async () => {
    const closed = await modelServer();
    await closed.close();
    const out = path.join(dir, 'default-offline');
    const file = path.join(dir, 'default.json');
    await writeFile(file, JSON.stringify({ llm: { modelsDir: path.join(dir, 'default-models') } }));
    const origin = new URL(closed.url).origin;
    const result = await withEnv(
      { MODEL_ENDPOINT: origin },
      () => startAir(['run', '-i', SAMPLE, '-o', out, '-c', file]).done,
    );
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/cannot resolve the model hf:Qwen\/.*cannot be reached \(ECONNREFUSED\)/);
    expect(existsSync(out)).toBe(false);
  });

  it('downloads a model once, reporting bytes, rate and time left, and finds it again offline', async () => {
    const server = await modelServer(256 * 1024, 20);
    const spec = `local:${server.url}`;
    const modelsDir = path.join(dir, 'fetched');
    const endpoint = { model: spec, local: { modelsDir } };
    const llm = parseRunConfig({
      input: 'x',
      output: 'y',
      llm: { guidance: endpoint, student: endpoint },
    }).llm;
    const seen: DownloadProgress[] = [];
    try {
      await resolveLocalModels(llm, { onDownload: (p) => seen.push(p) });
    } finally {
      await server.close();
    }
    // Buffer.equals: a deep toEqual over 1.7 million bytes takes vitest seconds.
    expect((await readFile(path.join(modelsDir, 'tiny.gguf'))).equals(model)).toBe(true);
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.at(-1)).toMatchObject({
      file: 'tiny.gguf',
      downloadedBytes: model.length,
      totalBytes: model.length,
    });
    expect(seen.some((p) => p.bytesPerSecond > 0 && p.etaSeconds !== undefined && p.etaSeconds > 0)).toBe(
      true,
    );
    // The server is gone: a second resolution finds the cached file without the network.
    await resolveLocalModels(llm);
  });
});

describe('SIGTERM while a model downloads', () => {
  it('air stops at once with exit 143, the download unfinished, started through npx air', async () => {
    // 16 KiB every 100 ms: the 1.7 MB file would take about 11 s.
    const server = await modelServer(16 * 1024, 100);
    const out = path.join(dir, 'stopped');
    const config = await configFile('stopped', `local:${server.url}`);
    try {
      const npx = spawn(
        'npx',
        [
          'air',
          'run',
          '-i',
          SAMPLE,
          '-o',
          out,
          '-c',
          config,
          '--progress',
          'log',
          '--progress-interval',
          '0.2',
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      let sent = false;
      npx.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        // Only npx is signalled, as `timeout` or a scheduler signals the process it started.
        if (!sent && stderr.includes('downloading tiny.gguf')) {
          sent = true;
          npx.kill('SIGTERM');
        }
      });
      const result = await new Promise<CliResult>((resolve) =>
        npx.on('close', (code, signal) => resolve({ code, signal, stdout: '', stderr })),
      );
      expect(sent, stderr).toBe(true);
      expect(stderr).toMatch(/downloading tiny\.gguf: [\d.]+ of 1\.8 MB \(\d+%\), [\d.]+ MB\/s, ETA \d+s/);
      expect(stderr).toMatch(/SIGTERM received/);
      expect(result.code ?? result.signal, stderr).toSatisfy((c) => c === 143 || c === 'SIGTERM');
      // air ended before the file did: it did not wait for the download.
      expect(server.completedAny()).toBe(false);
      expect(existsSync(out)).toBe(false);
    } finally {
      await server.close();
    }
  });
});

/** Runs `work` with environment variables set for the child processes it starts. */
async function withEnv<T>(vars: Record<string, string>, work: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await work();
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
