import { stat } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import type * as NodeLlamaCpp from 'node-llama-cpp';
import type {
  ChatHistoryItem,
  Llama,
  LlamaChat,
  LlamaContext,
  LlamaContextSequence,
  LlamaGrammar,
  LlamaModel,
} from 'node-llama-cpp';
import { ConfigError } from '../pipeline/errors.js';
import { LlmError } from './errors.js';
import type { ChatCompletion, ChatCompletionRequest, FinishReason } from './types.js';

/**
 * The embedded backend: a GGUF model run in-process by node-llama-cpp, for `local:<path.gguf>` model specs.
 * node-llama-cpp is an optional peer dependency (its install pulls ~730 MB of binaries), so it is imported
 * only when a local model is loaded, and nothing outside this file names its types.
 */

export const NODE_LLAMA_CPP_VERSION = '3.21.1';
const INSTALL_HINT = `npm install node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`;

/**
 * One thread by default: llama.cpp's threads meet at a spinning barrier after every operation, and on a
 * 2-core machine shared with Node's own threads one descheduled thread stalls the rest. Measured there: the
 * default (all cores) ran 24 tokens in 6.5 s against 15 ms with one thread (dependencies.md), and 2 threads
 * gave 8-107 tokens/s against ~1,500 with one. Raise it only with cores to spare and a model big enough for
 * the work per operation to outweigh the synchronisation.
 */
export const DEFAULT_LOCAL_THREADS = 1;
/** One sequence by default: each parallel slot holds its own KV cache of `contextSize` tokens. */
export const DEFAULT_LOCAL_PARALLEL = 1;
/** Tokens per sequence by default, capped at the model's training context. */
export const DEFAULT_LOCAL_CONTEXT_SIZE = 4096;
/** Sampling when the request leaves it unset: llama.cpp server's defaults, so `local:` behaves like it. */
const DEFAULT_TEMPERATURE = 0.8;
const DEFAULT_TOP_P = 0.95;

export interface LocalModelOptions {
  /** The GGUF file. */
  readonly path: string;
  /** CPU threads for evaluation (default DEFAULT_LOCAL_THREADS; see there why it is so low). */
  readonly threads?: number;
  /** Requests evaluated together, each on its own context sequence; later ones wait in FIFO order. */
  readonly parallel?: number;
  /** Context tokens per sequence (prompt plus reply). */
  readonly contextSize?: number;
  /** `'auto'` uses a GPU when node-llama-cpp finds a working one; `false` forces the CPU (default 'auto'). */
  readonly gpu?: 'auto' | false;
}

/** `local:<path.gguf>` -> the path, as written (relative paths are resolved against the working directory). */
export function parseLocalSpec(spec: string): { path: string } {
  if (!isLocalSpec(spec)) {
    throw new ConfigError(`"${spec}" is not a local model spec: expected local:<path to a .gguf file>`);
  }
  const path = spec.slice('local:'.length).trim();
  if (path.length === 0) throw new ConfigError(`"${spec}": the local model spec names no file`);
  // A model URI (hf:user/repo/file.gguf) may name a quantisation tag instead of a file; model-files.ts checks it.
  if (!/\.gguf$/i.test(path)) throw new ConfigError(`"${spec}": a local model must be a .gguf file`);
  return { path };
}

export function isLocalSpec(spec: string): boolean {
  return spec.startsWith('local:');
}

/**
 * Runs `importer` (an `import('node-llama-cpp')`), turning a missing package into a ConfigError with the
 * install command. Generic so that this module's declarations never name node-llama-cpp's types, and so a
 * test can stand in for a machine without the package.
 */
export async function importNodeLlamaCpp<T>(importer: () => Promise<T>): Promise<T> {
  try {
    return await importer();
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new ConfigError(
        `local models need the optional package node-llama-cpp, which is not installed (or incomplete): ` +
          `run \`${INSTALL_HINT}\``,
      );
    }
    throw error;
  }
}

/** One evaluation slot: a context sequence and the chat driver bound to it. */
interface Slot {
  readonly sequence: LlamaContextSequence;
  readonly chat: LlamaChat;
}

