#!/usr/bin/env python3
"""Hugging Face transformers (PyTorch) as fusegen's reference pipeline: `--reference hf`.

src/pipeline/hf.ts starts this script as a child process and speaks line-delimited JSON with it
on stdin/stdout: one request per line, one response per line, each response carrying its
request's id. Logs go to stderr only (stray prints included: fd 1 is pointed at stderr).

    python3 hf_reference.py --model DIR [--dtype float32|float16|bfloat16] [--device auto|cpu|cuda]

The checkpoint loads as the seed's DSPipeline loads it: AutoTokenizer with left padding and
pad = eos where the tokenizer has no pad token, AutoModelForCausalLM in the given dtype, on
cuda where available (--device auto), else on the CPU. Nothing from the checkpoint runs as
code (no trust_remote_code) and nothing is downloaded.

Startup lines (no id):
    {"hello": {"python", "torch", "transformers", "device", "device_name"}}   imports done
    {"ready": {"load_ms", "model_type", "dtype", "vocab", "eos_token_ids", "pad_token_id"}}
  or {"error": "...", "missing": [...]} (exit 3) when torch or transformers is missing,
  or {"error": "..."} (exit 1) when the model does not load.
Requests -> responses:
    {"id", "op": "tokenize", "prompts": [str]}
        -> {"id", "ids": [[int]]}   (special tokens added, as the seed's tokenizer call)
    {"id", "op": "generate", "prompts": [str] | "prompt_ids": [[int]], "max_new_tokens",
     "min_new_tokens", "do_sample", "seed", "top_k", "ignore_eos"}
        -> {"id", "prompt_length", "steps", "rows": [{"prompt_ids", "new_ids", "finish_reason",
            "text", "generated_text", "top_k": [{"ids", "values"}] per step}],
            "timings": {"first_token_ms", "decode_step_ms", "total_ms"}}
    {"id", "op": "score", "rows": [[int]], "from": [int]}
        -> {"id", "vocab": V, "logits": [base64 of float32 little-endian, (len - from) x V]}
    {"id", "op": "shutdown"} -> {"id", "ok": true}, then exit 0 (as on end of stdin)
Errors: {"id", "error": "one line"}; the full traceback goes to stderr. SIGINT is ignored.
"""
import argparse
import base64
import importlib.util
import json
import os
import platform
import signal
import sys
import time
import traceback

# Ctrl-C in a terminal reaches the whole process group: fusegen finishes its current step and
# then shuts this child down, so the child must not die of the same keypress. It ends on
# `shutdown`, on end of stdin (fusegen gone) or when killed.
signal.signal(signal.SIGINT, signal.SIG_IGN)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# The protocol owns the real stdout; everything else printed (by us or any library) goes to stderr.
PROTO = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr


def send(obj):
    PROTO.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    PROTO.flush()


def log(msg):
    print(f"hf_reference: {msg}", file=sys.stderr, flush=True)


def one_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def ms_since(t):
    return (time.perf_counter() - t) * 1000


class StepClock:
    """A generate streamer: put() gets the prompt first, then each step's tokens (copied to the host, so the GPU is done)."""

    def __init__(self):
        self.calls = 0
        self.times = []

    def put(self, _value):
        self.calls += 1
        if self.calls > 1:
            self.times.append(time.perf_counter())

    def end(self):
        pass


