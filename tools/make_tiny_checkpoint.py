#!/usr/bin/env python3
"""Writes a seeded random checkpoint in the exact IXC-2.5 layout (spec 1.2 and 3.2), at small sizes.

Every tensor name of the released model is there: the InternLM2 decoder with its packed wqkv, PLoRA on every linear,
the web/sft/dpo task LoRAs, the CLIP vision tower, vision_proj and the two separators; as safetensors shards with a
model.safetensors.index.json, plus config.json and (optionally) the real tokenizer.model.

The values come from our own counter-based generator (splitmix64 + Box-Muller, keyed by seed and tensor name), not
from numpy's RNG, so a given (preset, seed) gives the same bytes with any numpy version: the golden files under
tests/data/golden depend on that.

    python3 tools/make_tiny_checkpoint.py --preset tiny --out /tmp/tiny
    python3 tools/make_tiny_checkpoint.py --preset demo --tokenizer tests/data/tokenizer.model --out demo-model

Needs only numpy.
"""
import argparse
import json
import math
import os
import shutil
import struct

import numpy as np

PRESETS = {
    # 2 query heads per KV head.
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=160, vocab=512, max_pos=64, plora_rank=8,
                 task_lora_rank=4),
    # 4 query heads per KV head, as the real model.
    "tiny-gqa4": dict(hidden=128, layers=3, heads=8, kv_heads=2, ffn=352, vocab=640, max_pos=48, plora_rank=16,
                      task_lora_rank=8),
    # The real model's head dim (128) and grouping (4 query heads per KV head), so the GPU tests reach the kernels'
    # head-dim-128 paths (tensor-core decode attention, wgmma flash) through the whole model.
    "tiny-d128": dict(hidden=512, layers=2, heads=4, kv_heads=1, ffn=384, vocab=512, max_pos=64, plora_rank=16,
                      task_lora_rank=8),
    # 4 KV heads, so tensor parallelism of 4 has whole KV groups.
    "tiny-kv4": dict(hidden=128, layers=2, heads=8, kv_heads=4, ffn=256, vocab=512, max_pos=64, plora_rank=8,
                     task_lora_rank=4),
    # The README demo: the real tokenizer, so prompts are text.
    "demo": dict(hidden=256, layers=4, heads=8, kv_heads=2, ffn=704, vocab=92544, max_pos=4096, plora_rank=32,
                 task_lora_rank=8),
    # The benchmark shape of the foundation issue.
    "small": dict(hidden=768, layers=12, heads=12, kv_heads=4, ffn=2048, vocab=92544, max_pos=32768, plora_rank=64,
                  task_lora_rank=0),
    # The real IXC-2.5 language model shape (random weights), for GPU benchmarks.
    "ixc25-7b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=92544, max_pos=32768,
                     plora_rank=256, task_lora_rank=0),
}

# Tiny CLIP vision towers: 56-px images of 14-px patches give a 4x4 grid (2x2 merged tokens per crop). "tiny-d64"
# has the real ViT-L's head dim (64), so the GPU tests reach the vision kernels' 64-wide paths through the tower.
VISION_PRESETS = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56,
                 patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    "tiny-d64": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                     image_size=56, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5),
}

MASK64 = (1 << 64) - 1


def name_key(seed, name):
    """FNV-1a of the tensor name, mixed with the seed: each tensor has its own stream."""
    h = 0xcbf29ce484222325
    for byte in name.encode():
        h = ((h ^ byte) * 0x100000001b3) & MASK64
    return (h ^ (seed * 0x9E3779B97F4A7C15)) & MASK64


def splitmix64(counter):
    with np.errstate(over="ignore"):
        z = counter + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def normal(seed, name, shape, std):
    """Standard normals (float32) times std, from the (seed, name) stream."""
    n = int(np.prod(shape)) if shape else 1
    pairs = (n + 1) // 2
    with np.errstate(over="ignore"):
        counter = np.uint64(name_key(seed, name)) + np.arange(2 * pairs, dtype=np.uint64)
    bits = splitmix64(counter) >> np.uint64(11)  # 53 random bits
    uniform = (bits.astype(np.float64) + 0.5) / float(1 << 53)  # in (0, 1)
    u1, u2 = uniform[0::2], uniform[1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    values = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:n]
    return (values * std).astype(np.float32).reshape(shape)