interface Waiter {
  readonly resolve: (slot: Slot) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * A loaded GGUF model answering OpenAI-shaped chat requests. Each request runs on a sequence cleared first, so
 * nothing of one request is visible to the next; `parallel` sequences share one context and are evaluated in
 * the same batches, and further requests wait for a free sequence.
 */
export class LocalModel {
  private readonly free: Slot[];
  private readonly waiting: Waiter[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Compiled grammars by schema text: compiling one costs more than generating a short reply. */
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private closing: Promise<void> | undefined;

  private constructor(
    /** The absolute path of the GGUF file. */
    readonly path: string,
    readonly threads: number,
    readonly contextSize: number,
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    slots: Slot[],
  ) {
    this.free = slots;
  }

  static async load(options: LocalModelOptions): Promise<LocalModel> {
    const threads = positiveInteger('threads', options.threads ?? DEFAULT_LOCAL_THREADS);
    const parallel = positiveInteger('parallel', options.parallel ?? DEFAULT_LOCAL_PARALLEL);
    const requestedContext = positiveInteger(
      'contextSize',
      options.contextSize ?? DEFAULT_LOCAL_CONTEXT_SIZE,
    );
    const path = resolvePath(options.path);
    // Checked here because llama.cpp's own error for a missing file does not say which file.
    let isFile: boolean;
    try {
      isFile = (await stat(path)).isFile();
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      throw new ConfigError(
        missing
          ? `local model file not found: ${path}`
          : `cannot read the local model file ${path}: ${messageOf(error)}`,
      );
    }
    if (!isFile) throw new ConfigError(`local model ${path} is not a file`);

    const lib = await importNodeLlamaCpp(() => import('node-llama-cpp'));
    let llama: Llama;
    try {
      // build: 'never' so a missing binary fails here instead of downloading llama.cpp to compile it;
      // maxThreads caps the whole instance, not only this context.
      llama = await lib.getLlama({
        gpu: options.gpu ?? 'auto',
        build: 'never',
        progressLogs: false,
        maxThreads: threads,
        logLevel: lib.LlamaLogLevel.error,
      });
    } catch (error) {
      const platform = `${process.platform}-${process.arch}`;
      throw new ConfigError(
        `node-llama-cpp could not load its native binary for ${platform}: ${messageOf(error)} ` +
          `(reinstall with \`${INSTALL_HINT}\`)`,
      );
    }
    try {
      const model = await llama.loadModel({ modelPath: path });
      const contextSize = Math.min(requestedContext, model.trainContextSize);
      const context = await model.createContext({ sequences: parallel, contextSize, threads });
      const slots: Slot[] = [];
      for (let i = 0; i < parallel; i++) {
        const sequence = context.getSequence();
        slots.push({ sequence, chat: new lib.LlamaChat({ contextSequence: sequence }) });
      }
      return new LocalModel(path, threads, context.contextSize, llama, model, context, slots);
    } catch (error) {
      await llama.dispose();
      throw new ConfigError(`cannot load the local model ${path}: ${messageOf(error)}`);
    }
  }

  /** Sequences in the pool. */
  get parallel(): number {
    return this.context.totalSequences;
  }

  /** Requests waiting for a free sequence. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Same contract as ChatHttp.complete: one attempt, failures are LlmErrors with a code. */
  complete(request: ChatCompletionRequest, signal?: AbortSignal): Promise<ChatCompletion> {
    if (this.closing !== undefined) {
      return Promise.reject(new LlmError('AIR_LLM_CANCELLED', `local model ${this.path} is closed`));
    }
    const running = this.run(request, signal);
    this.inFlight.add(running);
    const forget = () => this.inFlight.delete(running);
    running.then(forget, forget);
    return running;
  }

  /** Lets queued and running requests finish, then frees the model, the context and the native backend. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.inFlight]);
      await this.llama.dispose();
    })();
    return this.closing;
  }

  private async run(
    request: ChatCompletionRequest,
    signal: AbortSignal | undefined,
  ): Promise<ChatCompletion> {
    const grammar = await this.grammarFor(request);
    const slot = await this.acquire(signal);
    try {
      return await this.generate(slot, request, grammar, signal);
    } finally {
      this.release(slot);
    }
  }

  private async generate(
    { sequence, chat }: Slot,
    request: ChatCompletionRequest,
    grammar: LlamaGrammar | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ChatCompletion> {
    const maxTokens = request.max_tokens;
    if (maxTokens !== undefined && (!Number.isInteger(maxTokens) || maxTokens < 1)) {
      const message = `local model ${this.path}: max_tokens must be a positive integer`;
      throw new LlmError('AIR_LLM_BAD_REQUEST', message, { status: 400 });
    }
    const history = toChatHistory(request);
    // The same rendering LlamaChat evaluates, so usage counts the tokens the model really saw.
    const promptTokens = chat.chatWrapper
      .generateContextState({ chatHistory: history })
      .contextText.tokenize(this.model.tokenizer).length;
    const room = this.contextSize - promptTokens;
    if (room <= 0 || (maxTokens !== undefined && maxTokens > room)) {
      // Rejected like an OpenAI server would, so the client's shorten-once path applies; generating anyway
      // would make LlamaChat shift the context and silently drop part of the prompt.
      throw new LlmError(
        'AIR_LLM_CONTEXT_LENGTH',
        `local model ${this.path}: the prompt has ${promptTokens} tokens and max_tokens is ` +
          `${maxTokens ?? 'unset'}, but the context holds ${this.contextSize}`,
        { status: 400 },
      );
    }

    await sequence.clearHistory();
    let completionTokens = 0;
    let result: Awaited<ReturnType<LlamaChat['generateResponse']>>;
    try {
      result = await chat.generateResponse(history, {
        maxTokens: maxTokens ?? room,
        temperature: request.temperature ?? DEFAULT_TEMPERATURE,
        topP: request.top_p ?? DEFAULT_TOP_P,
        seed: request.seed,
        // OpenAI-compatible servers apply no repetition penalty unless asked; LlamaChat's default is 1.1.
        repeatPenalty: false,
        grammar,
        signal,
        // Thought segments count as generated tokens, as reasoning tokens do in an OpenAI usage block.
        onResponseChunk: (chunk) => {
          completionTokens += chunk.tokens.length;
        },
      });
    } catch (error) {
      if (signal?.aborted === true) throw cancelled(this.path, signal);
      throw error;
    }
    if (result.metadata.stopReason === 'abort') throw cancelled(this.path, signal);
    return {
      // Only the answer: thoughts are segments outside `response`, as servers put them outside `content`.
      text: result.response,
      finishReason: finishReason(result.metadata.stopReason),
      usage: { promptTokens, completionTokens },
      model: request.model,
    };
  }

  /**
   * The grammar a response_format asks for. The output still needs the caller's validation: node-llama-cpp's
   * grammar ignores minimum/maximum and pattern, lets an integer take an exponent (`8e-6`), and counts a
   * malformed UTF-8 sequence as one character against maxLength though it decodes to several U+FFFD.
   */
  private grammarFor(request: ChatCompletionRequest): Promise<LlamaGrammar | undefined> {
    const format = request.response_format;
    if (format === undefined) return Promise.resolve(undefined);
    const key = format.type === 'json_schema' ? JSON.stringify(format.json_schema.schema) : '';
    let grammar = this.grammars.get(key);
    if (grammar === undefined) {
      grammar =
        format.type === 'json_schema'
          ? this.llama.createGrammarForJsonSchema<NodeLlamaCpp.GbnfJsonSchema>(
              format.json_schema.schema as NodeLlamaCpp.GbnfJsonSchema,
            )
          : this.llama.getGrammarFor('json');
      this.grammars.set(key, grammar);
    }
    return grammar.catch((error: unknown) => {
      this.grammars.delete(key);
      throw new LlmError(
        'AIR_LLM_BAD_REQUEST',
        `local model ${this.path}: cannot turn the response schema into a grammar: ${messageOf(error)}`,
        { status: 400, cause: error },
      );
    });
  }

  private acquire(signal: AbortSignal | undefined): Promise<Slot> {
    if (signal?.aborted === true) return Promise.reject(cancelled(this.path, signal));
    const slot = this.free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise<Slot>((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(cancelled(this.path, signal));
      };
      const waiter: Waiter = {
        resolve: (s) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  private release(slot: Slot): void {
    const next = this.waiting.shift();
    if (next !== undefined) next.resolve(slot);
    else this.free.push(slot);
  }
}

/**
 * OpenAI messages to node-llama-cpp's history. The reply is always a new model turn, as with OpenAI: a trailing
 * assistant message is an earlier turn, not a prefix to continue.
 */
function toChatHistory(request: ChatCompletionRequest): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = request.messages.map((m): ChatHistoryItem => {
    if (m.role === 'system') return { type: 'system', text: m.content };
    if (m.role === 'user') return { type: 'user', text: m.content };
    return { type: 'model', response: [m.content] };
  });
  history.push({ type: 'model', response: [] });
  return history;
}

function finishReason(stopReason: string): FinishReason {
  if (stopReason === 'maxTokens') return 'length';
  if (stopReason === 'functionCalls') return 'tool_calls';
  return 'stop';
}

function cancelled(path: string, signal: AbortSignal | undefined): LlmError {
  return new LlmError('AIR_LLM_CANCELLED', `local model ${path}: the request was cancelled`, {
    cause: signal?.reason,
  });
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new ConfigError(`local model option ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function messageOf(error: unknown): string {
  // One line, as every air error message: llama.cpp messages can quote raw file bytes.
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').trim();
}
