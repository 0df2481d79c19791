/**
 * Where an ONNX Runtime step's time goes: profiled runs (runtime/ort.ts) summed per node role
 * and per GPU program, as means per step. A node's role is its name with the layer index
 * dropped (/model/layers.*\/attn/qkv_proj/MatMul), so one line covers every layer's copy.
 */
import type { OrtRun } from '../src/runtime/ort.js';

export interface OpTime {
  /** The node's name with /layers.N/ as /layers.*\/. */
  role: string;
  op: string;
  /** Per step. */
  calls: number;
  /** Host time per step: on the CPU the op's compute, on a GPU its dispatch. */
  hostUs: number;
  /** GPU time per step (WebGPU timestamp queries; 0 where none). */
  gpuUs: number;
}

export interface ProgramTime {
  /** op/program, e.g. GroupQueryAttention/FlashAttentionDecodeQKV. */
  program: string;
  calls: number;
  gpuUs: number;
}

export interface OpProfile {
  /** Steps averaged over. */
  steps: number;
  /** Session.run wall time per step. */
  wallUs: number;
  hostUs: number;
  gpuUs: number;
  /** Largest first (GPU time where there is any, else host time). */
  ops: OpTime[];
  programs: ProgramTime[];
}

const layerless = (name: string) => name.replace(/\/layers\.\d+\//, '/layers.*/').replace(/\.h\.\d+\//, '.h.*/');

export function summarizeRuns(runs: OrtRun[]): OpProfile {
  const n = Math.max(1, runs.length);
  const ops = new Map<string, OpTime>();
  const programs = new Map<string, ProgramTime>();
  const opOf = (role: string, op: string) => {
    const key = `${role}\u0000${op}`;
    let t = ops.get(key);
    if (!t) ops.set(key, (t = { role, op, calls: 0, hostUs: 0, gpuUs: 0 }));
    return t;
  };
  for (const r of runs) {
    for (const node of r.nodes) {
      const t = opOf(layerless(node.name), node.op);
      t.calls += 1 / n;
      t.hostUs += node.us / n;
    }
    for (const k of r.kernels) {
      opOf(layerless(k.node), k.op).gpuUs += k.us / n;
      const name = `${k.op}/${k.program}`;
      const p = programs.get(name) ?? { program: name, calls: 0, gpuUs: 0 };
      p.calls += 1 / n;
      p.gpuUs += k.us / n;
      programs.set(name, p);
    }
  }
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const all = [...ops.values()];
  const key = (t: OpTime) => (t.gpuUs > 0 ? t.gpuUs : t.hostUs);
  return {
    steps: runs.length,
    wallUs: sum(runs.map((r) => r.wallUs)) / n,
    hostUs: sum(all.map((t) => t.hostUs)),
    gpuUs: sum(all.map((t) => t.gpuUs)),
    ops: all.sort((a, b) => key(b) - key(a)),
    programs: [...programs.values()].sort((a, b) => b.gpuUs - a.gpuUs),
  };
}

/** One line: the step's wall, host and GPU time, then the `top` largest ops with their share. */
export function profileLine(p: OpProfile, top = 6): string {
  const total = p.gpuUs > 0 ? p.gpuUs : p.hostUs;
  const head = `step ${(p.wallUs / 1e3).toFixed(3)} ms wall, ops ${(p.hostUs / 1e3).toFixed(3)} ms host${p.gpuUs > 0 ? `, ${(p.gpuUs / 1e3).toFixed(3)} ms GPU` : ''}`;
  const parts = p.ops.slice(0, top).map((t) => {
    const us = t.gpuUs > 0 ? t.gpuUs : t.hostUs;
    return `${t.role} ${us.toFixed(0)} us (${((100 * us) / Math.max(1e-9, total)).toFixed(0)}%)`;
  });
  return `${head}: ${parts.join(', ')}`;
}