def to_dtype(array, dtype):
    """float32 array -> (raw bytes, safetensors dtype name). bf16 rounds to nearest even, as torch does."""
    if dtype == "f32":
        return array.astype("<f4").tobytes(), "F32"
    if dtype == "f16":
        return array.astype("<f2").tobytes(), "F16"
    bits = array.astype("<f4").view("<u4").astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
    return rounded.tobytes(), "BF16"


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        raw, dtype_name = to_dtype(tensors[name], dtype)
        header[name] = {"dtype": dtype_name, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    return offset


def language_tensors(p, seed, arch, bias, scale_lora):
    h, ffn, heads, kv, layers = p["hidden"], p["ffn"], p["heads"], p["kv_heads"], p["layers"]
    d = h // heads
    qkv = (heads + 2 * kv) * d
    t = {}

    def linear(name, out, inn):
        t[name + ".weight"] = normal(seed, name + ".weight", (out, inn), 1.0 / math.sqrt(inn))
        if bias and name.endswith(("wqkv", "wo")):
            t[name + ".bias"] = normal(seed, name + ".bias", (out,), 0.1)
        loras = []
        if arch == "ixc":
            loras.append(("Plora", p["plora_rank"]))
            if p["task_lora_rank"]:
                loras += [("lora_web", p["task_lora_rank"]), ("lora_sft", p["task_lora_rank"]),
                          ("lora_dpo", p["task_lora_rank"])]
        for prefix, rank in loras:
            a, b = f"{name}.{prefix}_A.weight", f"{name}.{prefix}_B.weight"
            t[a] = normal(seed, a, (rank, inn), 1.0 / math.sqrt(inn))
            t[b] = normal(seed, b, (out, rank), scale_lora / math.sqrt(rank))

    t["model.tok_embeddings.weight"] = normal(seed, "model.tok_embeddings.weight", (p["vocab"], h), 1.0)
    for i in range(layers):
        pre = f"model.layers.{i}."
        t[pre + "attention_norm.weight"] = 1.0 + normal(seed, pre + "attention_norm.weight", (h,), 0.1)
        t[pre + "ffn_norm.weight"] = 1.0 + normal(seed, pre + "ffn_norm.weight", (h,), 0.1)
        linear(pre + "attention.wqkv", qkv, h)
        linear(pre + "attention.wo", h, h)
        linear(pre + "feed_forward.w1", ffn, h)
        linear(pre + "feed_forward.w3", ffn, h)
        linear(pre + "feed_forward.w2", h, ffn)
    t["model.norm.weight"] = 1.0 + normal(seed, "model.norm.weight", (h,), 0.1)
    t["output.weight"] = normal(seed, "output.weight", (p["vocab"], h), 1.0 / math.sqrt(h))
    return t


def vision_tensors(p, seed, v):
    hv, iv = v["hidden_size"], v["intermediate_size"]
    positions = (v["image_size"] // v["patch_size"]) ** 2 + 1
    pre = "vit.vision_tower.vision_model."
    t = {}

    def add(name, shape, std, offset=0.0):
        t[name] = offset + normal(seed, name, shape, std)

    add(pre + "embeddings.class_embedding", (hv,), 1.0)
    add(pre + "embeddings.patch_embedding.weight", (hv, 3, v["patch_size"], v["patch_size"]),
        1.0 / math.sqrt(3 * v["patch_size"] ** 2))
    add(pre + "embeddings.position_embedding.weight", (positions, hv), 0.5)
    for norm in ("pre_layrnorm", "post_layernorm"):
        add(pre + norm + ".weight", (hv,), 0.1, 1.0)
        add(pre + norm + ".bias", (hv,), 0.1)
    for i in range(v["num_hidden_layers"]):
        lp = f"{pre}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            add(lp + f"self_attn.{proj}.weight", (hv, hv), 1.0 / math.sqrt(hv))
            add(lp + f"self_attn.{proj}.bias", (hv,), 0.1)
        for norm in ("layer_norm1", "layer_norm2"):
            add(lp + norm + ".weight", (hv,), 0.1, 1.0)
            add(lp + norm + ".bias", (hv,), 0.1)
        add(lp + "mlp.fc1.weight", (iv, hv), 1.0 / math.sqrt(hv))
        add(lp + "mlp.fc1.bias", (iv,), 0.1)
        add(lp + "mlp.fc2.weight", (hv, iv), 1.0 / math.sqrt(iv))
        add(lp + "mlp.fc2.bias", (hv,), 0.1)
    h = p["hidden"]
    add("vision_proj.0.weight", (h, 4 * hv), 1.0 / math.sqrt(4 * hv))
    add("vision_proj.0.bias", (h,), 0.1)
    add("vision_proj.2.weight", (h, h), 1.0 / math.sqrt(h))
    add("vision_proj.2.bias", (h,), 0.1)
    # The separators join the merged ViT features before vision_proj, so they are 4 * hv wide (4096 in IXC-2.5).
    add("plora_glb_GN", (1, 1, 4 * hv), 1.0)
    add("plora_sub_GN", (1, 1, 1, 4 * hv), 1.0)
    return t


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to write (created; existing files replaced)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    parser.add_argument("--arch", choices=["ixc", "internlm2"], default="ixc",
                        help="ixc: InternLMXComposer2ForCausalLM with PLoRA and vision; internlm2: text only")
    parser.add_argument("--shards", type=int, default=2, help="number of safetensors shards (1: model.safetensors)")
    parser.add_argument("--bias", action="store_true", help="give wqkv and wo biases (config bias=true)")
    parser.add_argument("--rope-scaling", choices=["dynamic", "linear", "none"], default="dynamic")
    parser.add_argument("--rope-factor", type=float, default=2.0)
    parser.add_argument("--rope-theta", type=float, default=1e6)
    parser.add_argument("--max-position-embeddings", type=int, help="override the preset's")
    parser.add_argument("--vocab", type=int, help="override the preset's vocabulary size (92544 for the real tokenizer)")
    parser.add_argument("--tokenizer", help="tokenizer.model to copy beside the weights")
    parser.add_argument("--lora-scale", type=float, default=0.5, help="std multiplier of the LoRA B matrices")
    parser.add_argument("--vision", choices=sorted(VISION_PRESETS), default="tiny", help="the vision tower (ixc)")
    args = parser.parse_args()

    p = dict(PRESETS[args.preset])
    if args.max_position_embeddings:
        p["max_pos"] = args.max_position_embeddings
    if args.vocab:
        p["vocab"] = args.vocab
    tensors = language_tensors(p, args.seed, args.arch, args.bias, args.lora_scale)
    config = {
        "architectures": ["InternLMXComposer2ForCausalLM" if args.arch == "ixc" else "InternLM2ForCausalLM"],
        "model_type": "internlmxcomposer2" if args.arch == "ixc" else "internlm2",
        "hidden_size": p["hidden"], "num_hidden_layers": p["layers"], "num_attention_heads": p["heads"],
        "num_key_value_heads": p["kv_heads"], "intermediate_size": p["ffn"], "vocab_size": p["vocab"],
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": args.rope_theta,
        "rope_scaling": None if args.rope_scaling == "none" else {"type": args.rope_scaling, "factor": args.rope_factor},
        "max_position_embeddings": p["max_pos"], "bias": args.bias, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
        "torch_dtype": {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[args.dtype],
        "max_length": 16384, "attn_implementation": "eager",
        "generator": {"preset": args.preset, "seed": args.seed},
    }
    if args.arch == "ixc":
        vision = VISION_PRESETS[args.vision]
        tensors.update(vision_tensors(p, args.seed, vision))
        config["vision_config"] = vision

    os.makedirs(args.out, exist_ok=True)
    for stale in os.listdir(args.out):
        if stale.endswith(".safetensors") or stale == "model.safetensors.index.json":
            os.remove(os.path.join(args.out, stale))
    names = sorted(tensors)
    if args.shards <= 1:
        write_safetensors(os.path.join(args.out, "model.safetensors"), tensors, args.dtype)
    else:
        # Greedy split by bytes, in name order, as HF's save_pretrained does.
        total = sum(tensors[n].size for n in names)
        per_shard = total / args.shards
        groups, current, size = [], [], 0
        for n in names:
            if current and size + tensors[n].size > per_shard and len(groups) < args.shards - 1:
                groups.append(current)
                current, size = [], 0
            current.append(n)
            size += tensors[n].size
        groups.append(current)
        weight_map, total_bytes = {}, 0
        for i, group in enumerate(groups):
            file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            total_bytes += write_safetensors(os.path.join(args.out, file), {n: tensors[n] for n in group}, args.dtype)
            weight_map.update({n: file for n in group})
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total_bytes}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if args.tokenizer:
        shutil.copyfile(args.tokenizer, os.path.join(args.out, "tokenizer.model"))
    params = sum(t.size for t in tensors.values())
    print(f"wrote {args.out}: preset {args.preset}, seed {args.seed}, {args.dtype}, {len(tensors)} tensors, "
          f"{params / 1e6:.2f} M parameters")


if __name__ == "__main__":
    main()
