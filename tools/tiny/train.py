#!/usr/bin/python3
"""Trains the tiny byte-level Llama-style decoder on the Brown corpus and exports it.

Data: per split (brown-split.tsv), the documents in file-name order, each as
<bos> + UTF-8 bytes of its detokenized text + <eos>, concatenated into one stream. A training sample is
a window of ctx+1 consecutive tokens at a random start; the starts of step s come from
numpy.random.default_rng([seed, s]), so any step's batch is reproducible and --resume continues exactly.

Bits per byte (bpb): the stream is cut into consecutive non-overlapping windows of ctx inputs (the last
one shorter); every target token except <bos> is counted once (the bytes and the <eos> of each
document), bpb = sum(-log2 p(target)) / count. The first token of a split is never a target.
Baselines use the same targets: a unigram and an add-k bigram byte model counted on the train stream.

Outputs at the end (unless --no-export): model.safetensors + config.json in --model-dir, the curve as
CSV and PNG, the final numbers in tools/tiny/README.md, then golden.py writes the Java test fixtures.
A checkpoint in --run-dir is written every --ckpt-every steps; --resume continues from it.
"""

import argparse
import csv
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

# Passive OpenMP threads sleep at barriers instead of spinning. On this shared 2-core machine, under
# `nice -n 19`, spinning threads burn the few time slices they get: measured 404-668 tokens/s with
# ACTIVE vs 1029-2655 tokens/s with PASSIVE (--bench-steps 3, interleaved runs, load average 5-8).
# Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import brown  # noqa: E402
from model import (BOS, EOS, VOCAB_SIZE, Config, TinyLlama, export_tensors, hf_config,  # noqa: E402
                   parameter_count, save_safetensors)

REPO = brown.REPO_ROOT
LN2 = math.log(2.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # model
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=640)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--ctx", type=int, default=256, help="context length of a training window")
    # optimisation
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr / peak lr (cosine)")
    p.add_argument("--warmup", type=int, default=150, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW, matrices only (not norms)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2)
    # bookkeeping
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=550)
    p.add_argument("--eval-sample", type=int, default=4,
                   help="periodic dev bpb uses every Nth window of dev (a full dev pass took 410 s "
                        "under load in the trial); the final dev and test bpb use every window")
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--run-dir", default=str(brown.cache_dir() / "tiny-run"),
                   help="checkpoints and the working CSV (outside git)")
    p.add_argument("--resume", action="store_true", help="continue from --run-dir/ckpt.pt")
    p.add_argument("--bench-steps", type=int, default=0,
                   help="only measure: run this many steps (after 2 warm-up steps), print steps/s, exit")
    p.add_argument("--stop-after", type=int, default=0,
                   help="testing --resume: checkpoint and exit after this step")
    p.add_argument("--no-export", action="store_true", help="skip the committed outputs at the end")
    p.add_argument("--model-dir", default=str(REPO / "src/main/resources/dev/headroom/models/tiny"))
    p.add_argument("--csv", default=str(REPO / "docs/results/tiny-training.csv"))
    p.add_argument("--png", default=str(REPO / "docs/tiny-training.png"))
    p.add_argument("--readme", default=str(REPO / "tools/tiny/README.md"),
                   help="its final-results block is rewritten at the end ('' to skip)")
    p.add_argument("--golden-dir", default=str(REPO / "src/test/resources/dev/headroom/models/tiny/golden"),
                   help="golden.py output ('' to skip running golden.py)")
    return p.parse_args(argv)


# ---------------------------------------------------------------- data

def build_streams():
    """split -> np.uint16 token stream (<bos> text <eos> per document, file-name order)."""
    corpus = brown.fetch_corpus()
    split = brown.read_split()
    if sorted(split) != brown.list_files(corpus):
        raise RuntimeError(f"{brown.SPLIT_PATH} does not list exactly the corpus files")
    streams = {}
    for part in ("train", "dev", "test"):
        ids = []
        for name in brown.split_names(split, part):
            ids.append(BOS)
            ids.extend(brown.document_text(corpus, name).encode("utf-8"))
            ids.append(EOS)
        streams[part] = np.asarray(ids, dtype=np.uint16)
    return streams


