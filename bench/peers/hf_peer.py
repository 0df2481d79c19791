"""Hugging Face transformers (PyTorch) on the same checkpoints: the peer for fusegen's bench.

Same protocol as `fusegen bench`: prompts of exactly --prompt_length token ids, --max_new_tokens
generated greedily with end-of-sequence ignored (min_new_tokens = max_new_tokens), one warm-up,
--repeats measured runs, CUDA synchronized around each. Time to first token is a run of
max_new_tokens=1 (prefill plus one token); time per output token is
(latency - TTFT) / (new tokens - 1), as vLLM and GenAI-Perf define it.

  python3 bench/peers/hf_peer.py --model /tmp/llama-1.1b --batch_sizes 1,8 [--compile] --out peer.json

--compile: static KV cache and torch.compile(mode="max-autotune-no-cudagraphs") of the forward,
the fastest documented eager-free setting that keeps Hugging Face's own generate loop. A
1-token run would size a new static cache and recompile, so there TTFT is taken inside the
full-length runs instead: the time at which generate hands its first new token to a streamer
(it copies the token to the host first, which waits for the GPU).
"""
import argparse
import json
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1000


class FirstToken:
    """A generate streamer that notes when the first generated token arrives (put() is first called with the prompt)."""

    def __init__(self):
        self.calls = 0
        self.at = None

    def put(self, _value):
        self.calls += 1
        if self.calls == 2:
            self.at = time.perf_counter()

    def end(self):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch_sizes", default="1,8")
    ap.add_argument("--prompt_length", type=int, default=16)
    ap.add_argument("--max_new_tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float16).cuda().eval()
    mode = "eager"
    if a.compile:
        model.generation_config.cache_implementation = "static"
        model.generation_config.disable_compile = True  # generate's own auto-compile would use CUDA graphs; ours is the only one
        model.forward = torch.compile(model.forward, mode="max-autotune-no-cudagraphs")
        mode = "static-cache+compile"
    load_ms = (time.perf_counter() - t0) * 1000
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    rows = []
    for batch in [int(b) for b in a.batch_sizes.split(",")]:
        ids = torch.randint(3, min(vocab, 2000), (batch, a.prompt_length), generator=g).cuda()
        mask = torch.ones_like(ids)

        def gen(n, streamer=None):
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, streamer=streamer)

        t_warm = timed(lambda: gen(a.max_new_tokens))  # warm-up (compiles with --compile)
        if a.compile:
            ttft, e2e = [], []
            for _ in range(a.repeats):
                first = FirstToken()
                torch.cuda.synchronize()
                t = time.perf_counter()
                gen(a.max_new_tokens, first)
                torch.cuda.synchronize()
                e2e.append((time.perf_counter() - t) * 1000)
                ttft.append((first.at - t) * 1000)
        else:
            timed(lambda: gen(1))
            ttft = [timed(lambda: gen(1)) for _ in range(a.repeats)]
            e2e = [timed(lambda: gen(a.max_new_tokens)) for _ in range(a.repeats)]
        tpot = (statistics.median(e2e) - statistics.median(ttft)) / (a.max_new_tokens - 1)
        rows.append({
            "pipeline": f"hf-pytorch-{mode}",
            "batch": batch,
            "promptLength": a.prompt_length,
            "maxNewTokens": a.max_new_tokens,
            "warmupMs": t_warm,
            "ttftMsMedian": statistics.median(ttft),
            "e2eMsMedian": statistics.median(e2e),
            "tpotMs": tpot,
            "decodeTokensPerSec": batch * 1000 / tpot,
        })
        write(a, model, load_ms, rows)  # after every batch size: a run cut short keeps what it measured
        print(f"{a.model} {mode} batch {batch}: TTFT {statistics.median(ttft):.2f} ms, TPOT {tpot:.3f} ms, {batch * 1000 / tpot:.1f} tokens/s (warm-up {t_warm / 1000:.1f} s)", flush=True)


def write(a, model, load_ms, rows):
    report = {
        "schema": "fusegen.peer/1",
        "model": a.model,
        "modelType": model.config.model_type,
        "dtype": "float16",
        "loadMs": load_ms,
        "environment": {"torch": torch.__version__, "transformers": __import__("transformers").__version__, "gpu": torch.cuda.get_device_name()},
        "rows": rows,
    }
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
