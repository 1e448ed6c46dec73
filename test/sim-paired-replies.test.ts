import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerSimCommand } from '../cli/sim-command.js';
import { airConfigSchema } from '../job/config.js';
import { appendAirStages } from '../job/stages/air-stages.js';
import { HttpLlmClient } from '../llm/client.js';
import { endpointSchema, resolveEndpoint } from '../llm/endpoint.js';
import { generateReply, resolveReplies, type SimulatorOptions } from '../llm/simulator/index.js';
import { loadPromptSet } from '../operators/air/prompts.js';
import type { ScoredExample } from '../operators/air/types.js';
import { lengthFilter } from '../operators/length-filter.js';
import { openDuckDB } from '../pipeline/io/duckdb.js';
import { ParquetSource } from '../pipeline/io/parquet-source.js';
import { resolveShards } from '../pipeline/io/shards.js';
import { pipeline } from '../pipeline/run.js';
import type { Document } from '../schemas/documents.js';
import { SAMPLE } from './helpers/duckdb.js';
import { CollectingSink } from './helpers/memory.js';
import { useSimulators } from './helpers/simulators.js';

const sim = useSimulators();

/** What a document's way through AIR decided: drops by reason, and per written row its whole record. */
interface Outcome {
  readonly passedGenerate: number;
  readonly dropped: Readonly<Record<string, number>>;
  readonly rows: ReadonlyMap<string, unknown>;
}

/** air's AIR stages over the first 120 rows of the bundled sample, with prompt set `promptSet`. */
async function runAir(options: SimulatorOptions, promptSet: string): Promise<Outcome> {
  const server = await sim({ replyTokensPerPromptToken: 0.35, ...options });
  const endpoints = (['guidance', 'student'] as const).map((role) =>
    resolveEndpoint(role, endpointSchema.parse({ baseUrl: server.url, model: 'air-sim' })),
  );
  const llm = new HttpLlmClient({ endpoints });
  const db = await openDuckDB({ threads: 1, memoryLimit: '256MB' });
  try {
    const source = new ParquetSource(db, {
      shards: await resolveShards([SAMPLE]),
      textColumn: 'text',
      metaColumns: [],
      limit: 120,
    });
    const documents = pipeline(source).pipe(lengthFilter<Document>({ minWords: 50, maxWords: 2048 }));
    const air = airConfigSchema.parse({ promptSet, documentsInFlight: 8 });
    const sink = new CollectingSink<ScoredExample>();
    const report = await appendAirStages(documents, llm, air).pipeline.into(sink).run();
    expect(report.status).toBe('completed');
    const rows = new Map<string, unknown>();
    for (const row of sink.committed) {
      // Everything the replies decided; token counts and latencies are the layout's own.
      rows.set(row.doc.id, {
        initialInstruction: row.initialInstruction,
        initialScore: row.initialScore,
        reference: row.reference,
        stopReason: row.stopReason,
        constraints: row.constraints,
        history: row.history,
        instruction: row.instruction,
        output: row.output,
        complexity: row.complexity,
        quality: row.quality,
      });
    }
    return {
      passedGenerate: report.stages.find((s) => s.name === 'generate')?.passed ?? 0,
      dropped: report.totals.dropped,
      rows,
    };
  } finally {
    db.closeSync();
    await llm.close();
  }
}

describe('replyKey: content pairs the replies of two prompt layouts', () => {
  it('v1 and v2 take the same decisions for every document, and write the same rows', async () => {
    const v1 = await runAir({ replyKey: 'content' }, 'v1');
    const v2 = await runAir({ replyKey: 'content' }, 'v2');
    expect(v1.passedGenerate).toBeGreaterThan(10);
    expect(v1.rows.size).toBeGreaterThan(3);
    expect(v2.passedGenerate).toBe(v1.passedGenerate);
    expect(v2.dropped).toEqual(v1.dropped);
    expect(new Map(v2.rows)).toEqual(new Map(v1.rows));
  });

  it('keyed by the whole prompt (the default), the two layouts take different paths', async () => {
    const v1 = await runAir({}, 'v1');
    const v2 = await runAir({}, 'v2');
    const same = [...v1.rows].filter(([id, row]) => JSON.stringify(v2.rows.get(id)) === JSON.stringify(row));
    expect(same.length).toBeLessThan(Math.max(v1.rows.size, v2.rows.size));
  });

  it('keys on the fenced texts, the request seed and the response format; a repair exchange changes it', () => {
    const config = resolveReplies({ replyKey: 'content', replyTokensPerPromptToken: 0.35 });
    const v1 = loadPromptSet('v1');
    const v2 = loadPromptSet('v2');
    const values = {
      document: 'Bread rises when yeast ferments sugar. '.repeat(40),
      instruction: 'Explain it.',
    };
    const reply = (messages: { role: string; content: string }[], seed = 7) =>
      generateReply(
        { model: 'm', messages, seed, maxTokens: 4096, promptTokens: 1000 + messages.length },
        config,
      );
    const polish1 = reply(v1.render('polish', values));
    expect(reply(v2.render('polish', values))).toEqual(polish1);
    expect(reply(v2.render('polish', values), 8)).not.toEqual(polish1);
    expect(reply(v2.render('polish', { ...values, instruction: 'Describe it.' }))).not.toEqual(polish1);
    const repaired = [
      ...v1.render('polish', values),
      { role: 'assistant', content: polish1.text },
      { role: 'user', content: 'Answer again.' },
    ];
    expect(reply(repaired)).not.toEqual(polish1);
    // A prompt without fenced texts is its own content: the whole messages key it, as by default.
    const student = [{ role: 'user', content: 'Explain it.' }];
    expect(reply(student)).toEqual(
      generateReply(
        { model: 'm', messages: student, seed: 7, maxTokens: 4096, promptTokens: 1001 },
        resolveReplies({ replyTokensPerPromptToken: 0.35 }),
      ),
    );
  });
});

describe('air sim --reply-key content', () => {
  it('answers the v1 and v2 prompts of one call alike over HTTP', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    const air = new Command('air').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
    registerSimCommand(air, { stdout: (text) => lines.push(text), signal: stop.signal });
    const done = air.parseAsync(['sim', '--port', '0', '--zero-latency', '--reply-key', 'content'], {
      from: 'user',
    });
    for (let i = 0; i < 200 && lines.length === 0; i += 1) await new Promise((r) => setTimeout(r, 25));
    const url = /(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(lines[0]!)![1]!;
    const values = { document: 'Tides follow the moon. '.repeat(30), instruction: 'Explain tides.' };
    const reply = async (set: string): Promise<string> => {
      const response = await fetch(`${url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'air-sim',
          seed: 3,
          messages: loadPromptSet(set).render('polish', values),
        }),
      });
      const body = (await response.json()) as { choices: { message: { content: string } }[] };
      return body.choices[0]!.message.content;
    };
    try {
      expect(await reply('v2')).toBe(await reply('v1'));
    } finally {
      stop.abort();
      await done;
    }
  });
});
