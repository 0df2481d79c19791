/**
 * The JSON Schema (draft 2020-12) of the compare report, and its validator.
 *
 * The schema describes the report as it is written to disk: JSON has no NaN or Infinity,
 * so a measured figure that is not finite (an empty run's median, an infinite KL) is `null`
 * in the file; those fields are `number | null` here ("metric" below), and every reader
 * shows them as "n/a". `validateCompareReport` therefore checks the object's JSON form,
 * which is exactly what `writeCompareReports` writes.
 *
 * Beyond the schema it checks what JSON Schema cannot say: the summary counts are the
 * prompts' verdicts, prompt indexes are unique, each side's ids and tokens pair up, and the
 * Hugging Face versions (environment.hf) are there exactly when settings.reference is "hf".
 *
 * settings.reference and environment.hf came after the first reports were written: both are
 * optional, so those reports stay valid (they ran transformers.js) and the schema stays /1.
 * So are the speed statistics (speed-stats.ts): each pipeline's samples, the intervals, and the
 * baseline's speed ratio; a report that has intervals has the samples they came from.
 */
import type { ValidateFunction } from 'ajv/dist/2020.js';
import { COMPARE_SCHEMA, type CompareReport } from './compare-report.js';
import { checkReport, compileSchema, count, intervalErrors, nonEmpty, object, RATIO_INTERVAL_SCHEMA, RUN_SAMPLES_SCHEMA, str, strings } from './json-schema.js';

/** A measured figure: null where it was NaN or +-Infinity (the JSON form). */
const metric = { $ref: '#/$defs/metric' } as const;
const nonNegMetric = { $ref: '#/$defs/nonNegMetric' } as const;
const share = { $ref: '#/$defs/share' } as const;
const interval = { $ref: '#/$defs/ratioInterval' } as const;

const VERDICTS = ['match', 'tolerated', 'mismatch', 'errored'] as const;

