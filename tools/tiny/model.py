"""A Llama-style byte-level decoder, written plainly, plus the safetensors reader/writer.

The math, per layer l, for hidden states x (B, T, D) at absolute positions p = start .. start+T-1:

    h   = rmsnorm(x) * input_layernorm            rmsnorm(x) = x / sqrt(mean(x^2 over D) + 1e-5)
    q   = h Wq^T  (B, T, H,  hd)   k = h Wk^T (B, T, Hkv, hd)   v = h Wv^T (B, T, Hkv, hd)
    q,k = rope(q, p), rope(k, p)                  "halves" layout, see rope() below
    s   = (q / sqrt(hd)) k^T + causal mask        query head h reads kv head h // (H / Hkv)
    a   = softmax(s) v, heads concatenated        (B, T, H * hd)
    x   = x + a Wo^T
    h   = rmsnorm(x) * post_attention_layernorm
    x   = x + Wdown^T (silu(h Wgate^T) * (h Wup^T))
then logits = (rmsnorm(x) * norm) E^T with E = embed_tokens (tied input/output embedding).

Weights use PyTorch's Linear convention, W (out_features, in_features), and Hugging Face's Llama key
names, so the exported safetensors file reads like a Hugging Face Llama checkpoint.
"""

import json
import math
import struct
from dataclasses import dataclass, asdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB_SIZE = 258  # ids 0-255: bytes; 256: <bos>; 257: <eos>
BOS = 256
EOS = 257


def encode(text_or_bytes, bos=True):
    """Bytes (or the UTF-8 bytes of a str) as token ids, optionally preceded by <bos>."""
    data = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else bytes(text_or_bytes)
    return ([BOS] if bos else []) + list(data)


def decode(ids):
    """Token ids back to text; <bos>/<eos> are dropped, invalid UTF-8 shows as U+FFFD."""
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@dataclass
class Config:
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    head_dim: int = 32
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    vocab_size: int = VOCAB_SIZE
    max_position_embeddings: int = 256

    def __post_init__(self):
        assert self.num_attention_heads * self.head_dim == self.hidden_size, self
        assert self.num_attention_heads % self.num_key_value_heads == 0, self
        assert self.head_dim % 2 == 0, self


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # computed in the input's dtype (float32 in training, float64 for the golden reference)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cos_sin(positions, head_dim, theta, dtype):
    """cos, sin (T, head_dim) for the "halves" (Hugging Face rotate_half) layout.

    inv_freq[i] = theta^(-2i / head_dim) for i < head_dim / 2; angle[p, i] = p * inv_freq[i];
    features i and i + head_dim/2 share frequency i, so the table repeats its first half.
    Computed in float64 and rounded once to `dtype`, so float32 and float64 models use the same angles.
    """
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (T, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hd)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope(x, cos, sin):
    """x (B, heads, T, hd): x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1].

    For i < hd/2:  out[i]        = x[i] cos(p w_i) - x[i + hd/2] sin(p w_i)
                   out[i + hd/2] = x[i + hd/2] cos(p w_i) + x[i] sin(p w_i)
    """
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        d = cfg.hidden_size
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin, cache=None, start=0):
        """x (B, T, D) at positions start .. start+T-1; cache = (k_cache, v_cache), each
        (B, Hkv, max_len, hd), is written at [start, start+T) and read over [0, start+T)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        q = rope(q, cos, sin)
        k = rope(k, cos, sin)
        if cache is not None:
            k_cache, v_cache = cache
            k_cache[:, :, start:start + T] = k
            v_cache[:, :, start:start + T] = v
            k = k_cache[:, :, :start + T]  # (B, Hkv, S, hd), S = start + T
            v = v_cache[:, :, :start + T]
        S = k.shape[2]
        # Grouped-query attention: query head h reads kv head h // group (Hugging Face repeat_kv).
        # Heads h = j*group .. j*group+group-1 are adjacent in q, so viewing q as (B, Hkv, group*T, hd)
        # lets each kv head serve its whole group in one matmul without copying k and v.
        group = self.n_heads // self.n_kv_heads
        q = q.reshape(B, self.n_kv_heads, group * T, self.head_dim)  # (B, Hkv, group*T, hd)
        # q k^T / sqrt(hd): the scale is applied to q (exact when hd is a power of 4, e.g. 64 -> 1/8)
        scores = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)  # (B, Hkv, group*T, S)
        if T > 1:
            # query at position start+i sees keys at positions <= start+i
            allowed = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=start)  # (T, S)
            scores = scores.view(B, self.n_kv_heads, group, T, S).masked_fill(~allowed, float("-inf"))
            scores = scores.view(B, self.n_kv_heads, group * T, S)
        weights = torch.softmax(scores, dim=-1)  # plain softmax over S
        out = weights @ v  # (B, Hkv, group*T, hd)
        out = out.view(B, self.n_heads, T, self.head_dim)  # (B, H, T, hd)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H*hd)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cache=None, start=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, start)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class Inner(nn.Module):
    """Holds the weights under the names Hugging Face's LlamaModel uses (`model.` prefix)."""

    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class TinyLlama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg)

    def init_weights(self, seed):
        """Normal(0, 0.02) for every matrix, 0.02 / sqrt(2 * layers) for the two projections that
        write into the residual stream (GPT-2's scaling), ones for the norms."""
        g = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.cfg.num_hidden_layers)
        for name, p in sorted(self.named_parameters()):
            with torch.no_grad():
                if name.endswith("layernorm.weight") or name == "model.norm.weight":
                    p.fill_(1.0)
                else:
                    std = residual_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * std)

    def forward(self, ids, caches=None, start=0):
        """ids (B, T) at positions start .. start+T-1 -> logits (B, T, vocab)."""
        T = ids.shape[1]
        x = self.model.embed_tokens(ids)  # (B, T, D)
        positions = torch.arange(start, start + T)
        cos, sin = rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)  # (T, hd)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i], start)
        x = self.model.norm(x)
        return x @ self.model.embed_tokens.weight.t()  # tied output embedding: (B, T, vocab)

    def new_caches(self, batch, max_len, dtype=torch.float32):
        """Per layer (k_cache, v_cache), each (batch, kv_heads, max_len, head_dim), zeroed."""
        shape = (batch, self.cfg.num_key_value_heads, max_len, self.cfg.head_dim)
        return [(torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype))
                for _ in range(self.cfg.num_hidden_layers)]


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- safetensors, written by hand

