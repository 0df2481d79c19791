"""Trains fusegen's second embedded model: a small Llama on the Python standard library's docstrings.

Random weights lack what makes reduced precision hard in trained models (outlier features,
peaked softmaxes, confident logits); this model has them, at a size that can be committed.
The corpus is every docstring that `ast` finds in the interpreter's own standard library
source (PSF license), read without importing anything; the tokenizer is the tiny Llama
fixture's (fixtures/tokenizers.ts: sentencepiece-style BPE, 2342 pieces, byte fallback).
Hugging Face transformers writes the checkpoint (its own config.json, F16 safetensors), and
the script reports the held-out per-token loss and a greedy sample, in train-log.json.

    python3 scripts/train-docstring-llama.py --tokenizer fixtures/models/tiny-llama --out DIR [--seconds 120]
"""
import argparse
import ast
import json
import math
import os
import random
import shutil
import sys
import sysconfig
import time

import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM


def docstrings(root):
    """Every module, class and function docstring under `root`, in a fixed order, and the
    documentation topics pydoc ships (pydoc_data/topics.py: the language reference's text)."""
    out = []
    topics = os.path.join(root, "pydoc_data", "topics.py")
    if os.path.exists(topics):
        for node in ast.walk(ast.parse(open(topics, encoding="utf-8").read())):
            if isinstance(node, ast.Dict):
                out.extend(v.value.strip() for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str) and len(v.value) > 40)
    for d, subdirs, files in os.walk(root):
        subdirs[:] = sorted(s for s in subdirs if s not in ("test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"))
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            try:
                tree = ast.parse(open(os.path.join(d, f), encoding="utf-8").read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 40:
                        out.append(doc.strip())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="a directory holding tokenizer.json, tokenizer_config.json, special_tokens_map.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=120, help="training time budget")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    docs = docstrings(sysconfig.get_paths()["stdlib"])
    random.Random(a.seed).shuffle(docs)
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    bos, eos = 1, 2  # the fixture's <s> and </s>
    ids = []
    for doc in docs:
        ids.extend(tok.encode(doc, add_special_tokens=False).ids + [eos])
    data = torch.tensor(ids, dtype=torch.long)
    held = len(data) // 50  # 2% held out
    train, val = data[:-held], data[-held:]

    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=192, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos,
    )
    model = LlamaForCausalLM(config).to(device)
    params = sum(p.numel() for p in model.parameters())
    seq, batch = 256, 64
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)

    def batch_of(source, n):
        starts = torch.randint(0, len(source) - seq - 1, (n,))
        x = torch.stack([source[s : s + seq + 1] for s in starts]).to(device)
        return x[:, :-1], x[:, 1:]

    def loss_on(source, batches=20):
        model.eval()
        g = torch.Generator().manual_seed(1)
        total = 0.0
        with torch.no_grad():
            for _ in range(batches):
                starts = torch.randint(0, len(source) - seq - 1, (batch,), generator=g)
                x = torch.stack([source[s : s + seq + 1] for s in starts]).to(device)
                with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                    logits = model(x[:, :-1]).logits
                total += torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).item()
        model.train()
        return total / batches

    # Half a million tokens for two million parameters: it would overfit, so the held-out loss is
    # checked every 250 steps and the best weights kept.
    t0, step, log = time.time(), 0, []
    best = (float("inf"), None, 0)
    model.train()
    while time.time() - t0 < a.seconds:
        # Linear warm-up over 100 steps, then cosine over the time budget.
        frac = min(1.0, (time.time() - t0) / a.seconds)
        lr = 3e-3 * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batch_of(train, batch)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(x).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0:
            val_now = loss_on(val, 5)
            log.append({"step": step, "seconds": round(time.time() - t0, 1), "train_loss": round(loss.item(), 4), "held_out_loss": round(val_now, 4)})
            print(json.dumps(log[-1]), file=sys.stderr, flush=True)
            if val_now < best[0]:
                best = (val_now, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
        step += 1

    if best[1] is not None:
        model.load_state_dict(best[1])
    val_loss = loss_on(val)
    model.eval()
    prompt = "Return the"
    x = torch.tensor([[bos] + tok.encode(prompt, add_special_tokens=False).ids], device=device)
    with torch.no_grad():
        sample = model.generate(x, max_new_tokens=40, do_sample=False)
    shutil.rmtree(a.out, ignore_errors=True)
    model.half().save_pretrained(a.out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(a.tokenizer, f), os.path.join(a.out, f))
    report = {
        "corpus": {"docstrings": len(docs), "tokens": len(data), "held_out_tokens": int(held), "source": "Python " + sys.version.split()[0] + " standard library (ast.get_docstring)"},
        "parameters": params,
        "steps": step,
        "kept_step": best[2],
        "seconds": round(time.time() - t0, 1),
        "batch": batch,
        "seq": seq,
        "held_out_loss": round(val_loss, 4),
        "held_out_perplexity": round(math.exp(val_loss), 2),
        "unigram_entropy_nats": round(float(-(torch.bincount(data).float() / len(data)).clamp_min(1e-12).log().mul(torch.bincount(data).float() / len(data)).sum()), 4),
        "greedy_sample": tok.decode(sample[0].tolist()),
        "log": log,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }
    json.dump(report, open(os.path.join(a.out, "train-log.json"), "w"), indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "log"}))


if __name__ == "__main__":
    main()
