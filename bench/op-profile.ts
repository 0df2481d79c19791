/**
 * Where an ONNX Runtime step's time goes: profiled runs (runtime/ort.ts) summed per node role
 * and per GPU program, as means per step. A node's role is its name with the layer index
 * dropped (/model/layers.*\/attn/qkv_proj/MatMul), so one line covers every layer's copy.
 */
import type { OrtRun } from '../src/runtime/ort.js';
import { byTime, type OpProfile, type OpTime, type ProgramTime } from '../src/report/bench-report.js';

// The profile's types are the report's (src/report/bench-report.ts): re-exported for bench's users.
export { byTime, type OpProfile, type OpTime, type ProgramTime };

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
  const gpuUs = sum(all.map((t) => t.gpuUs));
  return {
    steps: runs.length,
    wallUs: sum(runs.map((r) => r.wallUs)) / n,
    hostUs: sum(all.map((t) => t.hostUs)),
    gpuUs,
    ops: byTime(all, gpuUs > 0 ? 'gpuUs' : 'hostUs'),
    programs: [...programs.values()].sort((a, b) => b.gpuUs - a.gpuUs),
  };
}

/** One line: the step's wall, host and GPU time, then the largest ops with their shares, by GPU and by host time. */
export function profileLine(p: OpProfile, top = 5): string {
  const ms = (us: number) => `${(us / 1e3).toFixed(3)} ms`;
  const tops = (key: 'gpuUs' | 'hostUs', total: number) =>
    byTime(p.ops, key)
      .slice(0, top)
      .map((t) => `${t.role} ${t[key].toFixed(0)} us (${((100 * t[key]) / Math.max(1e-9, total)).toFixed(0)}%)`)
      .join(', ');
  const head = `step ${ms(p.wallUs)} wall, ops ${ms(p.hostUs)} host${p.gpuUs > 0 ? `, ${ms(p.gpuUs)} GPU` : ''}`;
  return p.gpuUs > 0 ? `${head}; GPU: ${tops('gpuUs', p.gpuUs)}; host: ${tops('hostUs', p.hostUs)}` : `${head}: ${tops('hostUs', p.hostUs)}`;
}
