/**
 * The JSON Schema (draft 2020-12) of the bench report, and its validator, as compare-validate.ts
 * is for the compare report: it checks the report's JSON form (a figure that was not finite is
 * null), then what the schema cannot say: the gate's exit code is its reasons', each interval is
 * in order and significant exactly when it excludes 1, a failing baseline row is a significant
 * regression beyond the allowed one.
 *
 * Every field added since the first reports (stepProfile's stepsAhead, submitMsPerStep and ranks,
 * samples, versus, gate, load, llamaCppTimings) is optional: the reports in bench/results stay valid.
 */
import type { ValidateFunction } from 'ajv/dist/2020.js';
import { BENCH_SCHEMA, type BenchReport } from './bench-report.js';
import { checkReport, compileSchema, count, intervalErrors, nonEmpty, object, RATIO_INTERVAL_SCHEMA, RUN_SAMPLES_SCHEMA, str, strings } from './json-schema.js';

const metric = { $ref: '#/$defs/metric' } as const;
const nonNegMetric = { $ref: '#/$defs/nonNegMetric' } as const;
const interval = { $ref: '#/$defs/ratioInterval' } as const;
const pipeline = { enum: ['reference', 'ort', 'wgsl', 'llamacpp'] } as const;
const positive = { type: 'integer', minimum: 1 } as const;
const stats = { $ref: '#/$defs/stats' } as const;
const opProfile = { $ref: '#/$defs/opProfile' } as const;
const kernelTimes = { type: 'array', items: { $ref: '#/$defs/kernelTime' } } as const;
const llamaCppPhase = { $ref: '#/$defs/llamaCppPhase' } as const;

export const BENCH_REPORT_JSON_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'urn:fusegen:bench:1',
  title: 'fusegen bench report',
  description: `The report \`fusegen bench\` writes (${BENCH_SCHEMA}). Measured figures that were not finite are null.`,
  ...object(
    {
      schema: { const: BENCH_SCHEMA },
      status: { enum: ['complete', 'interrupted'] },
      createdAt: {
        type: 'string',
        pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$',
      },
      model: object({ dir: nonEmpty, modelType: nonEmpty, parameters: { type: 'number', minimum: 0 } }),
      device: { enum: ['cpu', 'webgpu', 'cuda'] },
      dtype: { enum: ['float32', 'float16', 'int8', 'int4', 'bfloat16'] },
      environment: object({ node: str, platform: str, fusegen: str, onnxruntimeNode: str, transformersJs: str, gitCommit: { type: ['string', 'null'] } }),
      rows: { type: 'array', items: { $ref: '#/$defs/row' } },
      gate: object({
        exitCode: { enum: [0, 1] },
        reasons: strings,
        baseline: object({
          file: nonEmpty,
          maxRegressionPct: { type: 'number', minimum: 0 },
          rows: {
            type: 'array',
            items: object({
              pipeline,
              batch: positive,
              promptLength: positive,
              baselineTpotMs: nonNegMetric,
              tpotMs: nonNegMetric,
              speedRatio: interval,
              regressionPct: metric,
              significant: { type: 'boolean' },
              fails: { type: 'boolean' },
            }),
          },
          unmatched: strings,
        }),
      }),
    },
    ['gate'],
  ),
  $defs: {
    metric: { type: ['number', 'null'] },
    nonNegMetric: { type: ['number', 'null'], minimum: 0 },
    ratioInterval: RATIO_INTERVAL_SCHEMA,
    stats: object({ mean: nonNegMetric, median: nonNegMetric, p90: nonNegMetric, p99: nonNegMetric }),
    kernelTime: object({ kernel: nonEmpty, dispatches: count, totalUs: nonNegMetric, marginalUs: metric }),
    llamaCppPhase: object({ wallMs: nonNegMetric, promptEvalMs: nonNegMetric, promptEvalTokens: count, evalMs: nonNegMetric, evalRuns: count, graphsReused: count }),
    opProfile: object({
      steps: count,
      wallUs: nonNegMetric,
      hostUs: nonNegMetric,
      gpuUs: nonNegMetric,
      ops: { type: 'array', items: object({ role: str, op: str, calls: { type: 'number', minimum: 0 }, hostUs: nonNegMetric, gpuUs: nonNegMetric }) },
      programs: { type: 'array', items: object({ program: str, calls: { type: 'number', minimum: 0 }, gpuUs: nonNegMetric }) },
    }),
    row: object(
      {
        pipeline,
        batch: positive,
        promptLength: positive,
        maxNewTokens: positive,
        loadMs: nonNegMetric,
        load: object({ ms: nonNegMetric, peakRssMB: nonNegMetric, startRssMB: nonNegMetric, endRssMB: nonNegMetric, peakSource: { enum: ['vmhwm-reset', 'process-maxrss'] }, weightsMs: nonNegMetric }, ['weightsMs']),
        executionProviders: strings,
        accuracyLevel: { enum: [0, 4] },
        ttftMs: stats,
        tpotMs: stats,
        e2eMs: stats,
        decodeTokensPerSec: nonNegMetric,
        prefillTokensPerSec: nonNegMetric,
        bandwidthGBps: nonNegMetric,
        tflops: nonNegMetric,
        peakRssMB: nonNegMetric,
        perPosition: { type: 'array', items: { type: 'array', prefixItems: [count, nonNegMetric], items: false, minItems: 2 } },
        outlierPositions: { type: 'array', items: count },
        samples: { type: 'array', items: RUN_SAMPLES_SCHEMA, minItems: 1 },
        versus: object({ pipeline, tpotSpeedup: interval }),
        stepProfile: object(
          {
            steps: count, stepsAhead: count, encodeMsPerStep: nonNegMetric, submitMsPerStep: nonNegMetric, waitMsPerStep: nonNegMetric,
            ranks: {
              type: 'array',
              minItems: 2,
              items: object({ rank: count, layers: { type: 'array', prefixItems: [count, positive], items: false, minItems: 2 }, msPerStep: nonNegMetric, transferBytesPerStep: nonNegMetric, transferMsPerStep: nonNegMetric }),
            },
          },
          ['stepsAhead', 'submitMsPerStep', 'ranks'],
        ),
        stepGpuUs: nonNegMetric,
        kernelProfile: kernelTimes,
        prefillGpuUs: nonNegMetric,
        prefillKernelProfile: kernelTimes,
        opProfile: object({ prefill: opProfile, decode: opProfile }),
        llamaCppTimings: object({ backend: { enum: ['cpu', 'vulkan'] }, devices: strings, prefill: llamaCppPhase, decode: llamaCppPhase }),
      },
      ['accuracyLevel', 'load', 'samples', 'versus', 'stepProfile', 'stepGpuUs', 'kernelProfile', 'prefillGpuUs', 'prefillKernelProfile', 'opProfile', 'llamaCppTimings'],
    ),
  },
} as const;

