import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';

/** Debian's redis-server (scripts/test-deps.sh installs it). */
export const REDIS_SERVER = process.env.AIR_TEST_REDIS ?? '/usr/bin/redis-server';

export interface RedisProcess {
  readonly url: string;
  readonly port: number;
  child: ChildProcess;
  /** Stops it (SIGTERM: a clean shutdown, as a rolling restart does). */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder: with AOF on, the queue is read back. */
  restart(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (the OS picks one; it is closed again before redis takes it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A redis-server of the test's own, bound to 127.0.0.1, its data in `dir`, AOF fsynced every write. */
export async function startRedis(dir: string): Promise<RedisProcess> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const launch = async (): Promise<ChildProcess> => {
    const child = spawn(
      REDIS_SERVER,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
    });
    return child;
  };
  const redis: RedisProcess = {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    child: await launch(),
    async stop() {
      if (redis.child.exitCode !== null || redis.child.signalCode !== null) return;
      const exited = new Promise((resolve) => redis.child.once('exit', resolve));
      redis.child.kill('SIGTERM');
      await exited;
    },
    async restart() {
      await redis.stop();
      redis.child = await launch();
    },
  };
  return redis;
}