def save_safetensors(path, tensors, metadata=None):
    """tensors: name -> float32 array. Header sorted by name, data laid out in that order, no holes,
    header padded with spaces to a multiple of 8 bytes."""
    header = {}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        blobs.append(array.tobytes())
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def load_safetensors(path):
    """name -> float32 numpy array, metadata dict; checks that the buffer is fully indexed."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} has dtype {info['dtype']}, expected F32")
        begin, stop = info["data_offsets"]
        if begin != end:
            raise ValueError(f"{path}: {name} starts at {begin}, previous tensor ended at {end}")
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        if stop - begin != 4 * count:
            raise ValueError(f"{path}: {name} spans {stop - begin} bytes for shape {info['shape']}")
        tensors[name] = np.frombuffer(body[begin:stop], dtype="<f4").reshape(info["shape"]).copy()
        end = stop
    if end != len(body):
        raise ValueError(f"{path}: tensors cover {end} bytes of a {len(body)}-byte buffer")
    return tensors, metadata


def export_tensors(model):
    """The Hugging Face Llama state dict as float32 numpy arrays (no lm_head: embeddings are tied)."""
    return {name: p.detach().to(torch.float32).numpy() for name, p in model.state_dict().items()}


HF_FIELDS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "vocab_size",
             "max_position_embeddings"]


def hf_config(cfg):
    out = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
           "tie_word_embeddings": True, "bos_token_id": BOS, "eos_token_id": EOS,
           "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32"}
    out.update({k: asdict(cfg)[k] for k in HF_FIELDS})
    return out


def load_exported(directory, dtype=torch.float32):
    """A TinyLlama built from config.json + model.safetensors in `directory`, in `dtype`, eval mode."""
    with open(f"{directory}/config.json", "r", encoding="utf-8") as f:
        hf = json.load(f)
    cfg = Config(**{k: hf[k] for k in HF_FIELDS})
    model = TinyLlama(cfg)
    tensors, _ = load_safetensors(f"{directory}/model.safetensors")
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval(), hf
