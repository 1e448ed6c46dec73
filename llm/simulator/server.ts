import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ConfigError } from '../../pipeline/errors.js';
import { Capacity, serviceTimeMs, type CapacityOptions, type CapacityStats } from './capacity.js';
import { FaultInjector, Outage, type FaultKind, type FaultOptions } from './faults.js';
import { metricsText } from './metrics.js';
import {
  PrefixCache,
  prefixCacheMetricsText,
  type Admission,
  type PrefixCacheOptions,
  type PrefixCacheStats,
} from './prefix-cache.js';
import { chatTokens } from './tokens.js';
import {
  countTokens,
  embedding,
  generateReply,
  resolveReplies,
  truncateReply,
  UnsupportedSchemaError,
  type Reply,
  type ReplyConfig,
  type ReplyOptions,
  type SimMessage,
} from './replies.js';

/**
 * The OpenAI-compatible simulator: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`,
 * `GET /health` and `GET /metrics` (Prometheus text, as vLLM), on 127.0.0.1 only. Chat completions go through the
 * capacity model (slots, FIFO queue, service time) and fault injection; the other routes answer at once and never
 * fault.
 */
export const serverOptionsSchema = z.object({
  /** 0 picks a free port. */
  port: z.number().int().min(0).max(65_535).default(0),
  /** Model names served; any other gets 404 model_not_found, as from OpenAI. */
  models: z.array(z.string().min(1)).min(1).default(['air-sim']),
  /** Prompt plus max_tokens may not exceed this (400 context_length_exceeded). */
  contextTokens: z.number().int().positive().default(8192),
  embeddingDimensions: z.number().int().positive().default(384),
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>` (401 otherwise). */
  apiKey: z.string().min(1).optional(),
  /** What `setDown(true)` does: answer 503 to everything, or close every connection. */
  downMode: z.enum(['503', 'close']).default('503'),
});

export type SimulatorOptions = z.input<typeof serverOptionsSchema> &
  CapacityOptions &
  ReplyOptions &
  FaultOptions &
  PrefixCacheOptions;

export interface SimulatorStats extends CapacityStats {
  /** HTTP requests received, on every route. */
  readonly requests: number;
  /** Complete answers sent, by HTTP status ("200", "429", ...); a malformed-body fault counts as 200. */
  readonly byStatus: Readonly<Record<string, number>>;
  /** Chat completions answered 200 with a readable body: the answers whose usage the tokens below add up. */
  readonly completions: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly embeddingInputs: number;
  readonly embeddingTokens: number;
  /** Faults injected, by kind. */
  readonly faults: Readonly<Record<FaultKind, number>>;
  /** Requests left without an answer because their connection closed first (client timeout, close, down). */
  readonly dropped: number;
  /** Connections closed on arrival while down in "close" mode. */
  readonly refusedConnections: number;
  /** Bugs in the simulator itself (answered 500); tests should expect 0. */
  readonly internalErrors: number;
  /** The KV cache's prefix figures and the GPU work (prefill and decode tokens). */
  readonly prefixCache: PrefixCacheStats;
}

export interface Simulator {
  /** The OpenAI base URL, `http://127.0.0.1:<port>/v1`. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
  stats(): SimulatorStats;
  setDown(down: boolean): void;
}

const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 64 * 1024 * 1024;

const textPart = z.object({ type: z.literal('text'), text: z.string() });
const chatRequestSchema = z.object({
  model: z.string().min(1),
  messages: z
    .array(
      z.object({
        role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
        content: z.union([z.string(), z.array(textPart)]),
      }),
    )
    .min(1),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  seed: z.number().int().nullish(),
  n: z.literal(1, 'only n = 1 is supported by the simulator').nullish(),
  stream: z.literal(false, 'streaming is not supported by the simulator').nullish(),
  response_format: z
    .discriminatedUnion('type', [
      z.object({ type: z.literal('text') }),
      z.object({ type: z.literal('json_object') }),
      z.object({
        type: z.literal('json_schema'),
        json_schema: z.object({
          name: z.string().min(1),
          schema: z.record(z.string(), z.unknown()),
          strict: z
            .boolean()
            .nullish()
            .transform((v) => v ?? undefined),
        }),
      }),
    ])
    .nullish(),
});

const embeddingRequestSchema = z.object({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.string()).min(1)]),
  dimensions: z.number().int().positive().max(65_536).nullish(),
  encoding_format: z.enum(['float', 'base64']).nullish(),
});

type ErrorType = 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error';

/** What a route handler needs of one exchange. */
interface Exchange {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  /** The request's arrival number on this server, 1-based; names the completion. */
  readonly number: number;
  /** Aborts when the connection closes before the answer was sent. */
  readonly signal: AbortSignal;
}