class Reference:
    def __init__(self, torch, model, tok, device):
        self.torch, self.model, self.tok, self.device = torch, model, tok, device
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        self.eos_ids = [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])

    def encode(self, prompts):
        return [self.tok(p)["input_ids"] for p in prompts]

    def tokenize(self, req):
        return {"ids": self.encode(req["prompts"])}

    def generate(self, req):
        torch, tok = self.torch, self.tok
        t0 = time.perf_counter()
        rows = req["prompt_ids"] if req.get("prompt_ids") is not None else self.encode(req["prompts"])
        if not rows or any(len(r) == 0 for r in rows):
            raise ValueError("every prompt needs at least one token")
        # Left padding with the pad id, as tok(prompts, padding=True) does with padding_side="left".
        S = max(len(r) for r in rows)
        pad = tok.pad_token_id
        ids = torch.tensor([[pad] * (S - len(r)) + list(r) for r in rows], device=self.device)
        mask = torch.tensor([[0] * (S - len(r)) + [1] * len(r) for r in rows], device=self.device)
        n = int(req["max_new_tokens"])
        k = int(req.get("top_k") or 0)
        kwargs = dict(max_new_tokens=n, do_sample=bool(req.get("do_sample")), pad_token_id=pad, return_dict_in_generate=True, output_logits=k > 0)
        if req.get("ignore_eos"):
            kwargs["min_new_tokens"] = n
        elif req.get("min_new_tokens"):
            kwargs["min_new_tokens"] = int(req["min_new_tokens"])
        if kwargs["do_sample"]:
            torch.manual_seed(int(req.get("seed") or 0))
        clock = StepClock()
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, streamer=clock, **kwargs)
        total_ms = ms_since(t0)
        eos_ids = [] if req.get("ignore_eos") else self.eos_ids
        result = []
        for b, prompt_ids in enumerate(rows):
            new_ids = out.sequences[b, S:].tolist()
            cut = next((i for i, t in enumerate(new_ids) if t in eos_ids), None)
            if cut is not None:
                new_ids = new_ids[: cut + 1]
            row = {
                "prompt_ids": list(prompt_ids),
                "new_ids": new_ids,
                "finish_reason": "eos" if cut is not None else "length",
                "text": tok.decode(list(prompt_ids) + new_ids, skip_special_tokens=True),
                "generated_text": tok.decode(new_ids, skip_special_tokens=True),
            }
            if k > 0:
                steps = []
                for step in out.logits[: len(new_ids)]:  # raw logits, one [batch, vocab] tensor per step
                    v, i = torch.topk(step[b].float(), min(k, step.shape[-1]))
                    steps.append({"ids": i.tolist(), "values": v.tolist()})
                row["top_k"] = steps
            result.append(row)
        times = clock.times
        return {
            "prompt_length": S,
            "steps": len(times),
            "rows": result,
            "timings": {
                "first_token_ms": (times[0] - t0) * 1000 if times else total_ms,
                "decode_step_ms": [(b - a) * 1000 for a, b in zip(times, times[1:])],
                "total_ms": total_ms,
            },
        }

    def score(self, req):
        """Teacher-forced logits, no cache, each row alone: positions from[b] .. len - 1."""
        torch = self.torch
        rows, starts = req["rows"], req["from"]
        if len(rows) != len(starts):
            raise ValueError(f"{len(rows)} rows but {len(starts)} starts")
        encoded, vocab = [], 0
        for row, f in zip(rows, starts):
            if not 0 <= f < len(row):
                raise ValueError(f"from {f} is outside a row of {len(row)} tokens")
            ids = torch.tensor([row], device=self.device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, f:]
            vocab = logits.shape[-1]
            data = logits.float().cpu().contiguous().numpy().astype("<f4", copy=False).tobytes()
            encoded.append(base64.b64encode(data))
        return {"vocab": vocab, "logits": encoded}


def send_score(rid, res):
    # Built by hand: the payloads are large, and json.dumps would only copy them again.
    head = json.dumps({"id": rid, "vocab": res["vocab"]}, separators=(",", ":"))[:-1].encode()
    PROTO.write(head + b',"logits":["' + b'","'.join(res["logits"]) + b'"]}\n')
    PROTO.flush()


def output_width(model):
    head = model.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)


def load(args):
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        send({"error": f"{' and '.join(missing)} not importable", "missing": missing, "python": platform.python_version()})
        sys.exit(3)
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except Exception as e:  # a broken install: present but failing to import
        send({"error": f"importing torch/transformers failed: {one_line(e)}", "python": platform.python_version()})
        sys.exit(3)
    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        send({"error": "--device cuda asked for, but torch sees no CUDA device"})
        sys.exit(1)
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and cuda) else "cpu"
    send({"hello": {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
    }})

    t0 = time.perf_counter()
    try:
        # float32 means float32: no TF32 matmuls on the GPU.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
        log(f"loading {args.model} ({args.dtype}) on {device}")
        tok = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        # Eager attention: the reference math. SDPA, transformers' default, drops options it has
        # no argument for: Gemma 2's attention soft cap (tiny-gemma2 then differed from fusegen
        # by up to 0.05 in every logit row on the GPU machine; its eager goldens agree).
        model = AutoModelForCausalLM.from_pretrained(
            args.model, dtype=dtype, attn_implementation="eager", local_files_only=True).to(device).eval()
    except Exception as e:
        traceback.print_exc()
        send({"error": f"transformers {transformers.__version__} cannot load {args.model}: {one_line(e)}"})
        sys.exit(1)
    ref = Reference(torch, model, tok, device)
    send({"ready": {
        "load_ms": ms_since(t0),
        "model_type": model.config.model_type,
        "dtype": str(model.dtype).replace("torch.", ""),
        "vocab": output_width(model),
        "eos_token_ids": ref.eos_ids,
        "pad_token_id": tok.pad_token_id,
    }})
    return ref


def serve(ref):
    ops = {"tokenize": ref.tokenize, "generate": ref.generate, "score": ref.score}
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        rid = None
        try:
            req = json.loads(raw)
            rid = req.get("id")
            op = req.get("op")
            if op == "shutdown":
                send({"id": rid, "ok": True})
                return
            if op not in ops:
                raise ValueError(f"unknown op {op!r}")
            res = ops[op](req)
            if op == "score":
                send_score(rid, res)
            else:
                send({"id": rid, **res})
        except Exception as e:
            traceback.print_exc()
            send({"id": rid, "error": one_line(e)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    serve(load(ap.parse_args()))


if __name__ == "__main__":
    main()
