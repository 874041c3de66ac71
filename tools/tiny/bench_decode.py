#!/usr/bin/python3
"""PyTorch generation throughput of the exported tiny model, for comparison with Headroom's Java decoder.

A plain KV-cache loop: prefill the prompt (batch, prompt) in one forward that writes the cache, then
one token per forward (greedy argmax) for --generate steps. Prompts are seeded random printable bytes
after <bos> (the content does not change the work). Prints CSV, one row per batch size:
  batch,threads,prompt_tokens,generated_tokens,prefill_s,prompt_tokens_per_s,decode_s,generated_tokens_per_s
where prompt_tokens = batch * prompt and generated_tokens = batch * generate; the times are the median
of --repeats runs after one warm-up run.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see train.py
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import BOS, load_exported  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@torch.no_grad()
def run(model, prompt_ids, generate):
    """Returns (prefill seconds, decode seconds, generated ids (batch, generate))."""
    batch, prompt = prompt_ids.shape
    caches = model.new_caches(batch, prompt + generate)
    t0 = time.perf_counter()
    logits = model(prompt_ids, caches, start=0)  # (batch, prompt, vocab)
    nxt = logits[:, -1].argmax(-1)  # (batch,)
    t1 = time.perf_counter()
    out = [nxt]
    for i in range(generate - 1):
        logits = model(nxt[:, None], caches, start=prompt + i)  # (batch, 1, vocab)
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, torch.stack(out, dim=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default=str(REPO / "src/main/resources/dev/headroom/models/tiny"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens including <bos>")
    p.add_argument("--generate", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, hf = load_exported(args.model_dir, torch.float32)
    if args.prompt + args.generate > hf["max_position_embeddings"]:
        print(f"# note: {args.prompt + args.generate} positions exceed the trained context "
              f"{hf['max_position_embeddings']} (fine for timing)", file=sys.stderr)
    print("batch,threads,prompt_tokens,generated_tokens,prefill_s,prompt_tokens_per_s,decode_s,"
          "generated_tokens_per_s")
    for batch in [int(b) for b in args.batches.split(",")]:
        g = torch.Generator().manual_seed(args.seed)
        prompt_ids = torch.randint(32, 127, (batch, args.prompt), generator=g)
        prompt_ids[:, 0] = BOS
        run(model, prompt_ids, args.generate)  # warm-up
        times = [run(model, prompt_ids, args.generate)[:2] for _ in range(args.repeats)]
        prefill = statistics.median(t[0] for t in times)
        decode = statistics.median(t[1] for t in times)
        # the first generated token comes from the prefill; the loop produces generate - 1 more
        print(f"{batch},{args.threads},{batch * args.prompt},{batch * args.generate},{prefill:.4f},"
              f"{batch * args.prompt / prefill:.1f},{decode:.4f},{batch * (args.generate - 1) / decode:.1f}",
              flush=True)


if __name__ == "__main__":
    main()