interface Route {
  readonly method: 'GET' | 'POST';
  readonly run: (ex: Exchange) => Promise<void> | void;
}

class SimulatorServer {
  readonly server: http.Server;
  private readonly config: z.output<typeof serverOptionsSchema>;
  private readonly replies: ReplyConfig;
  private readonly capacity: Capacity;
  private readonly faults: FaultInjector;
  private readonly outage: Outage;
  private readonly prefixCache: PrefixCache;
  private readonly createdS = Math.floor(Date.now() / 1000);
  private readonly startedMs = performance.now();
  private readonly counters = {
    requests: 0,
    completions: 0,
    promptTokens: 0,
    completionTokens: 0,
    embeddingInputs: 0,
    embeddingTokens: 0,
    dropped: 0,
    refusedConnections: 0,
    internalErrors: 0,
  };
  private readonly byStatus = new Map<number, number>();
  private readonly routes = new Map<string, Route>([
    ['/health', { method: 'GET', run: (ex) => this.send(ex, 200, '') }],
    ['/metrics', { method: 'GET', run: (ex) => this.metrics(ex) }],
    ['/v1/models', { method: 'GET', run: (ex) => this.models(ex) }],
    ['/v1/chat/completions', { method: 'POST', run: (ex) => this.chat(ex) }],
    ['/v1/embeddings', { method: 'POST', run: (ex) => this.embeddings(ex) }],
  ]);

