#!/usr/bin/python3
"""Self-checks of model.py, on a small random model (seconds, no corpus needed):

1. the forward pass equals a naive float64 re-implementation written from the formulas
   (per head, per position, explicit loops over keys, GQA by index h // group, RoPE by pairs i, i+hd/2);
2. the KV-cache path (prefill, then one token at a time) equals the full forward;
3. safetensors written and read back are bit-identical and the file layout is as specified.
"""

import json
import math
import os
import struct
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import (Config, TinyLlama, export_tensors, hf_config, load_exported,  # noqa: E402
                   load_safetensors, save_safetensors)


def naive_logits(W, cfg, ids):
    """float64 numpy, one position at a time, written from the formulas in model.py's docstring."""
    D, H, Hkv, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    group = H // Hkv
    n = len(ids)

    def rmsnorm(v, w):
        return v / math.sqrt(float(np.mean(v * v)) + cfg.rms_norm_eps) * w

    def rope(v, pos):  # v (hd,)
        out = v.copy()
        for i in range(hd // 2):
            angle = pos * cfg.rope_theta ** (-2.0 * i / hd)
            c, s = math.cos(angle), math.sin(angle)
            out[i] = v[i] * c - v[i + hd // 2] * s
            out[i + hd // 2] = v[i + hd // 2] * c + v[i] * s
        return out

    x = np.stack([W["model.embed_tokens.weight"][t] for t in ids])  # (n, D)
    for l in range(cfg.num_hidden_layers):
        P = f"model.layers.{l}."
        keys = np.zeros((n, Hkv, hd))
        values = np.zeros((n, Hkv, hd))
        queries = np.zeros((n, H, hd))
        for p in range(n):
            h = rmsnorm(x[p], W[P + "input_layernorm.weight"])
            q = W[P + "self_attn.q_proj.weight"] @ h
            k = W[P + "self_attn.k_proj.weight"] @ h
            v = W[P + "self_attn.v_proj.weight"] @ h
            for j in range(Hkv):
                keys[p, j] = rope(k[j * hd:(j + 1) * hd], p)
                values[p, j] = v[j * hd:(j + 1) * hd]
            for j in range(H):
                queries[p, j] = rope(q[j * hd:(j + 1) * hd], p)
        new_x = x.copy()
        for p in range(n):
            concat = np.zeros(H * hd)
            for j in range(H):
                kv = j // group
                scores = np.array([queries[p, j] @ keys[s, kv] / math.sqrt(hd) for s in range(p + 1)])
                e = np.exp(scores - scores.max())
                a = e / e.sum()
                concat[j * hd:(j + 1) * hd] = sum(a[s] * values[s, kv] for s in range(p + 1))
            new_x[p] = x[p] + W[P + "self_attn.o_proj.weight"] @ concat
            h = rmsnorm(new_x[p], W[P + "post_attention_layernorm.weight"])
            g = W[P + "mlp.gate_proj.weight"] @ h
            u = W[P + "mlp.up_proj.weight"] @ h
            new_x[p] = new_x[p] + W[P + "mlp.down_proj.weight"] @ (g / (1 + np.exp(-g)) * u)
        x = new_x
    x = np.stack([rmsnorm(x[p], W["model.norm.weight"]) for p in range(n)])
    return x @ W["model.embed_tokens.weight"].T  # (n, vocab)


def main():
    torch.manual_seed(0)
    cfg = Config(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=64)
    model = TinyLlama(cfg)
    model.init_weights(3)
    with torch.no_grad():  # non-trivial norm weights, larger matrices, so every term matters
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape) * (0.3 if "norm" in name else 0.1))
    model = model.double().eval()
    ids = [256] + list(b"Hello, jury!") + [257, 256, 65]
    W = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0].numpy()
    ref = naive_logits(W, cfg, ids)
    err = np.abs(ours - ref).max()
    print(f"1. forward vs naive float64: max |diff| {err:.2e} (logit scale {np.abs(ref).max():.2f})")
    assert err < 1e-10, err

    with torch.no_grad():
        caches = model.new_caches(1, len(ids), dtype=torch.float64)
        split = 5
        parts = [model(torch.tensor([ids[:split]]), caches, start=0)[0]]
        for i in range(split, len(ids)):
            parts.append(model(torch.tensor([[ids[i]]]), caches, start=i)[0])
        cached = torch.cat(parts).numpy()
    err = np.abs(cached - ours).max()
    print(f"2. KV cache (prefill {split}, then 1 by 1) vs full forward: max |diff| {err:.2e}")
    assert err < 1e-10, err

    with tempfile.TemporaryDirectory() as tmp:
        model32 = model.float()
        tensors = export_tensors(model32)
        save_safetensors(f"{tmp}/model.safetensors", tensors, {"format": "pt"})
        with open(f"{tmp}/config.json", "w") as f:
            json.dump(hf_config(cfg), f)
        raw = open(f"{tmp}/model.safetensors", "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        assert n % 8 == 0, n
        names = [k for k in header if k != "__metadata__"]
        assert names == sorted(names) and "lm_head.weight" not in names, names
        offsets = [header[k]["data_offsets"] for k in names]
        assert offsets[0][0] == 0 and all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))
        assert offsets[-1][1] == len(raw) - 8 - n
        back, meta = load_safetensors(f"{tmp}/model.safetensors")
        assert meta == {"format": "pt"}
        assert all(np.array_equal(back[k], tensors[k]) for k in tensors) and back.keys() == tensors.keys()
        reloaded, _ = load_exported(tmp, torch.float32)
        with torch.no_grad():
            same = torch.equal(reloaded(torch.tensor([ids])), model32(torch.tensor([ids])))
        assert same
        print(f"3. safetensors: {len(names)} tensors, header {n} bytes, round trip bit-identical")
    print("all checks passed")


if __name__ == "__main__":
    main()