export const COMPARE_REPORT_JSON_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'urn:fusegen:compare:1',
  title: 'fusegen compare report',
  description: `The report \`fusegen compare\` writes (${COMPARE_SCHEMA}). Measured figures that were not finite are null.`,
  ...object({
    schema: { const: COMPARE_SCHEMA },
    status: { enum: ['complete', 'interrupted', 'failed'] },
    stoppedBy: str,
    createdAt: {
      type: 'string',
      pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$',
    },
    command: strings,
    model: object({ dir: nonEmpty, modelType: nonEmpty, candidateDir: nonEmpty, parameters: count }, ['parameters']),
    settings: object({
      dtype: nonEmpty,
      device: nonEmpty,
      reference: { enum: ['transformersjs', 'hf'] },
      referenceDtype: nonEmpty,
      useKernel: { type: 'boolean' },
      kernels: { enum: ['ort', 'wgsl', 'none'] },
      batchSize: { type: 'integer', minimum: 1 },
      numInputs: count,
      minLength: count,
      maxLength: count,
      accuracyLevel: { enum: [0, 4] },
      allowNonfinite: { type: 'boolean' },
      compared: { enum: ['logits', 'logprobs', 'tokens'] },
      remote: object({ reference: { $ref: '#/$defs/remoteSide' }, candidate: { $ref: '#/$defs/remoteSide' } }, ['reference', 'candidate']),
    }, ['accuracyLevel', 'reference', 'referenceDtype', 'allowNonfinite', 'compared', 'remote']),
    tolerance: object({
      atol: { type: 'number', minimum: 0 },
      rtol: { type: 'number', minimum: 0 },
      maxKl: { type: 'number', minimum: 0 },
      minTop1Agreement: { type: 'number', minimum: 0, maximum: 1 },
      nearTie: { type: 'number', minimum: 0 },
      topN: { type: 'integer', minimum: 1 },
      gate: { type: 'boolean' },
      floor: object(
        {
          pipeline: { const: 'plain' }, device: nonEmpty, factor: { type: 'number', minimum: 0 }, absolute: { type: 'number', minimum: 0 }, klAbsolute: { type: 'number', minimum: 0 }, top1Slack: { type: 'number', minimum: 0, maximum: 1 },
          paired: object({ atol: { type: 'number', minimum: 0 }, maxKl: { type: 'number', minimum: 0 } }),
        },
        ['paired', 'device'],
      ),
      twin: object({ atol: { type: 'number', minimum: 0 }, maxKl: { type: 'number', minimum: 0 } }),
      logprobs: object({ topK: { type: 'integer', minimum: 1 }, maxAbs: { type: 'number', minimum: 0 }, maxKl: { type: 'number', minimum: 0 }, minTop1Agreement: { type: 'number', minimum: 0, maximum: 1 } }),
    }, ['maxKl', 'floor', 'twin', 'logprobs']),
    environment: object({
      node: str,
      platform: str,
      fusegen: str,
      onnxruntimeNode: str,
      transformersJs: str,
      gitCommit: { type: ['string', 'null'] },
      executionProviders: { type: 'object', additionalProperties: strings },
      adapter: { type: ['string', 'null'] },
      hf: object({ python: str, torch: str, transformers: str, device: { enum: ['cpu', 'cuda'] }, deviceName: str }),
    }, ['hf']),
    fusions: { type: 'object', additionalProperties: count },
    prompts: { type: 'array', items: { $ref: '#/$defs/promptResult' } },
    speed: {
      ...object(
        {
          reference: { $ref: '#/$defs/pipelineSpeed' },
          candidate: { $ref: '#/$defs/pipelineSpeed' },
          decodeSpeedup: nonNegMetric,
          intervals: object({ tpotMedian: interval, tpotP90: interval, decodeThroughput: interval, ttft: interval }),
        },
        ['intervals'],
      ),
      type: ['object', 'null'],
    },
    summary: object({ matches: count, tolerated: count, mismatches: count, errored: count }),
    gate: object(
      {
        exitCode: { enum: [0, 1] },
        reasons: strings,
        baseline: object(
          { file: nonEmpty, decodeTokensPerSec: nonNegMetric, regressionPct: metric, maxRegressionPct: { type: 'number' }, speedRatio: interval, significant: { type: 'boolean' } },
          ['speedRatio', 'significant'],
        ),
      },
      ['baseline'],
    ),
  }, ['stoppedBy']),
  // A run that did not complete says what stopped it.
  if: { properties: { status: { const: 'complete' } } },
  else: { required: ['stoppedBy'] },
  $defs: {
    metric: { type: ['number', 'null'] },
    nonNegMetric: { type: ['number', 'null'], minimum: 0 },
    share: { type: ['number', 'null'], minimum: 0, maximum: 1 },
    ratioInterval: RATIO_INTERVAL_SCHEMA,
    logitStats: object(
      { positions: count, maxAbs: nonNegMetric, maxRel: nonNegMetric, top1Agreement: share, meanKl: nonNegMetric, unionMaxAbs: nonNegMetric, fullMaxAbs: nonNegMetric, maxKl: nonNegMetric },
      ['unionMaxAbs', 'fullMaxAbs', 'maxKl'],
    ),
    logprobStats: object({ positions: count, maxAbs: nonNegMetric, maxKl: nonNegMetric, meanKl: nonNegMetric, top1Agreement: share }),
    remoteSide: object({
      url: nonEmpty,
      model: nonEmpty,
      api: { enum: ['openai', 'llama.cpp'] },
      prompt: { enum: ['ids', 'text'] },
      topLogprobs: count,
      promptLogprobs: { type: 'boolean' },
      tokens: { enum: ['ids', 'text-tokens', 'text'] },
      notes: strings,
    }),
    generation: object({ ids: { type: 'array', items: count }, tokens: strings, text: str }),
    promptResult: {
      ...object(
        {
          index: count,
          prompt: str,
          verdict: { enum: VERDICTS },
          reason: str,
          reference: { $ref: '#/$defs/generation' },
          candidate: { $ref: '#/$defs/generation' },
          firstDivergence: { type: ['integer', 'null'], minimum: 0 },
          similarity: share,
          diff: { type: 'array', items: object({ kind: { enum: ['equal', 'removed', 'added'] }, tokens: strings }) },
          logits: {
            ...object({ prefill: { $ref: '#/$defs/logitStats' }, decode: { $ref: '#/$defs/logitStats' }, perPositionMaxAbs: { type: 'array', items: nonNegMetric } }),
            type: ['object', 'null'],
          },
          logprobs: object({
            from: { enum: ['teacher-forced', 'generation'] },
            prefill: { anyOf: [{ $ref: '#/$defs/logprobStats' }, { type: 'null' }] },
            decode: { $ref: '#/$defs/logprobStats' },
            perPositionMaxAbs: { type: 'array', items: nonNegMetric },
            perPositionKl: { type: 'array', items: nonNegMetric },
          }),
          floor: object({
            unionMaxAbs: nonNegMetric,
            maxKl: nonNegMetric,
            top1Agreement: share,
            bounds: object({ atol: nonNegMetric, maxKl: nonNegMetric, minTop1Agreement: share }),
            paired: object({ unionMaxAbs: nonNegMetric, maxKl: nonNegMetric, top1Agreement: share }),
          }, ['paired']),
          twin: object({ unionMaxAbs: nonNegMetric, maxKl: nonNegMetric, top1Agreement: share }),
          triage: object(
            {
              backend: { enum: ['ort', 'wgsl'] },
              runs: {
                type: 'array',
                items: object(
                  { variant: nonEmpty, backend: { enum: ['ort', 'wgsl'] }, verdict: { enum: VERDICTS.filter((v) => v !== 'errored') }, maxAbs: nonNegMetric, meanKl: nonNegMetric, errorShare: nonNegMetric, explains: { type: 'boolean' } },
                  ['backend', 'meanKl', 'errorShare', 'explains'],
                ),
              },
              blame: str,
            },
            ['backend'],
          ),
        },
        ['triage', 'floor', 'twin', 'logprobs'],
      ),
      // Triage reruns exist only for mismatches.
      if: { required: ['triage'] },
      then: { properties: { verdict: { const: 'mismatch' } } },
    },
    pipelineSpeed: object({
      pipeline: nonEmpty,
      samples: { type: 'array', items: RUN_SAMPLES_SCHEMA, minItems: 1 },
      ttftMs: nonNegMetric,
      tpotMedianMs: nonNegMetric,
      tpotP90Ms: nonNegMetric,
      decodeTokensPerSec: nonNegMetric,
      prefillTokensPerSec: nonNegMetric,
      perPosition: {
        type: 'array',
        items: { type: 'array', prefixItems: [count, nonNegMetric], items: false, minItems: 2 },
      },
    }, ['samples']),
  },
} as const;