function semanticErrors(r: BenchReport): string[] {
  const out: string[] = [];
  r.rows.forEach((row, i) => {
    if (row.versus) out.push(...intervalErrors(`rows[${i}].versus.tpotSpeedup`, row.versus.tpotSpeedup));
  });
  const g = r.gate;
  if (g) {
    if (g.exitCode !== (g.reasons.length ? 1 : 0)) out.push(`gate.exitCode: is ${g.exitCode} with ${g.reasons.length} reason(s)`);
    g.baseline.rows.forEach((b, i) => {
      out.push(...intervalErrors(`gate.baseline.rows[${i}].speedRatio`, b.speedRatio));
      const significant = b.speedRatio.significant && b.speedRatio.high < 1;
      if (b.significant !== significant) out.push(`gate.baseline.rows[${i}].significant: is ${b.significant} but the interval says ${significant}`);
      const fails = significant && b.regressionPct !== null && b.regressionPct > g.baseline.maxRegressionPct;
      if (b.fails !== fails) out.push(`gate.baseline.rows[${i}].fails: is ${b.fails} but a ${significant ? 'significant' : 'not significant'} regression of ${b.regressionPct}% against ${g.baseline.maxRegressionPct}% allowed ${fails ? 'fails' : 'passes'}`);
    });
    const failing = g.baseline.rows.filter((b) => b.fails).length;
    if (failing > 0 && g.exitCode !== 1) out.push(`gate.exitCode: is 0 with ${failing} failing row(s)`);
  }
  return out;
}

let compiled: ValidateFunction | undefined;

/**
 * Throws one line naming the first few violations (path: message) unless `r` is a valid bench
 * report. Checks the JSON form of `r` (non-finite numbers become null).
 */
export function validateBenchReport(r: unknown): asserts r is BenchReport {
  compiled ??= compileSchema(BENCH_REPORT_JSON_SCHEMA);
  checkReport('bench report', compiled, semanticErrors, r);
}
