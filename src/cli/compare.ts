/**
 * `fusegen compare`: DeepSpeed's ds-hf-compare.py, grown into a gate. Prints the seed's
 * lines, then a summary table; writes JSON and HTML reports; exit 0 when every prompt
 * matches or is tolerated (and throughput holds against --baseline), 1 otherwise.
 */
import { readJsonObject } from '../checkpoint/config.js';
import { ensureDefaultModel } from '../../fixtures/checkpoints.js';
import { interruptedReport, runCompare, summaryTable } from '../../compare/run.js';
import { InputError, UsageError } from '../errors.js';
import { kernelsFor } from './generate.js';
import type { ReferenceKind } from '../pipeline/ds-pipeline.js';
import { defaultDtype, type DType, type Device } from '../pipeline/types.js';
import type { CompareReport } from '../report/compare-report.js';
import { validateCompareReport } from '../report/compare-validate.js';
import { prepareOutputDir, writeCompareReports } from '../report/write.js';
import { accuracyLevelOption, allowNonfiniteOption, checkAccuracyLevel, dtypeOption, intAtLeast, oneOf, text, type AbortWriter, type OptionTable } from './options.js';

export interface CompareCliOptions {
  model: string | undefined;
  candidate_model: string | undefined;
  dtype: DType | undefined;
  num_inputs: number;
  min_length: number;
  max_length: number;
  print_outputs: boolean;
  use_kernel: boolean;
  reference: ReferenceKind;
  kernels: 'ort' | 'wgsl' | undefined;
  accuracy_level: 0 | 4 | undefined;
  device: Device;
  batch_size: number;
  report_dir: string;
  baseline: string | undefined;
  max_regression: number;
  speed_repeats: number;
  local_rank: number;
  allow_nonfinite: boolean;
}

export const compareOptions: OptionTable<CompareCliOptions> = {
  model: { flag: 'model', arg: 'dir', help: 'checkpoint for the reference (default: the embedded tiny OPT)', parse: text },
  candidate_model: { flag: 'candidate_model', arg: 'dir', help: 'run the optimized side on another checkpoint of the same architecture (edited, quantized, fine-tuned)', parse: text },
  dtype: dtypeOption<DType>(['float32', 'float16', 'int8', 'int4', 'bfloat16'], 'float32 | float16 | int8 | int4 (default: float32 on cpu, float16 on gpu devices); the reference runs float16 for float16, else float32'),
  num_inputs: { flag: 'num_inputs', arg: 'n', help: "how many of the seed's 43 prompts", default: 1, parse: intAtLeast(1) },
  min_length: { flag: 'min_length', arg: 'n', help: 'minimum total tokens (prompt included), as HF min_length', default: 200, parse: intAtLeast(1) },
  max_length: { flag: 'max_length', arg: 'n', help: 'maximum total tokens (prompt included), as HF max_length', default: 300, parse: intAtLeast(2) },
  print_outputs: { flag: 'print_outputs', help: 'print both outputs, match and similarity per prompt', default: false },
  use_kernel: { flag: 'use_kernel', help: 'the optimized side uses kernel injection (else fusegen on the plain graph)', default: false },
  reference: { flag: 'reference', arg: 'library', help: "what runs the reference side: transformersjs (transformers.js on fusegen's plain ONNX export) or hf (Hugging Face transformers itself, PyTorch in python3 or $FUSEGEN_PYTHON, on cuda where torch sees a GPU, else cpu)", default: 'transformersjs', parse: oneOf<ReferenceKind>(['transformersjs', 'hf']) },
  kernels: { flag: 'kernels', arg: 'backend', help: 'with --use_kernel: ort or wgsl (default wgsl on webgpu, ort elsewhere)', parse: oneOf<'ort' | 'wgsl'>(['ort', 'wgsl']) },
  accuracy_level: accuracyLevelOption,
  device: { flag: 'device', arg: 'name', help: 'cpu | webgpu | cuda', default: 'cpu', parse: oneOf<Device>(['cpu', 'webgpu', 'cuda']) },
  batch_size: { flag: 'batch_size', arg: 'n', help: 'prompts per batch', default: 1, parse: intAtLeast(1) },
  report_dir: { flag: 'report_dir', arg: 'dir', help: 'where the JSON and HTML reports go', default: 'reports', parse: text },
  baseline: { flag: 'baseline', arg: 'file', help: 'an earlier compare JSON report: fail when decode throughput fell more than --max_regression', parse: text },
  max_regression: { flag: 'max_regression', arg: 'pct', help: 'largest accepted drop in decode tokens/s against --baseline, percent', default: 10, parse: intAtLeast(0) },
  speed_repeats: { flag: 'speed_repeats', arg: 'n', help: 'timed runs per pipeline after the correctness pass', default: 3, parse: intAtLeast(1) },
  local_rank: { flag: 'local_rank', arg: 'n', help: 'rank of this process (env LOCAL_RANK)', default: 0, env: 'LOCAL_RANK', parse: intAtLeast(0) },
  allow_nonfinite: allowNonfiniteOption,
};

