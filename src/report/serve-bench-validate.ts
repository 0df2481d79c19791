/**
 * The JSON Schema (draft 2020-12) of the `bench --url` report (serve-bench-report.ts), and its
 * validator, as bench-validate.ts is for the bench report: the schema checks the report's JSON
 * form (a figure that was not finite is null), then what it cannot say: the request counts add
 * up, the errors by kind sum to the failures, each statistic is in order (median <= p90 <= p99).
 */
import type { ValidateFunction } from 'ajv/dist/2020.js';
import { SERVE_BENCH_SCHEMA, type ServeBenchReport, type ServeStats } from './serve-bench-report.js';
import { checkReport, compileSchema, count, nonEmpty, object, str } from './json-schema.js';

const nonNegMetric = { $ref: '#/$defs/nonNegMetric' } as const;
const stats = { $ref: '#/$defs/stats' } as const;
const positive = { type: 'integer', minimum: 1 } as const;
const positiveNumber = { type: 'number', exclusiveMinimum: 0 } as const;

export const SERVE_BENCH_REPORT_JSON_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'urn:fusegen:bench-serve:1',
  title: 'fusegen bench --url report',
  description: `The report \`fusegen bench --url\` writes (${SERVE_BENCH_SCHEMA}): a load test of an OpenAI-compatible server. Measured figures that were not finite are null.`,
  ...object({
    schema: { const: SERVE_BENCH_SCHEMA },
    status: { enum: ['complete', 'interrupted'] },
    createdAt: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$' },
    target: object({ url: { type: 'string', pattern: '^https?://' }, model: nonEmpty }),
    settings: object(
      {
        numPrompts: positive,
        maxSeconds: positiveNumber,
        timeoutS: positiveNumber,
        maxTokens: positive,
        ignoreEos: { type: 'boolean' },
        seed: { type: 'integer' },
        prompts: { enum: ['compare-prompts', 'fixed-length', 'file'] },
        promptsFile: nonEmpty,
        tokenizer: nonEmpty,
        tokenCounting: { enum: ['tokenizer', 'usage'] },
        slo: { $ref: '#/$defs/slo' },
      },
      ['promptsFile', 'tokenizer', 'slo'],
    ),
    environment: object({ node: str, platform: str, fusegen: str, onnxruntimeNode: str, transformersJs: str, gitCommit: { type: ['string', 'null'] } }),
    points: { type: 'array', items: { $ref: '#/$defs/point' } },
  }),
  $defs: {
    nonNegMetric: { type: ['number', 'null'], minimum: 0 },
    stats: object({ mean: nonNegMetric, median: nonNegMetric, p90: nonNegMetric, p99: nonNegMetric }),
    slo: { ...object({ ttftMs: positiveNumber, tpotMs: positiveNumber, e2eMs: positiveNumber }, ['ttftMs', 'tpotMs', 'e2eMs']), minProperties: 1 },
    load: {
      oneOf: [
        object({ mode: { const: 'synchronous' } }),
        object({ mode: { const: 'concurrency' }, concurrency: positive }),
        object({ mode: { const: 'rate' }, requestRate: { oneOf: [positiveNumber, { const: 'inf' }] }, burstiness: positiveNumber }),
      ],
    },
    point: object(
      {
        load: { $ref: '#/$defs/load' },
        promptLength: positive,
        stoppedBy: { enum: ['num_prompts', 'max_seconds', 'interrupt'] },
        durationS: nonNegMetric,
        sent: count,
        completed: count,
        failed: count,
        errors: { type: 'object', propertyNames: { pattern: '^[a-z_0-9]+$' }, additionalProperties: positive },
        errorExamples: { type: 'object', additionalProperties: str },
        peakConcurrency: count,
        inputTokens: count,
        outputTokens: count,
        serverOutputTokens: { type: ['integer', 'null'], minimum: 0 },
        tokenCountMismatches: count,
        requestThroughput: nonNegMetric,
        outputThroughput: nonNegMetric,
        totalTokenThroughput: nonNegMetric,
        goodput: nonNegMetric,
        goodRequests: count,
        ttftMs: stats,
        tpotMs: stats,
        itlMs: stats,
        e2eMs: stats,
      },
      ['promptLength', 'goodput', 'goodRequests'],
    ),
  },
} as const;

function statsErrors(path: string, s: { [K in keyof ServeStats]: number | null }): string[] {
  const { median, p90, p99 } = s;
  if (median === null || p90 === null || p99 === null) return [];
  return median <= p90 && p90 <= p99 ? [] : [`${path}: median ${median}, p90 ${p90}, p99 ${p99} are out of order`];
}

function semanticErrors(r: ServeBenchReport): string[] {
  const out: string[] = [];
  r.points.forEach((p, i) => {
    const at = `points[${i}]`;
    if (p.completed + p.failed !== p.sent) out.push(`${at}: ${p.completed} completed + ${p.failed} failed is not the ${p.sent} sent`);
    const byKind = Object.values(p.errors).reduce((a, b) => a + b, 0);
    if (byKind !== p.failed) out.push(`${at}.errors: count ${byKind} failures, not the ${p.failed} failed`);
    if (p.peakConcurrency > p.sent) out.push(`${at}.peakConcurrency: ${p.peakConcurrency} is more than the ${p.sent} sent`);
    if ((p.goodput === undefined) !== (r.settings.slo === undefined)) out.push(`${at}.goodput: is there exactly when settings.slo is`);
    if (p.goodRequests !== undefined && p.goodRequests > p.completed) out.push(`${at}.goodRequests: ${p.goodRequests} is more than the ${p.completed} completed`);
    for (const k of ['ttftMs', 'tpotMs', 'itlMs', 'e2eMs'] as const) out.push(...statsErrors(`${at}.${k}`, p[k]));
  });
  return out;
}

let compiled: ValidateFunction | undefined;

/** Throws one line naming the first few violations (path: message) unless `r` is a valid `bench --url` report. */
export function validateServeBenchReport(r: unknown): asserts r is ServeBenchReport {
  compiled ??= compileSchema(SERVE_BENCH_REPORT_JSON_SCHEMA);
  checkReport('bench --url report', compiled, semanticErrors, r);
}