let compiled: ValidateFunction | undefined;

function semanticErrors(r: CompareReport): string[] {
  const out: string[] = [];
  const tally = { matches: 0, tolerated: 0, mismatches: 0, errored: 0 };
  const key = { match: 'matches', tolerated: 'tolerated', mismatch: 'mismatches', errored: 'errored' } as const;
  const seen = new Set<number>();
  r.prompts.forEach((p, i) => {
    tally[key[p.verdict]]++;
    if (seen.has(p.index)) out.push(`prompts[${i}].index: ${p.index} is used twice`);
    seen.add(p.index);
    for (const side of ['reference', 'candidate'] as const) {
      if (p[side].ids.length !== p[side].tokens.length) out.push(`prompts[${i}].${side}: ${p[side].ids.length} ids but ${p[side].tokens.length} tokens`);
    }
  });
  // Logits are compared exactly when no side is served; log-probabilities only where one is.
  const remote = r.settings.remote;
  const served = remote !== undefined && (remote.reference !== undefined || remote.candidate !== undefined);
  if (r.settings.compared !== undefined && (r.settings.compared === 'logits') === served) out.push(`settings.compared: is "${r.settings.compared}" ${served ? 'but a side is served' : 'with no served side'}`);
  if (remote !== undefined && !served) out.push('settings.remote: names no side');
  r.prompts.forEach((p, i) => {
    if (p.logprobs && r.settings.compared !== 'logprobs') out.push(`prompts[${i}].logprobs: only where settings.compared is "logprobs"`);
  });
  // The Python side's versions belong to, and only to, a run whose reference was Hugging Face transformers.
  if (r.settings.reference === 'hf' && !r.environment.hf) out.push('environment.hf: is required when settings.reference is "hf"');
  if (r.settings.reference !== 'hf' && r.environment.hf) out.push('environment.hf: is only allowed when settings.reference is "hf"');
  for (const k of Object.keys(tally) as Array<keyof typeof tally>) {
    if (r.summary[k] !== tally[k]) out.push(`summary.${k}: is ${r.summary[k]} but the prompts have ${tally[k]}`);
  }
  // Intervals come from the samples: both sides keep theirs wherever there are intervals.
  if (r.speed?.intervals) {
    for (const side of ['reference', 'candidate'] as const) if (!r.speed[side].samples) out.push(`speed.${side}.samples: is required with speed.intervals`);
    for (const [k, v] of Object.entries(r.speed.intervals)) out.push(...intervalErrors(`speed.intervals.${k}`, v));
  }
  const b = r.gate.baseline;
  if (b?.speedRatio) {
    out.push(...intervalErrors('gate.baseline.speedRatio', b.speedRatio));
    if (b.significant !== undefined && b.significant !== (b.speedRatio.significant && b.speedRatio.high < 1)) out.push(`gate.baseline.significant: is ${b.significant} but the interval says otherwise`);
  }
  return out;
}

/**
 * Throws one line naming the first few violations (path: message) unless `r` is a valid
 * compare report. Checks the JSON form of `r` (non-finite numbers become null).
 */
export function validateCompareReport(r: unknown): asserts r is CompareReport {
  compiled ??= compileSchema(COMPARE_REPORT_JSON_SCHEMA);
  checkReport('compare report', compiled, semanticErrors, r);
}
