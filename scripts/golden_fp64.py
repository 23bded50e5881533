#!/usr/bin/env python3
"""An independent float64 forward of the golden Qwen3-MoE model (numpy only, no torch).

Reads tests/data/golden (model/, golden.safetensors), runs every golden prompt followed by its 16
fp32 greedy ids through one float64 pass (no cache: the rows are those of the decode convention in
tests/data/golden/README.md) and prints the row errors (max |a - b| / max |b| over a row) of
transformers' fp32 rows against it, and of the same forward with every RMSNorm at eps 1e-5.
With references.safetensors present it also prints the distance of its float64 rows (made by
scripts/gpu/make_golden.py with transformers) to these; --write stores these rows there instead
(prompt{i}.prefill_logits_fp64 / decode_logits_fp64), keeping any other tensor.

Run (Debian: apt-get install python3-numpy): python3 scripts/golden_fp64.py [--write]
"""
import argparse
import json
import os
import struct

import numpy as np

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "golden")
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
NUM_PROMPTS, NUM_DECODE = 5, 16


def load(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    out = {}
    for name, v in header.items():
        if name != "__metadata__":
            begin, end = v["data_offsets"]
            out[name] = np.frombuffer(data[begin:end], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return out


def save(path, tensors):
    names = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        blob = np.ascontiguousarray(tensors[name]).tobytes()
        header[name] = {"dtype": names[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def forward(w, cfg, ids, eps):
    """Logits [len(ids), vocab] in float64; rotate-half RoPE, GQA, top-k renormalised MoE."""
    get = lambda name: w[name].astype(np.float64)  # noqa: E731
    num_heads, num_kv, head_dim = (cfg["num_attention_heads"], cfg["num_key_value_heads"],
                                   cfg["head_dim"])
    top_k = cfg["num_experts_per_tok"]
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta"))
    n = len(ids)

    def rms(x, weight):
        return weight * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))

    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angle = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(np.concatenate([angle, angle], -1)), np.sin(np.concatenate([angle, angle], -1))

    def rope(x):  # [n, heads, head_dim]
        x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2:]
        return x * cos[:, None, :] + np.concatenate([-x2, x1], -1) * sin[:, None, :]

    mask = np.triu(np.full((n, n), -np.inf), 1)
    x = get("model.embed_tokens.weight")[ids]
    for layer in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % layer
        h = rms(x, get(p + "input_layernorm.weight"))
        q = (h @ get(p + "self_attn.q_proj.weight").T).reshape(n, num_heads, head_dim)
        k = (h @ get(p + "self_attn.k_proj.weight").T).reshape(n, num_kv, head_dim)
        v = (h @ get(p + "self_attn.v_proj.weight").T).reshape(n, num_kv, head_dim)
        q = rope(rms(q, get(p + "self_attn.q_norm.weight")))
        k = rope(rms(k, get(p + "self_attn.k_norm.weight")))
        group = num_heads // num_kv
        attn = np.zeros((n, num_heads, head_dim))
        for a in range(num_heads):
            scores = q[:, a, :] @ k[:, a // group, :].T / np.sqrt(head_dim) + mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attn[:, a, :] = (scores / scores.sum(-1, keepdims=True)) @ v[:, a // group, :]
        x = x + attn.reshape(n, -1) @ get(p + "self_attn.o_proj.weight").T
        h = rms(x, get(p + "post_attention_layernorm.weight"))
        logits = h @ get(p + "mlp.gate.weight").T
        prob = np.exp(logits - logits.max(-1, keepdims=True))
        prob /= prob.sum(-1, keepdims=True)
        moe = np.zeros_like(x)
        for t in range(n):
            top = np.argsort(-prob[t])[:top_k]
            weights = prob[t, top] / prob[t, top].sum() if cfg["norm_topk_prob"] else prob[t, top]
            for e, weight in zip(top, weights):
                pe = p + "mlp.experts.%d." % e
                gate = h[t] @ get(pe + "gate_proj.weight").T
                up = h[t] @ get(pe + "up_proj.weight").T
                moe[t] += weight * ((gate / (1 + np.exp(-gate)) * up) @ get(pe + "down_proj.weight").T)
        x = x + moe
    return rms(x, get("model.norm.weight")) @ get("lm_head.weight").T


def row_errors(a, ref):
    return np.abs(a - ref).max(-1) / np.abs(ref).max(-1)


def summary(errors):
    e = np.sort(np.asarray(errors))
    return "rows %d, median %.3g, p95 %.3g, max %.3g" % (
        len(e), e[len(e) // 2], e[len(e) * 95 // 100], e[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--golden", default=GOLDEN)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    cfg = json.load(open(os.path.join(args.golden, "model", "config.json")))
    weights = load(os.path.join(args.golden, "model", "model.safetensors"))
    golden = load(os.path.join(args.golden, "golden.safetensors"))
    ref_path = os.path.join(args.golden, "references.safetensors")
    references = load(ref_path) if os.path.exists(ref_path) else {}
    rows, fp32_errors, eps_errors, transformers_errors = {}, [], [], []
    for i in range(NUM_PROMPTS):
        p = "prompt%d." % i
        prompt = golden[p + "prompt_ids"]
        ids = np.concatenate([prompt, golden[p + "greedy_ids"]])
        ours = forward(weights, cfg, ids, cfg["rms_norm_eps"])
        n = len(prompt)
        rows[p + "prefill_logits_fp64"] = ours[:n].copy()
        rows[p + "decode_logits_fp64"] = ours[n:n + NUM_DECODE].copy()
        fp32 = np.concatenate([golden[p + "prefill_logits"], golden[p + "decode_logits"]])
        fp32_errors += row_errors(fp32.astype(np.float64), ours).tolist()
        mutated = forward(weights, cfg, ids, 1e-5)
        eps_errors += row_errors(mutated, ours).tolist()
        if p + "prefill_logits_fp64" in references:
            theirs = np.concatenate([references[p + "prefill_logits_fp64"],
                                     references[p + "decode_logits_fp64"]])
            transformers_errors += row_errors(theirs, ours).tolist()
    print("transformers fp32 vs this float64 forward: " + summary(fp32_errors))
    print("every RMSNorm at eps 1e-5 vs 1e-6 (float64): " + summary(eps_errors))
    if transformers_errors:
        print("references.safetensors float64 vs this float64 forward: " +
              summary(transformers_errors))
    if args.write:
        references.update(rows)
        save(ref_path, references)
        print("wrote " + ref_path)


if __name__ == "__main__":
    main()
