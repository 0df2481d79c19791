/**
 * `GET /metrics` in Prometheus' text format (prom-client), named after vLLM's where the meaning is
 * the same (vllm:time_to_first_token_seconds and the like), under fusegen_. One registry per
 * server, so that servers in one process (tests) do not share counters.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BatcherStats } from './batcher.js';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'fusegen_requests_total', help: 'Requests answered, by route and HTTP status', labelNames: ['route', 'status'] as const, registers: [this.registry] });
  readonly promptTokens = new Counter({ name: 'fusegen_prompt_tokens_total', help: 'Prompt tokens of finished requests', registers: [this.registry] });
  readonly generationTokens = new Counter({ name: 'fusegen_generation_tokens_total', help: 'Generated tokens of finished requests', registers: [this.registry] });
  readonly finished = new Counter({ name: 'fusegen_request_success_total', help: 'Finished requests by finish reason', labelNames: ['finish_reason'] as const, registers: [this.registry] });
  readonly ttft = new Histogram({ name: 'fusegen_time_to_first_token_seconds', help: 'From arrival to the first generated token', buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly itl = new Histogram({ name: 'fusegen_inter_token_latency_seconds', help: 'Between consecutive generated tokens of a request', buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly e2e = new Histogram({ name: 'fusegen_e2e_request_latency_seconds', help: 'From arrival to the last token', buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly queueTime = new Histogram({ name: 'fusegen_request_queue_time_seconds', help: 'From arrival to the first step that carried the request', buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly batchRows = new Histogram({ name: 'fusegen_step_batch_rows', help: 'Requests one engine step carried', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers: [this.registry] });

  constructor(stats: () => BatcherStats) {
    // The process's own (resident memory, heap, event-loop lag): a soak's flat memory is read from these.
    collectDefaultMetrics({ register: this.registry, prefix: 'fusegen_' });
    new Gauge({ name: 'fusegen_num_requests_running', help: 'Requests in the running batch', registers: [this.registry], collect() { this.set(stats().running); } });
    new Gauge({ name: 'fusegen_num_requests_waiting', help: 'Requests queued for a slot', registers: [this.registry], collect() { this.set(stats().waiting); } });
    new Gauge({ name: 'fusegen_kv_cache_usage_perc', help: 'Share of the KV block pool in use (0..1; absent where each slot holds a whole cache)', registers: [this.registry], collect() { const u = stats().kvUsage; if (u !== undefined) this.set(u); } });
    new Counter({ name: 'fusegen_num_preemptions_total', help: 'Running requests sent back to the queue to free KV blocks (recomputed when readmitted)', registers: [this.registry], collect() { this.reset(); this.inc(stats().preemptions); } });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