  constructor(options: SimulatorOptions) {
    const parsed = serverOptionsSchema.safeParse(options);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ConfigError(`simulator: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
    }
    this.config = parsed.data;
    this.replies = resolveReplies(options);
    this.capacity = new Capacity(options);
    this.faults = new FaultInjector(options, this.replies.seed);
    this.outage = new Outage(this.config.downMode);
    this.prefixCache = new PrefixCache(options);
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (socket) => {
      if (this.outage.down && this.outage.mode === 'close') {
        this.counters.refusedConnections += 1;
        socket.destroy();
      }
    });
  }

  setDown(down: boolean): void {
    this.outage.set(down);
    if (down && this.outage.mode === 'close') this.server.closeAllConnections();
  }

  stats(): SimulatorStats {
    return {
      ...this.counters,
      ...this.capacity.stats(),
      byStatus: Object.fromEntries([...this.byStatus].map(([status, n]) => [String(status), n])),
      faults: this.faults.stats(),
      prefixCache: this.prefixCache.stats(),
    };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.counters.requests += 1;
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const ex: Exchange = { req, res, number: this.counters.requests, signal: gone.signal };
    try {
      await this.route(ex);
    } catch (error) {
      // A simulator bug: answer so the client is not left hanging, and count it so tests notice.
      this.counters.internalErrors += 1;
      const message = error instanceof Error ? error.message : String(error);
      if (!res.headersSent) this.fail(ex, 500, 'server_error', 'internal_error', `simulator bug: ${message}`);
      else res.destroy();
    }
  }

  private async route(ex: Exchange): Promise<void> {
    const { req } = ex;
    if (this.outage.down) {
      return this.fail(
        ex,
        503,
        'server_error',
        'service_unavailable',
        'The simulator is down (setDown(true)).',
      );
    }
    const path = new URL(req.url ?? '/', `http://${HOST}`).pathname;
    const route = this.routes.get(path);
    if (route === undefined)
      return this.fail(ex, 404, 'invalid_request_error', 'not_found', `No route ${path}.`);
    if (req.method !== route.method) {
      return this.fail(
        ex,
        405,
        'invalid_request_error',
        'method_not_allowed',
        `Use ${route.method} ${path}.`,
      );
    }
    if (path.startsWith('/v1/') && !this.authorized(req)) {
      const message =
        req.headers.authorization === undefined
          ? "You didn't provide an API key: send Authorization: Bearer <key>."
          : 'Incorrect API key provided.';
      return this.fail(ex, 401, 'authentication_error', 'invalid_api_key', message);
    }
    await route.run(ex);
  }

  private authorized(req: http.IncomingMessage): boolean {
    return this.config.apiKey === undefined || req.headers.authorization === `Bearer ${this.config.apiKey}`;
  }

  private metrics(ex: Exchange): void {
    let body = metricsText({
      ...this.capacity.stats(),
      ...this.counters,
      uptimeMs: performance.now() - this.startedMs,
      modelName: this.config.models[0]!,
    });
    body += prefixCacheMetricsText(this.prefixCache.stats());
    this.send(ex, 200, body, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
  }

  private models(ex: Exchange): void {
    const data = this.config.models.map((id) => ({
      id,
      object: 'model',
      created: this.createdS,
      owned_by: 'air-simulator',
    }));
    this.sendJson(ex, 200, { object: 'list', data });
  }

  private async chat(ex: Exchange): Promise<void> {
    const body = await this.readJson(ex, chatRequestSchema);
    if (body === undefined) return;
    if (!this.config.models.includes(body.model)) return this.unknownModel(ex, body.model);

    const messages: SimMessage[] = body.messages.map((m) => ({
      role: m.role,
      content: typeof m.content === 'string' ? m.content : m.content.map((part) => part.text).join('\n'),
    }));
    const prompt = chatTokens(messages);
    const promptTokens = prompt.length;
    const context = this.config.contextTokens;
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
    // At least one completion token must fit, as on vLLM.
    if (promptTokens + (maxTokens ?? 1) > context) {
      const requested =
        maxTokens === undefined
          ? `your messages resulted in ${promptTokens} tokens`
          : `you requested ${promptTokens + maxTokens} tokens (${promptTokens} in the messages, ${maxTokens} in the completion)`;
      return this.fail(
        ex,
        400,
        'invalid_request_error',
        'context_length_exceeded',
        `This model's maximum context length is ${context} tokens. However, ${requested}. ` +
          'Please reduce the length of the messages or completion.',
        'messages',
      );
    }

    const format = body.response_format;
    let reply: Reply;
    try {
      reply = generateReply(
        {
          model: body.model,
          messages,
          temperature: body.temperature ?? undefined,
          top_p: body.top_p ?? undefined,
          seed: body.seed ?? undefined,
          responseFormat:
            format === undefined || format === null || format.type === 'text' ? undefined : format,
          maxTokens: maxTokens ?? context - promptTokens,
          promptTokens,
        },
        this.replies,
      );
    } catch (error) {
      if (!(error instanceof UnsupportedSchemaError)) throw error;
      const message = `Invalid schema for response_format: ${error.message}.`;
      return this.fail(ex, 400, 'invalid_request_error', 'invalid_json_schema', message, 'response_format');
    }

    // Deterministic 400s above never draw a fault, so a fault sequence depends only on valid requests.
    const fault = this.faults.draw();
    switch (fault) {
      case 'status429': {
        const headers = { 'retry-after': String(this.faults.config.retryAfterS) };
        const message = 'Rate limit reached (simulated). Please retry after the Retry-After delay.';
        return this.fail(ex, 429, 'rate_limit_error', 'rate_limit_exceeded', message, null, headers);
      }
      case 'status500':
        return this.fail(ex, 500, 'server_error', 'internal_error', 'The server had an error (simulated).');
      case 'status503':
        return this.fail(
          ex,
          503,
          'server_error',
          'service_unavailable',
          'The server is unavailable (simulated).',
        );
      case 'stall':
        if (!(await this.stall(ex.signal))) return this.drop();
        break;
      case 'truncated':
        reply = truncateReply(reply);
        break;
      default:
        break;
    }

    // The prefix cache is looked up once the request has a slot; only the prompt tokens it misses are prefilled.
    const held: { admission?: Admission } = {};
    const outcome = await this.capacity.serve(() => {
      const admission = this.prefixCache.admit(prompt, reply.completionTokens);
      held.admission = admission;
      const computed = promptTokens - admission.cachedTokens;
      return serviceTimeMs(this.capacity.config, computed, reply.completionTokens);
    }, ex.signal);
    held.admission?.release();
    if (outcome === 'aborted') return this.drop();
    if (outcome === 'queue_full') {
      const message = 'The engine is currently overloaded (simulated queue full). Please try again later.';
      return this.fail(ex, 503, 'server_error', 'engine_overloaded', message, null, { 'retry-after': '1' });
    }

    const response = JSON.stringify({
      id: `chatcmpl-sim-${ex.number}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      system_fingerprint: 'air-simulator',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: reply.text },
          logprobs: null,
          finish_reason: reply.finishReason,
        },
      ],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: reply.completionTokens,
        total_tokens: promptTokens + reply.completionTokens,
        // As vLLM with --enable-prompt-tokens-details: sent only while the prefix cache is on.
        ...(this.prefixCache.enabled
          ? { prompt_tokens_details: { cached_tokens: held.admission?.cachedTokens ?? 0 } }
          : {}),
      },
    });
    if (fault === 'reset') return this.reset(ex, response);
    if (fault === 'malformed') return this.send(ex, 200, response.slice(0, Math.floor(response.length / 2)));
    this.send(ex, 200, response);
    this.counters.completions += 1;
    this.counters.promptTokens += promptTokens;
    this.counters.completionTokens += reply.completionTokens;
  }

  private async embeddings(ex: Exchange): Promise<void> {
    const body = await this.readJson(ex, embeddingRequestSchema);
    if (body === undefined) return;
    if (!this.config.models.includes(body.model)) return this.unknownModel(ex, body.model);
    const inputs = typeof body.input === 'string' ? [body.input] : body.input;
    const tokens = inputs.map(countTokens);
    const longest = Math.max(...tokens);
    if (longest > this.config.contextTokens) {
      const message =
        `This model's maximum context length is ${this.config.contextTokens} tokens. ` +
        `However, an input resulted in ${longest} tokens. Please reduce the length of the input.`;
      return this.fail(ex, 400, 'invalid_request_error', 'context_length_exceeded', message, 'input');
    }
    const dimensions = body.dimensions ?? this.config.embeddingDimensions;
    const base64 = body.encoding_format === 'base64';
    const data = inputs.map((input, index) => {
      const vector = embedding(this.replies, body.model, input, dimensions);
      return {
        object: 'embedding',
        index,
        // base64 is little-endian float32, what OpenAI clients decode.
        embedding: base64 ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector,
      };
    });
    const promptTokens = tokens.reduce((a, b) => a + b, 0);
    this.sendJson(ex, 200, {
      object: 'list',
      data,
      model: body.model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
    this.counters.embeddingInputs += inputs.length;
    this.counters.embeddingTokens += promptTokens;
  }

  /** The parsed body, or undefined once an error answer was sent (or the client left). */
  private async readJson<T>(ex: Exchange, schema: z.ZodType<T>): Promise<T | undefined> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of ex.req as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      }
    } catch {
      this.drop();
      return undefined;
    }
    if (size > MAX_BODY_BYTES) {
      const message = `The request body is larger than ${MAX_BODY_BYTES} bytes.`;
      this.fail(ex, 413, 'invalid_request_error', 'request_too_large', message);
      return undefined;
    }
    let json: unknown;
    try {
      json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      const message = 'We could not parse the JSON body of your request: it is not valid JSON.';
      this.fail(ex, 400, 'invalid_request_error', 'invalid_json', message);
      return undefined;
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const param = issue === undefined ? null : issue.path.join('.');
      const message = `Invalid request: ${param === null || param === '' ? '' : `${param}: `}${issue?.message ?? 'invalid'}`;
      this.fail(ex, 400, 'invalid_request_error', 'invalid_request', message, param);
      return undefined;
    }
    return parsed.data;
  }

  /** Resolves true after `stallMs`, or false when the connection closes first (at once if stalls are endless). */
  private async stall(signal: AbortSignal): Promise<boolean> {
    const stallMs = this.faults.config.stallMs;
    if (stallMs !== undefined) {
      try {
        await sleep(stallMs, undefined, { signal });
        return true;
      } catch {
        return false;
      }
    }
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    return false;
  }

  /** Headers and half the body, then the socket is destroyed: the client sees the connection die mid-answer. */
  private reset(ex: Exchange, body: string): void {
    const { req, res } = ex;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.write(body.slice(0, Math.floor(body.length / 2)), () => req.socket.destroy());
  }

  private drop(): void {
    this.counters.dropped += 1;
  }

  private unknownModel(ex: Exchange, model: string): void {
    const message = `The model \`${model}\` does not exist. This simulator serves: ${this.config.models.join(', ')}.`;
    this.fail(ex, 404, 'invalid_request_error', 'model_not_found', message, 'model');
  }

  private fail(
    ex: Exchange,
    status: number,
    type: ErrorType,
    code: string,
    message: string,
    param: string | null = null,
    headers: Record<string, string> = {},
  ): void {
    this.sendJson(ex, status, { error: { message, type, param, code } }, headers);
  }

  private sendJson(ex: Exchange, status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.send(ex, status, JSON.stringify(body), headers);
  }

  private send(ex: Exchange, status: number, body: string, headers: Record<string, string> = {}): void {
    ex.res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      ...headers,
    });
    ex.res.end(body);
    this.byStatus.set(status, (this.byStatus.get(status) ?? 0) + 1);
  }
}

/** Starts a simulator on 127.0.0.1; `port: 0` (the default) picks a free port. */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const sim = new SimulatorServer(options);
  const { server } = sim;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${HOST}:${port}/v1`,
    port,
    stats: () => sim.stats(),
    setDown: (down) => sim.setDown(down),
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        // Open keep-alive, stalled and queued connections would otherwise hold close() open.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