def batch_for_step(stream, step, seed, batch, ctx):
    """(x, y) each (batch, ctx) int64: windows at starts drawn by default_rng([seed, step])."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(stream) - ctx - 1, size=batch, endpoint=True)
    idx = starts[:, None] + np.arange(ctx + 1)[None, :]  # (batch, ctx+1)
    windows = torch.from_numpy(stream[idx].astype(np.int64))
    return windows[:, :-1], windows[:, 1:]


def counted(targets):
    """Mask of the targets that bits per byte counts: every token except <bos>."""
    return targets != BOS


# ---------------------------------------------------------------- baselines

def baselines(streams):
    """Unigram (add-1) and add-k bigram models counted on train; k chosen on dev from a small grid.
    Returns dict of bpb per split, over the same targets as the model's bpb."""
    V = VOCAB_SIZE
    train = streams["train"].astype(np.int64)
    uni = np.bincount(train[1:], minlength=V).astype(np.float64)  # counts of train targets
    p_uni = (uni + 1.0) / (uni.sum() + V)
    pair = np.zeros((V, V), dtype=np.float64)
    np.add.at(pair, (train[:-1], train[1:]), 1.0)

    def bpb_unigram(s):
        t = s[1:].astype(np.int64)
        t = t[t != BOS]
        return float(-np.log2(p_uni[t]).mean())

    def bpb_bigram(s, k):
        prev, t = s[:-1].astype(np.int64), s[1:].astype(np.int64)
        keep = t != BOS
        prev, t = prev[keep], t[keep]
        p = (pair[prev, t] + k) / (pair[prev].sum(axis=1) + k * V)
        return float(-np.log2(p).mean())

    grid = [0.001, 0.01, 0.03, 0.1, 0.3, 1.0]
    k = min(grid, key=lambda kk: bpb_bigram(streams["dev"], kk))
    out = {"bigram_k": k}
    for part in ("dev", "test"):
        out[f"unigram_{part}_bpb"] = bpb_unigram(streams[part])
        out[f"bigram_{part}_bpb"] = bpb_bigram(streams[part], k)
    return out


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_bpb(model, stream, ctx, batch=32, every=1):
    """Bits per byte over non-overlapping windows of ctx inputs (see module docstring).
    every > 1 keeps only windows 0, every, 2*every, ... (the periodic dev estimate)."""
    model.eval()
    s = torch.from_numpy(stream.astype(np.int64))
    n_targets = len(s) - 1
    starts = list(range(0, n_targets, ctx))[::every]
    total_bits = 0.0
    total_count = 0
    full = [i for i in starts if i + ctx <= n_targets]
    rest = [i for i in starts if i + ctx > n_targets]
    for b in range(0, len(full), batch):
        idx = torch.tensor(full[b:b + batch])[:, None] + torch.arange(ctx + 1)[None, :]
        w = s[idx]  # (b, ctx+1)
        bits, count = window_bits(model, w[:, :-1], w[:, 1:])
        total_bits += bits
        total_count += count
    for i in rest:
        w = s[i:][None, :]  # (1, n_targets - i + 1)
        bits, count = window_bits(model, w[:, :-1], w[:, 1:])
        total_bits += bits
        total_count += count
    model.train()
    return total_bits / total_count


def window_bits(model, x, y):
    logits = model(x).to(torch.float64)  # (B, T, V)
    nll = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1), reduction="none")
    mask = counted(y.reshape(-1))
    return float(nll[mask].sum()) / LN2, int(mask.sum())


# ---------------------------------------------------------------- optimisation

