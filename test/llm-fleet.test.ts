import { afterEach, describe, expect, it } from 'vitest';
import { metricsUrl, parsePrometheusText, schedulerGauges } from '../llm/prometheus.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../llm/simulator/index.js';

const open: Simulator[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function sim(options: SimulatorOptions = {}): Promise<Simulator> {
  const simulator = await startSimulator({ seed: 1, ...options });
  open.push(simulator);
  return simulator;
}

const PROMPT = [{ role: 'user', content: 'Say something about queues.' }];

async function chatStatus(simulator: Simulator, model = 'air-sim'): Promise<number> {
  const response = await fetch(`${simulator.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: PROMPT }),
  });
  await response.text();
  return response.status;
}

async function gauges(simulator: Simulator) {
  const response = await fetch(metricsUrl(simulator.url));
  return schedulerGauges(await response.text());
}

describe('the simulator as a queueing server (vLLM-like)', () => {
  it('queues requests beyond its slots instead of refusing, and reports vLLM gauges', async () => {
    const simulator = await sim({
      models: ['guidance'],
      maxConcurrentSequences: 2,
      maxQueue: 100_000,
      replyLength: 'fixed',
      meanReplyTokens: 20,
      decodeTokensPerSPerSequence: 400,
    });
    const statuses = Array.from({ length: 10 }, () => chatStatus(simulator, 'guidance'));
    while (simulator.stats().inService + simulator.stats().queued < 10) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(await gauges(simulator)).toEqual({ server: 'vllm', running: 2, waiting: 8 });
    const text = await (await fetch(metricsUrl(simulator.url))).text();
    expect(text).toContain('# TYPE vllm:num_requests_waiting gauge');
    expect(text).toContain('vllm:num_requests_running{model_name="guidance"} 2');
    expect(await Promise.all(statuses)).toEqual(Array.from({ length: 10 }, () => 200));
    expect(simulator.stats()).toMatchObject({ queueFull: 0, maxQueue: 8, maxConcurrent: 2 });
    expect(await gauges(simulator)).toEqual({ server: 'vllm', running: 0, waiting: 0 });
  });
});

describe('reading scheduler gauges from Prometheus text', () => {
  it("sums a metric's series over its labels and skips comments and timestamps", () => {
    const text = [
      '# HELP vllm:num_requests_running Number of requests in model execution batches.',
      '# TYPE vllm:num_requests_running gauge',
      'vllm:num_requests_running{engine="0",model_name="a"} 12.0',
      'vllm:num_requests_running{engine="1",model_name="a {b}"} 4',
      'vllm:num_requests_waiting{model_name="a\\"q"} 3 1712345678000',
      'vllm:gpu_cache_usage_perc 0.5',
      '',
    ].join('\n');
    expect(parsePrometheusText(text).get('vllm:num_requests_running')).toBe(16);
    expect(schedulerGauges(text)).toEqual({ server: 'vllm', running: 16, waiting: 3 });
  });

  it("finds SGLang's and TGI's names", () => {
    expect(schedulerGauges('sglang:num_running_reqs{tp_rank="0"} 7\nsglang:num_queue_reqs 0\n')).toEqual({
      server: 'sglang',
      running: 7,
      waiting: 0,
    });
    expect(schedulerGauges('tgi_batch_current_size 3\ntgi_queue_size 9\n')).toEqual({
      server: 'tgi',
      running: 3,
      waiting: 9,
    });
  });

  it('says "no gauges" for a missing, partial or malformed exposition', () => {
    expect(schedulerGauges('')).toBeUndefined();
    expect(schedulerGauges('<html>404 Not Found</html>')).toBeUndefined();
    expect(schedulerGauges('{"detail":"Not Found"}')).toBeUndefined();
    expect(schedulerGauges('vllm:num_requests_running 3\n')).toBeUndefined();
    expect(schedulerGauges('vllm:num_requests_running 3\nvllm:num_requests_waiting NaN\n')).toBeUndefined();
    expect(schedulerGauges('vllm:num_requests_running three\nvllm:num_requests_waiting 1\n')).toBeUndefined();
    expect(schedulerGauges('vllm:num_requests_running -1\nvllm:num_requests_waiting 1\n')).toBeUndefined();
  });

  it('looks for /metrics at the root of the server, beside /v1', () => {
    expect(metricsUrl('http://127.0.0.1:8000/v1')).toBe('http://127.0.0.1:8000/metrics');
    expect(metricsUrl('http://gpu-3:8000/v1/?x=1')).toBe('http://gpu-3:8000/metrics');
  });
});
