"""transformers' Qwen3MoeSparseMoeBlock on one GPU, the comparison for bench_moe_layer: the same
shape (Qwen3-30B-A3B: hidden 2048, moe_intermediate 768, 128 experts, top-8), bf16, the same
token counts, random weights (std 0.02) and random inputs, with each of transformers' experts
backends that fits ("eager": a loop over the routed experts; "grouped_mm": torch's grouped GEMM).
Prints a table like bench_moe_layer's.
  python3 scripts/gpu/bench_moe_transformers.py [--tokens 256,4096] [--iters 50]
"""
import argparse

import torch
import transformers
from transformers.models.qwen3_moe.configuration_qwen3_moe import Qwen3MoeConfig
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", default="256,4096")
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(f"transformers {transformers.__version__} Qwen3MoeSparseMoeBlock, hidden 2048, "
          f"intermediate 768, 128 experts, top-8, bf16")
    print(f"{'backend':>12} {'tokens':>8} {'ms':>12} {'TFLOP/s':>12}")
    for backend in ["eager", "grouped_mm"]:
        config = Qwen3MoeConfig(hidden_size=2048, moe_intermediate_size=768, num_experts=128,
                                num_experts_per_tok=8, norm_topk_prob=True)
        config._experts_implementation = backend
        torch.manual_seed(0)
        block = Qwen3MoeSparseMoeBlock(config).to(device="cuda", dtype=torch.bfloat16).eval()
        with torch.no_grad():
            for p in block.parameters():
                p.normal_(0.0, 0.02)
        for tokens in [int(t) for t in args.tokens.split(",")]:
            x = torch.randn(1, tokens, 2048, device="cuda", dtype=torch.bfloat16)
            try:
                with torch.no_grad():
                    for _ in range(5):
                        block(x)
                    times = []
                    for _ in range(args.iters):
                        start = torch.cuda.Event(enable_timing=True)
                        end = torch.cuda.Event(enable_timing=True)
                        start.record()
                        block(x)
                        end.record()
                        torch.cuda.synchronize()
                        times.append(start.elapsed_time(end))
            except Exception as e:  # a backend this torch cannot run: say so, go on
                print(f"{backend:>12} {tokens:>8} {'failed':>12} {type(e).__name__}: {e}"[:200])
                continue
            times.sort()
            ms = times[len(times) // 2]
            flops = 2.0 * tokens * 2048 * 128 + 3 * 2.0 * tokens * 8 * 2048 * 768
            print(f"{backend:>12} {tokens:>8} {ms:>12.3f} {flops / (ms * 1e-3) / 1e12:>12.1f}")
        del block
        torch.cuda.empty_cache()

if __name__ == "__main__":
    main()