def lr_at(step, args):
    """Linear warmup to --lr over --warmup steps, then cosine down to --lr * --min-lr-ratio."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, args):
    decay = [p for n, p in sorted(model.named_parameters()) if p.dim() >= 2]
    no_decay = [p for n, p in sorted(model.named_parameters()) if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_config(args):
    return Config(hidden_size=args.hidden, intermediate_size=args.intermediate,
                  num_hidden_layers=args.layers, num_attention_heads=args.heads,
                  num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
                  max_position_embeddings=args.ctx)


# Arguments that must match for --resume to continue the same run.
RUN_IDENTITY = ["hidden", "intermediate", "layers", "heads", "kv_heads", "head_dim", "ctx", "steps",
                "batch", "lr", "min_lr_ratio", "warmup", "weight_decay", "clip", "seed"]


def save_checkpoint(path, model, optimizer, step, rows, elapsed, args):
    tmp = f"{path}.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "rows": rows, "elapsed": elapsed,
                "identity": {k: getattr(args, k) for k in RUN_IDENTITY}}, tmp)
    os.replace(tmp, path)


# dev_bpb: periodic estimate on every --eval-sample-th dev window (empty on rows without evaluation)
CSV_FIELDS = ["step", "train_loss", "train_bits_per_token", "dev_bpb", "lr", "elapsed_s"]


def write_csv(path, rows):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def plot(path, rows, base, title, eval_sample):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [r["step"] for r in rows]
    train = [r["train_bits_per_token"] for r in rows]
    dev = [(r["step"], r["dev_bpb"]) for r in rows if r["dev_bpb"] != ""]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(steps, train, lw=1, label="train (bits per token, batch mean)")
    if dev:
        ax.plot([d[0] for d in dev], [d[1] for d in dev], "o-", ms=3,
                label=f"dev bits per byte (every {eval_sample}th window)")
    ax.axhline(base["bigram_dev_bpb"], ls="--", c="gray", lw=1,
               label=f"bigram baseline, dev ({base['bigram_dev_bpb']:.3f})")
    ax.axhline(base["unigram_dev_bpb"], ls=":", c="gray", lw=1,
               label=f"unigram baseline, dev ({base['unigram_dev_bpb']:.3f})")
    ax.set_xlabel("step")
    ax.set_ylabel("bits")
    ax.set_ylim(0.8, 5.0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    streams = build_streams()
    tokens = {k: len(v) for k, v in streams.items()}
    print(f"streams (tokens): {tokens}", flush=True)
    cfg = model_config(args)
    model = TinyLlama(cfg)
    model.init_weights(args.seed)
    n_params = parameter_count(model)
    print(f"config {cfg}\nparameters {n_params} ({4 * n_params / 1e6:.2f} MB float32)", flush=True)
    optimizer = make_optimizer(model, args)
    tokens_per_step = args.batch * args.ctx

    if args.bench_steps:
        model.train()
        for step in range(args.bench_steps + 2):
            if step == 2:
                t0 = time.time()
            x, y = batch_for_step(streams["train"], step, args.seed, args.batch, args.ctx)
            loss = F.cross_entropy(model(x).reshape(-1, VOCAB_SIZE), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
        dt = time.time() - t0
        t1 = time.time()
        evaluate_bpb(model, streams["dev"][:64 * args.ctx + 1], args.ctx)
        eval_dt = time.time() - t1
        print(f"bench: params {n_params} threads {args.threads} batch {args.batch} ctx {args.ctx}: "
              f"{args.bench_steps / dt:.4f} steps/s, {args.bench_steps * tokens_per_step / dt:.0f} tokens/s; "
              f"eval {64 * args.ctx / eval_dt:.0f} tokens/s; loss {loss.item():.3f}", flush=True)
        return

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "ckpt.pt"
    start_step, rows, elapsed_before = 0, [], 0.0
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path)
        want = {k: getattr(args, k) for k in RUN_IDENTITY}
        if ckpt["identity"] != want:
            sys.exit(f"--resume: checkpoint was made with {ckpt['identity']}, now {want}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_step, rows, elapsed_before = ckpt["step"], ckpt["rows"], ckpt["elapsed"]
        print(f"resumed at step {start_step} ({elapsed_before:.0f} s before)", flush=True)
    elif ckpt_path.exists():
        sys.exit(f"{ckpt_path} exists: pass --resume to continue it, or delete it to start over")

    base = baselines(streams)
    print("baselines: " + json.dumps(base), flush=True)

    t_start = time.time()

    def elapsed():
        return elapsed_before + time.time() - t_start

    model.train()
    losses = []
    step = start_step
    while step < args.steps:
        lr = lr_at(step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = batch_for_step(streams["train"], step, args.seed, args.batch, args.ctx)
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        is_eval = step % args.eval_every == 0 or step == args.steps
        if step % args.log_every == 0 or is_eval:
            dev = evaluate_bpb(model, streams["dev"], args.ctx, every=args.eval_sample) if is_eval else ""
            mean_loss = sum(losses) / len(losses)
            losses = []
            rows.append({"step": step, "train_loss": round(mean_loss, 5),
                         "train_bits_per_token": round(mean_loss / LN2, 5),
                         "dev_bpb": "" if dev == "" else round(dev, 5), "lr": f"{lr:.3e}",
                         "elapsed_s": round(elapsed(), 1)})
            rate = (step - start_step) * tokens_per_step / (time.time() - t_start)
            print(f"step {step}/{args.steps} loss {mean_loss:.4f} lr {lr:.2e} "
                  + (f"dev_bpb {dev:.4f} " if dev != "" else "")
                  + f"elapsed {elapsed():.0f}s {rate:.0f} tok/s", flush=True)
            write_csv(run_dir / "curve.csv", rows)
        if step % args.ckpt_every == 0 or is_eval or step == args.stop_after:
            save_checkpoint(ckpt_path, model, optimizer, step, rows, elapsed(), args)
        if step == args.stop_after:
            print(f"stopped after step {step} (--stop-after)", flush=True)
            return

    train_seconds = elapsed()
    dev_bpb = evaluate_bpb(model, streams["dev"], args.ctx)
    test_bpb = evaluate_bpb(model, streams["test"], args.ctx)
    print(f"final dev_bpb {dev_bpb:.4f} test_bpb {test_bpb:.4f} "
          f"(bigram test {base['bigram_test_bpb']:.4f}, unigram test {base['unigram_test_bpb']:.4f})",
          flush=True)
    if args.no_export:
        write_csv(run_dir / "curve.csv", rows)
        plot(run_dir / "curve.png", rows, base, "trial run", args.eval_sample)
        return

    summary = {
        "tokenizer": {"type": "bytes", "bytes": "ids 0-255 are the UTF-8 bytes", "bos": BOS, "eos": EOS},
        "rope_layout": "halves",
        "rope_layout_note": "Hugging Face rotate_half: feature i pairs with i + head_dim/2, "
                            "frequency theta^(-2i/head_dim), positions start at 0 at <bos>",
        "gqa": "query head h uses kv head h // (num_attention_heads / num_key_value_heads)",
        "corpus": f"{brown.PACKAGE}@{brown.VERSION} (npm, tgz sha256 {brown.TGZ_SHA256})",
        "split_file": "src/main/resources/dev/headroom/corpus/brown-split.tsv",
        "split_sha256": brown.split_sha256(),
        "stream_tokens": tokens,
        "seed": args.seed, "steps": args.steps, "batch": args.batch, "context": args.ctx,
        "tokens_seen": args.steps * tokens_per_step,
        "lr": args.lr, "min_lr_ratio": args.min_lr_ratio, "warmup": args.warmup,
        "weight_decay": args.weight_decay, "clip": args.clip, "threads": args.threads,
        "parameters": n_params,
        "train_seconds": round(train_seconds, 1),
        "bpb_definition": "non-overlapping windows of `context` inputs over the split stream; "
                          "every target except <bos> counted once; bits = -log2 softmax; the "
                          "periodic dev_bpb of the CSV uses every eval_sample-th window only",
        "eval_sample": args.eval_sample,
        "final_dev_bpb": round(dev_bpb, 5), "final_test_bpb": round(test_bpb, 5),
        "baselines": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in base.items()},
    }
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_safetensors(model_dir / "model.safetensors", export_tensors(model),
                     metadata={"format": "pt", "source": "tools/tiny/train.py"})
    config = hf_config(cfg)
    config["headroom"] = summary
    with open(model_dir / "config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    write_csv(args.csv, rows)
    plot(args.png, rows, base,
         f"tiny byte decoder, {n_params / 1e6:.2f}M parameters, {args.steps} steps x {tokens_per_step} tokens; "
         f"final dev {dev_bpb:.3f}, test {test_bpb:.3f} bits/byte", args.eval_sample)
    print(f"wrote {model_dir}/model.safetensors, config.json, {args.csv}, {args.png}", flush=True)
    if args.readme:
        update_readme(args.readme, summary, model_dir)
    if args.golden_dir:
        subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "golden.py"),
                        "--model-dir", str(model_dir), "--out-dir", args.golden_dir,
                        "--threads", str(args.threads)], check=True)


BEGIN, END = "<!-- final-results:begin -->", "<!-- final-results:end -->"


def update_readme(path, s, model_dir):
    """Rewrites the block between the final-results markers with the numbers of this run."""
    text = Path(path).read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"{path}: no final-results markers, not updated", flush=True)
        return
    b = s["baselines"]
    block = "\n".join([
        BEGIN,
        f"Written by train.py at the end of the run ({time.strftime('%Y-%m-%d %H:%M %Z')}):",
        "",
        "| model | dev bits/byte | test bits/byte |",
        "|---|---|---|",
        f"| unigram byte model (add-1, train counts) | {b['unigram_dev_bpb']:.4f} | {b['unigram_test_bpb']:.4f} |",
        f"| bigram byte model (add-k, k={b['bigram_k']} chosen on dev) | {b['bigram_dev_bpb']:.4f} | {b['bigram_test_bpb']:.4f} |",
        f"| this model, {s['parameters']} parameters, {s['steps']} steps | {s['final_dev_bpb']:.4f} | {s['final_test_bpb']:.4f} |",
        "",
        f"Training took {s['train_seconds'] / 3600:.2f} h of wall time ({s['tokens_seen']} tokens seen, "
        f"{s['tokens_seen'] / s['stream_tokens']['train']:.2f} epochs of the train stream); "
        f"split sha256 `{s['split_sha256']}`; weights sha256 `{file_sha256(Path(model_dir) / 'model.safetensors')}`.",
        END])
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    Path(path).write_text(text[:start] + block + text[stop:], encoding="utf-8")


if __name__ == "__main__":
    main()
