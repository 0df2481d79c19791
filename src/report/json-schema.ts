/**
 * What the report validators share: JSON Schema building blocks, ajv error messages as one
 * readable line (`prompts[0].verdict: must be one of ...`), and the schema fragments of the speed
 * statistics (speed-stats.ts) that both the compare and the bench report carry.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

export const str = { type: 'string' } as const;
export const nonEmpty = { type: 'string', minLength: 1 } as const;
export const count = { type: 'integer', minimum: 0 } as const;
export const strings = { type: 'array', items: str } as const;
/** A measured figure: null where it was NaN or +-Infinity (the JSON form). */
export const metricInline = { type: ['number', 'null'] } as const;
export const nonNegMetricInline = { type: ['number', 'null'], minimum: 0 } as const;

/** An object with exactly these properties, all required but `optional`. */
export function object(properties: Record<string, unknown>, optional: string[] = []): Record<string, unknown> {
  return {
    type: 'object',
    properties,
    required: Object.keys(properties).filter((k) => !optional.includes(k)),
    additionalProperties: false,
  };
}

/** speed-stats.ts's RunSamples. */
export const RUN_SAMPLES_SCHEMA = object({
  firstTokenMs: nonNegMetricInline,
  decodeStepMs: { type: 'array', items: nonNegMetricInline },
  totalMs: nonNegMetricInline,
});

/** speed-stats.ts's RatioInterval (NaN figures are null where a side had no samples). */
export const RATIO_INTERVAL_SCHEMA = object(
  {
    statistic: { enum: ['median', 'p90', 'mean'] },
    over: { enum: ['steps and runs', 'runs'] },
    fixed: { enum: ['numerator', 'denominator'] },
    estimate: nonNegMetricInline,
    low: nonNegMetricInline,
    high: nonNegMetricInline,
    level: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
    resamples: { type: 'integer', minimum: 1 },
    seed: { type: 'integer' },
    significant: { type: 'boolean' },
  },
  ['fixed'],
);

interface IntervalLike {
  estimate: number | null;
  low: number | null;
  high: number | null;
  significant: boolean;
}

/** What JSON Schema cannot say about an interval: low <= estimate <= high, and significant exactly when it excludes 1. */
export function intervalErrors(path: string, r: IntervalLike): string[] {
  const out: string[] = [];
  const { low, high, estimate } = r;
  if (low === null || high === null || estimate === null) {
    if (r.significant) out.push(`${path}.significant: is true without an interval`);
    return out;
  }
  if (!(low <= estimate && estimate <= high)) out.push(`${path}: low ${low}, estimate ${estimate}, high ${high} are out of order`);
  if (r.significant !== (low > 1 || high < 1)) out.push(`${path}.significant: is ${r.significant} but the interval ${low}-${high} ${low > 1 || high < 1 ? 'excludes' : 'includes'} 1`);
  return out;
}

export function compileSchema(schema: object): ValidateFunction {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
  return ajv.compile(schema);
}

/** `/prompts/0/verdict` -> `prompts[0].verdict`; the root is `(root)`. */
function readablePath(pointer: string, child?: string): string {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) parts.push(child);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : /^[A-Za-z_$][\w$]*$/.test(p) ? (out ? `.${p}` : p) : `[${JSON.stringify(p)}]`;
  return out || '(root)';
}

function describe(e: ErrorObject): string | null {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'if':
      return null; // the failing then/else branch is reported by its own error
    case 'required':
      return `${readablePath(e.instancePath, String(p['missingProperty']))}: is required`;
    case 'additionalProperties':
      return `${readablePath(e.instancePath, String(p['additionalProperty']))}: is not allowed`;
    case 'enum':
      return `${readablePath(e.instancePath)}: must be one of ${(p['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `${readablePath(e.instancePath)}: must be ${JSON.stringify(p['allowedValue'])}`;
    default:
      return `${readablePath(e.instancePath)}: ${e.message ?? e.keyword}`;
  }
}

const SHOWN = 5;

/**
 * Throws one line naming the first few violations (path: message) unless `r`'s JSON form (non-finite
 * numbers become null) passes the schema and then `semantic`. `what` names the report in the message.
 */
export function checkReport<T>(what: string, validate: ValidateFunction, semantic: (data: T) => string[], r: unknown): void {
  let data: unknown;
  try {
    data = JSON.parse(JSON.stringify(r) ?? 'null') as unknown;
  } catch (e) {
    throw new Error(`invalid ${what}: not plain JSON data (${e instanceof Error ? e.message : String(e)})`);
  }
  let problems: string[];
  if (validate(data)) {
    problems = semantic(data as T);
  } else {
    problems = [...new Set((validate.errors ?? []).map(describe).filter((m): m is string => m !== null))];
  }
  if (problems.length === 0) return;
  const more = problems.length > SHOWN ? ` (and ${problems.length - SHOWN} more)` : '';
  throw new Error(`invalid ${what}: ${problems.slice(0, SHOWN).join('; ')}${more}`);
}
