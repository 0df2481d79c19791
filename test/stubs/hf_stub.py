#!/usr/bin/env python3
"""A stand-in for src/pipeline/hf_reference.py: the same line protocol, no torch, fake outputs.

The outputs are deterministic functions of the request, so a test can tell which request an
answer belongs to:
  tokenize  [2] + one id per word: 3 + (sum of the word's code points) % 40
  generate  new ids (last prompt id + i + 1) % V; step i's top-k: ids new_id + j, values 10 - j
  score     logit[p][v] = row[p] % 7 + p / 2 + v / 4 (exact in float32)
V is the checkpoint's vocab_size, or FUSEGEN_STUB_VOCAB.

Misbehaviour on demand (environment):
  FUSEGEN_STUB_STARTUP=stall|exit   hello, then never ready | exit 7 before hello, a traceback on stderr
  FUSEGEN_STUB_REVERSE=N            collect N requests, then answer them last first
  FUSEGEN_STUB_FAIL_OP=op           answer that op with an error line
  FUSEGEN_STUB_HANG_OP=op           on that op: touch FUSEGEN_STUB_MARK, then sleep forever
  FUSEGEN_STUB_IGNORE_SHUTDOWN=1    answer shutdown, then keep running
  FUSEGEN_STUB_PIDFILE=path         write the pid there
"""
import argparse
import array
import base64
import json
import os
import sys
import time

env = os.environ.get


def send(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def sleep_forever():
    while True:
        time.sleep(60)


def tokenize(prompts):
    return [[2] + [3 + sum(map(ord, w)) % 40 for w in p.split()] for p in prompts]


def generate(req, vocab):
    rows = req.get("prompt_ids") or tokenize(req["prompts"])
    n, k = req["max_new_tokens"], req.get("top_k") or 0
    out = []
    for r in rows:
        new = [(r[-1] + i + 1) % vocab for i in range(n)]
        row = {
            "prompt_ids": r,
            "new_ids": new,
            "finish_reason": "length",
            "text": "stub " + " ".join(map(str, r + new)),
            "generated_text": " ".join(map(str, new)),
        }
        if k:
            row["top_k"] = [{"ids": [(t + j) % vocab for j in range(k)], "values": [10.0 - j for j in range(k)]} for t in new]
        out.append(row)
    return {
        "prompt_length": max(len(r) for r in rows),
        "steps": n,
        "rows": out,
        "timings": {"first_token_ms": 1.0, "decode_step_ms": [0.5] * (n - 1), "total_ms": 1.0 + 0.5 * (n - 1)},
    }


def score(req, vocab):
    base = [v / 4 for v in range(vocab)]
    logits = []
    for row, f in zip(req["rows"], req["from"]):
        data = array.array("f")
        for p in range(f, len(row)):
            off = row[p] % 7 + p / 2
            data.extend([off + b for b in base])
        if sys.byteorder != "little":
            data.byteswap()
        logits.append(base64.b64encode(data.tobytes()).decode())
    return {"vocab": vocab, "logits": logits}


def answer(req, vocab):
    rid, op = req.get("id"), req.get("op")
    if op == env("FUSEGEN_STUB_FAIL_OP"):
        return {"id": rid, "error": "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n(a second line that must not show)"}
    if op == env("FUSEGEN_STUB_HANG_OP"):
        print(f"stub: hanging in {op}", file=sys.stderr, flush=True)
        open(env("FUSEGEN_STUB_MARK"), "w").close()
        sleep_forever()
    if op == "tokenize":
        return {"id": rid, "ids": tokenize(req["prompts"])}
    if op == "generate":
        return {"id": rid, **generate(req, vocab)}
    if op == "score":
        return {"id": rid, **score(req, vocab)}
    return {"id": rid, "error": f"ValueError: unknown op {op!r}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    if env("FUSEGEN_STUB_PIDFILE"):
        with open(env("FUSEGEN_STUB_PIDFILE"), "w") as f:
            f.write(str(os.getpid()))
    if env("FUSEGEN_STUB_STARTUP") == "exit":
        print("Traceback (most recent call last):\nRuntimeError: stub cannot load the model", file=sys.stderr, flush=True)
        sys.exit(7)
    with open(os.path.join(a.model, "config.json")) as f:
        vocab = int(env("FUSEGEN_STUB_VOCAB") or json.load(f)["vocab_size"])
    send({"hello": {"python": "3.0-stub", "torch": "0.0-stub", "transformers": "0.0-stub", "device": "cpu", "device_name": "stub cpu"}})
    if env("FUSEGEN_STUB_STARTUP") == "stall":
        sleep_forever()
    send({"ready": {"load_ms": 1.0, "model_type": "stub", "dtype": a.dtype, "vocab": vocab, "eos_token_ids": [2], "pad_token_id": 1}})
    batch = int(env("FUSEGEN_STUB_REVERSE") or 1)
    held = []
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("op") == "shutdown":
            send({"id": req.get("id"), "ok": True})
            if env("FUSEGEN_STUB_IGNORE_SHUTDOWN"):
                sleep_forever()
            return
        held.append(req)
        if len(held) == batch:
            for r in reversed(held):
                send(answer(r, vocab))
            held = []


if __name__ == "__main__":
    main()
