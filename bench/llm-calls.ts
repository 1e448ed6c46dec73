/**
 * How fast one air process drives an OpenAI-compatible server, against the simulator running in its own
 * process (`air sim`), so the CPU measured here is the client's alone.
 *
 *   npm run build && npx tsx bench/llm-calls.ts
 *
 * 1. Client overhead: calls/s and client CPU ms per call against a zero-latency simulator, at rising
 *    concurrency, for air's client (undici + admission + retries + accounting) and for the openai SDK
 *    (when installed) on the same undici dispatcher.
 * 2. Saturation: against a capacity-limited simulator (known ceiling), the fraction of the ceiling air keeps
 *    busy at steady state, and the share of calls answered 429/503.
 */
import os from 'node:os';
import { benchClient, startSimProcess, stopSimProcess } from './sim-process.js';

const messages = (i: number) => [
  { role: 'user' as const, content: `Bench call ${i}: write one sentence about sourdough.` },
];

/** Closed loop: `concurrency` callers issue `total` calls; returns calls/s and client CPU ms per call. */
async function drive(call: (i: number) => Promise<unknown>, concurrency: number, total: number) {
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await call(next++);
    }),
  );
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { callsPerS: total / wallS, cpuMsPerCall: (cpu.user + cpu.system) / 1000 / total, wallS };
}

async function overhead(): Promise<void> {
  const sim = await startSimProcess(['--zero-latency', '--mean-reply-tokens', '30']);
  console.log(`\n## 1. Client overhead against a zero-latency simulator (separate process)\n${sim.banner}\n`);
  console.log('| client | in flight | calls/s | client CPU ms/call |\n| --- | ---: | ---: | ---: |');
  for (const concurrency of [64, 256, 1024]) {
    const { client: c } = benchClient(sim.url, { maxConcurrency: concurrency, maxTokens: 4096 });
    await drive((i) => c.chat('guidance', messages(i)), concurrency, 2000); // warm-up
    const r = await drive((i) => c.chat('guidance', messages(i)), concurrency, 20_000);
    console.log(
      `| air (undici) | ${concurrency} | ${r.callsPerS.toFixed(0)} | ${r.cpuMsPerCall.toFixed(3)} |`,
    );
    await c.close();
  }
  // Imported by name so the bench runs without the SDK installed.
  const sdkName = 'openai';
  const sdk = (await import(sdkName).catch(() => undefined)) as
    | {
        default: new (options: unknown) => {
          chat: { completions: { create(body: unknown): Promise<unknown> } };
        };
      }
    | undefined;
  if (sdk !== undefined) {
    const { Agent } = await import('undici');
    for (const concurrency of [64, 256]) {
      const dispatcher = new Agent({ connections: concurrency });
      const openai = new sdk.default({
        baseURL: sim.url,
        apiKey: 'none',
        maxRetries: 0,
        fetchOptions: { dispatcher },
      });
      const call = (i: number) =>
        openai.chat.completions.create({
          model: 'bench',
          messages: messages(i),
          max_tokens: 4096,
          temperature: 0.2,
        });
      await drive(call, concurrency, 2000);
      const r = await drive(call, concurrency, 20_000);
      console.log(
        `| openai SDK + undici Agent | ${concurrency} | ${r.callsPerS.toFixed(0)} | ${r.cpuMsPerCall.toFixed(3)} |`,
      );
      await dispatcher.close();
    }
  } else {
    console.log('| openai SDK | - | not installed (npm i -D openai@6 to compare) | - |');
  }
  await stopSimProcess(sim.child);
}

async function saturation(): Promise<void> {
  // 32 sequences, 1,000 decode tokens/s each, heavy-tailed replies of 50 tokens on average: 50 ms per call on
  // average, ceiling 640 calls/s; a queue of 64 beyond the slots, then 503 (as vLLM behaves).
  const sim = await startSimProcess([
    '--max-concurrency',
    '32',
    '--decode-tps',
    '1000',
    '--prefill-tps',
    '1000000',
    '--mean-reply-tokens',
    '50',
    '--max-queue',
    '64',
  ]);
  console.log(`\n## 2. Saturation of a capacity-limited simulator\n${sim.banner}\n`);
  const slots = 32;
  const decodePerS = 1000;
  const prefillPerS = 1_000_000;
  const { client: c, accounting } = benchClient(sim.url, {
    maxConcurrency: 256,
    initialConcurrency: 8,
    maxTokens: 4096,
  });
  const callers = 512; // more callers than the server can take: air's admission decides what is sent
  await drive((i) => c.chat('guidance', messages(i)), callers, 2000); // let AIMD settle
  const before = accounting.snapshot().entries[0]!;
  const r = await drive((i) => c.chat('guidance', messages(i + 2000)), callers, 12_000);
  const after = accounting.snapshot().entries[0]!;
  await c.close();
  const simStats = await stopSimProcess(sim.child);
  // Busy fraction of the server: the service time of what it produced, over the slot-time it had.
  const serviceS =
    (after.completionTokens - before.completionTokens) / decodePerS +
    (after.promptTokens - before.promptTokens) / prefillPerS;
  const busy = serviceS / (slots * r.wallS);
  const refused =
    (after.errors['retry:AIR_LLM_RATE_LIMITED'] ?? 0) +
    (after.errors['retry:AIR_LLM_SERVER_ERROR'] ?? 0) -
    (before.errors['retry:AIR_LLM_RATE_LIMITED'] ?? 0) -
    (before.errors['retry:AIR_LLM_SERVER_ERROR'] ?? 0);
  console.log(
    '| calls/s | server busy (fraction of its slot-time) | final admission limit | calls refused (429/503) |',
  );
  console.log('| ---: | ---: | ---: | ---: |');
  console.log(
    `| ${r.callsPerS.toFixed(0)} | ${busy.toFixed(3)} | ${c.admission('guidance')!.limit} | ${refused} of ${12_000 + refused} (${((100 * refused) / (12_000 + refused)).toFixed(2)}%) |`,
  );
  console.log(`\nthe simulator's own account, over its whole life (warm-up included):\n${simStats}`);
}

console.log(`machine: ${os.cpus()[0]?.model} · ${os.cpus().length} cores · node ${process.version}`);
// `--only overhead` or `--only saturation` runs one part.
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
if (only === undefined || only === 'overhead') await overhead();
if (only === undefined || only === 'saturation') await saturation();