function loadBaseline(file: string): { file: string; report: CompareReport } {
  const raw: unknown = readJsonObject(file);
  try {
    validateCompareReport(raw);
  } catch (e) {
    throw new InputError(file, `not a compare report: ${(e as Error).message}`);
  }
  return { file, report: raw };
}

export async function runCompareCommand(o: CompareCliOptions, argv: string[], io: { out: (l: string) => void; err: (l: string) => void; interrupted: () => boolean; onAbort?: (write: AbortWriter) => void }): Promise<number> {
  if (o.kernels === 'wgsl' && o.device !== 'webgpu') throw new UsageError('--kernels', 'wgsl runs on --device webgpu');
  checkAccuracyLevel(o.accuracy_level, o.dtype ?? defaultDtype(o.device), !(o.use_kernel && kernelsFor(o.device, o.kernels) === 'wgsl'));
  prepareOutputDir('--report_dir', o.report_dir); // before any work: the reports' directory takes files
  const baseline = o.baseline ? loadBaseline(o.baseline) : undefined;
  // A second Ctrl-C stops at once: the prompts that finished are still written, marked interrupted.
  let live: CompareReport | undefined;
  io.onAbort?.(() => {
    if (!live) return;
    const partial = interruptedReport(live, live.settings.numInputs);
    const written = writeCompareReports(partial, o.report_dir);
    io.err(`interrupted: ${partial.prompts.length} finished prompt${partial.prompts.length === 1 ? '' : 's'} written to ${written.json}`);
  });
  const report = await runCompare(
    {
      model: o.model ?? ensureDefaultModel(),
      candidateModel: o.candidate_model,
      dtype: o.dtype ?? defaultDtype(o.device),
      device: o.device,
      useKernel: o.use_kernel,
      reference: o.reference,
      kernels: kernelsFor(o.device, o.kernels),
      numInputs: o.num_inputs,
      minLength: o.min_length,
      maxLength: o.max_length,
      batchSize: o.batch_size,
      printOutputs: o.print_outputs,
      speedRepeats: o.speed_repeats,
      ...(o.accuracy_level !== undefined ? { accuracyLevel: o.accuracy_level } : {}),
      baseline,
      maxRegression: o.max_regression,
      ...(o.allow_nonfinite ? { allowNonfinite: true } : {}),
      command: ['fusegen', 'compare', ...argv],
    },
    { ...io, live: (r) => (live = r) },
  ).finally(() => io.onAbort?.(undefined));
  for (const line of summaryTable(report)) io.out(line);
  const written = writeCompareReports(report, o.report_dir);
  io.out(`reports: ${written.json}\n         ${written.html}`);
  if (report.status === 'interrupted') return 130;
  return report.gate.exitCode;
}
