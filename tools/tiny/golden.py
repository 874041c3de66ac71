#!/usr/bin/python3
"""Golden fixtures for the Java implementation, computed from the EXPORTED weights only.

Loads config.json + model.safetensors (never the training checkpoint), and for each fixed prompt
(token ids = <bos> + UTF-8 bytes, positions 0 .. n-1) writes
  <name>.logits.f64.npy   (n, vocab) float32: logits of the float64 model (weights widened exactly)
  <name>.logits.f32.npy   (n, vocab) float32: logits of the float32 model
and golden.json with the prompts, their ids, the greedy continuation of the float32 model (64 tokens,
plain argmax over the full-sequence forward at each step, stop after <eos>), the smallest top-1 minus
top-2 logit margin met while generating (a small margin means a near tie that float rounding can flip),
and the largest |f32 - f64| logit difference per prompt.
"""

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see train.py
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import EOS, decode, encode, load_exported  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Fixed prompts. RANDOM was drawn once, "".join(random.Random(7).choices(ascii_letters + digits, k=16)),
# and is written out so the fixtures never depend on a generator's implementation.
RANDOM = "ujOeHwdFcAefAZhn"
PROMPTS = [
    ("jury", "The jury said"),
    ("repeat", f"Code {RANDOM} again: {RANDOM} and once more: {RANDOM}"),
    ("quotes", "\"Only a relative handful of such reports was received\", the jury said; "
               "(it met on Friday) -- wasn't it?"),
    # 183 bytes, not from the corpus; with <bos> and 64 generated tokens it fits the 256 positions
    ("long", "After the meeting on Tuesday, the committee said that the new budget would be sent to the "
             "Governor, and that members of both parties \"expect a long and difficult session\" this "
             "spring."),
    ("utf8", "Caf\u00e9 na\u00efve \u2014 1961 \u00bd"),
]
CONTINUATION = 64


@torch.no_grad()
def greedy(model, ids, steps):
    """Greedy continuation: full forward each step, argmax of the last position, stop after <eos>."""
    ids = list(ids)
    out, margins = [], []
    for _ in range(steps):
        logits = model(torch.tensor([ids]))[0, -1]  # (vocab,)
        top2 = torch.topk(logits, 2).values
        margins.append(float(top2[0] - top2[1]))
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        ids.append(nxt)
        if nxt == EOS:
            break
    return out, min(margins)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", default=str(REPO / "src/main/resources/dev/headroom/models/tiny"))
    p.add_argument("--out-dir", default=str(REPO / "src/test/resources/dev/headroom/models/tiny/golden"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model32, hf = load_exported(args.model_dir, torch.float32)
    model64, _ = load_exported(args.model_dir, torch.float64)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(Path(args.model_dir) / "model.safetensors", "rb") as f:
        weights_sha = hashlib.sha256(f.read()).hexdigest()
    fixtures = []
    for name, text in PROMPTS:
        ids = encode(text)
        assert len(ids) + CONTINUATION <= hf["max_position_embeddings"], (name, len(ids))
        with torch.no_grad():
            l64 = model64(torch.tensor([ids]))[0]  # (n, vocab) float64
            l32 = model32(torch.tensor([ids]))[0]  # (n, vocab) float32
        np.save(out_dir / f"{name}.logits.f64.npy", l64.numpy().astype(np.float32))
        np.save(out_dir / f"{name}.logits.f32.npy", l32.numpy().astype(np.float32))
        cont, margin = greedy(model32, ids, CONTINUATION)
        diff = float((l32.double() - l64).abs().max())
        fixtures.append({
            "name": name, "prompt": text, "prompt_ids": ids, "n": len(ids),
            "logits_f64": f"{name}.logits.f64.npy", "logits_f32": f"{name}.logits.f32.npy",
            "max_abs_diff_f32_vs_f64": diff,
            "argmax_last_f64": int(torch.argmax(l64[-1])),
            "continuation_ids": cont, "continuation_text": decode(cont),
            "continuation_min_top2_margin": margin,
        })
        print(f"{name}: n={len(ids)} |f32-f64|max={diff:.2e} min margin {margin:.3f} -> {decode(cont)!r}",
              flush=True)
    doc = {
        "model_dir": "src/main/resources/dev/headroom/models/tiny",
        "weights_sha256": weights_sha,
        "tokens": "ids 0-255 = UTF-8 bytes, 256 = <bos> (first id of every prompt, position 0), 257 = <eos>",
        "logits": "(n, vocab) row-major float32 .npy: row i = next-token logits after prompt_ids[0..i]",
        "greedy": f"float32 model, full forward each step, argmax (lowest id on ties), at most "
                  f"{CONTINUATION} tokens, stops after emitting <eos>",
        "torch": torch.__version__,
        "fixtures": fixtures,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    # one line per id list instead of one line per id
    text = re.sub(r"\[[\d,\s]+\]", lambda m: json.dumps(json.loads(m.group(0))), text)
    with open(out_dir / "golden.json", "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(f"wrote {out_dir}", flush=True)


if __name__ == "__main__":
    main()
