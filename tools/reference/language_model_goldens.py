#!/usr/bin/env python3
"""Golden logits and greedy continuations of the IXC-2.5 language model, from Hugging Face transformers.

The reference is transformers' LlamaForCausalLM (InternLM2's decoder is Llama-shaped), which nobody on this project
wrote. Our checkpoint is mapped onto it: wqkv is unpacked by KV group into q/k/v (spec 1.3), w1/w3/w2 become
gate/up/down. What Llama lacks is added with forward hooks on its Linear modules, written from the spec, not from
our C++: PLoRA (B.A.x on image rows, spec 2) and the task LoRAs (on every row, spec 7). Dynamic-NTK RoPE is
transformers' own "dynamic" rope type.

For each case this script writes the checkpoint with tools/make_tiny_checkpoint.py, runs the reference in float32
and stores, under tests/data/golden/<case>/:
    case.json        how to rebuild the checkpoint and what to run
    prompt_ids.npy   (tokens,) int32
    image_mask.npy   (tokens,) uint8, when the case has image rows
    logits.npy       (tokens, vocab) float32, every prompt position
    greedy_ids.npy   (max_new_tokens,) int32, greedy continuation without stopping at EOS

Regenerate (needs torch, transformers, safetensors from PyPI; CI does not):
    python3 tools/reference/language_model_goldens.py --out tests/data/golden
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = [
    # name, generator args, prompt length, image rows [begin, end), lora mode, new tokens
    dict(name="tiny_f32", gen=["--preset", "tiny", "--seed", "0"], prompt=20, image=None, lora="base", new=12),
    dict(name="gqa4_bf16", gen=["--preset", "tiny-gqa4", "--seed", "1", "--dtype", "bf16", "--shards", "3"],
         prompt=24, image=None, lora="base", new=12),
    dict(name="tiny_plora", gen=["--preset", "tiny", "--seed", "0"], prompt=22, image=[3, 14], lora="base", new=10),
    dict(name="gqa4_plora_f16", gen=["--preset", "tiny-gqa4", "--seed", "4", "--dtype", "f16"], prompt=30,
         image=[1, 25], lora="base", new=8),
    dict(name="gqa4_dynamic_ntk", gen=["--preset", "tiny-gqa4", "--seed", "2"], prompt=70, image=None,
         lora="base", new=10),
    dict(name="tiny_lora_web", gen=["--preset", "tiny", "--seed", "5"], prompt=16, image=[2, 9], lora="web", new=8),
    dict(name="tiny_lora_write", gen=["--preset", "tiny", "--seed", "5"], prompt=16, image=None, lora="write", new=8),
    dict(name="kv4_bias_plora_web", gen=["--preset", "tiny-kv4", "--seed", "11", "--bias"], prompt=26, image=[2, 12],
         lora="web", new=8),
    dict(name="d128_gqa4_plora_bf16", gen=["--preset", "tiny-d128", "--seed", "13", "--dtype", "bf16"], prompt=40,
         image=[4, 22], lora="base", new=10),
    dict(name="internlm2_bias_linear_rope", gen=["--preset", "tiny", "--seed", "3", "--arch", "internlm2", "--bias",
                                                 "--shards", "1", "--rope-scaling", "linear", "--rope-factor", "4"],
         prompt=18, image=None, lora="base", new=10),
]


def build_llama(model_dir):
    config = json.load(open(os.path.join(model_dir, "config.json")))
    scaling = config.get("rope_scaling")
    if int(transformers.__version__.split(".")[0]) >= 5:
        rope = {"rope_type": "default", "rope_theta": config["rope_theta"]}
        if scaling:
            rope = {"rope_type": scaling["type"], "factor": scaling["factor"], "rope_theta": config["rope_theta"]}
        rope_args = dict(rope_parameters=rope, attention_bias=config["bias"])
    else:  # 4.33, the version IXC-2.5 pins (tools/reference/beam_goldens.py): no attention_bias yet
        assert not config["bias"], "transformers 4.33's Llama has no attention bias"
        rope_args = dict(rope_theta=config["rope_theta"],
                         rope_scaling={"type": scaling["type"], "factor": scaling["factor"]} if scaling else None)
    llama_config = LlamaConfig(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"], num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"], num_key_value_heads=config["num_key_value_heads"],
        max_position_embeddings=config["max_position_embeddings"], rms_norm_eps=config["rms_norm_eps"],
        tie_word_embeddings=False, pad_token_id=None, bos_token_id=1, eos_token_id=None, **rope_args)
    llama_config._attn_implementation = "eager"
    model = LlamaForCausalLM(llama_config).float().eval()

    tensors = {}
    for file in sorted(os.listdir(model_dir)):
        if file.endswith(".safetensors"):
            tensors.update({k: v.float() for k, v in load_file(os.path.join(model_dir, file)).items()})

    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    d = config["hidden_size"] // heads
    group = heads // kv_heads

    def split_qkv(rows):
        """(qkv, ...) packed per KV group [q * group, k, v] -> q, k, v in Llama's head-major order."""
        blocks = rows.reshape(kv_heads, group + 2, d, *rows.shape[1:])
        q = blocks[:, :group].reshape(heads * d, *rows.shape[1:])
        return q, blocks[:, group].reshape(kv_heads * d, *rows.shape[1:]), \
            blocks[:, group + 1].reshape(kv_heads * d, *rows.shape[1:])

    state = {"model.embed_tokens.weight": tensors["model.tok_embeddings.weight"],
             "model.norm.weight": tensors["model.norm.weight"], "lm_head.weight": tensors["output.weight"]}
    # Low-rank pairs per Llama module: {module path: {set name: (A, B)}}.
    lora = {}
    for i in range(config["num_hidden_layers"]):
        src, dst = f"model.layers.{i}.", f"model.layers.{i}."
        state[dst + "input_layernorm.weight"] = tensors[src + "attention_norm.weight"]
        state[dst + "post_attention_layernorm.weight"] = tensors[src + "ffn_norm.weight"]
        q, k, v = split_qkv(tensors[src + "attention.wqkv.weight"])
        state[dst + "self_attn.q_proj.weight"], state[dst + "self_attn.k_proj.weight"], \
            state[dst + "self_attn.v_proj.weight"] = q, k, v
        state[dst + "self_attn.o_proj.weight"] = tensors[src + "attention.wo.weight"]
        if config["bias"]:
            qb, kb, vb = split_qkv(tensors[src + "attention.wqkv.bias"])
            state[dst + "self_attn.q_proj.bias"], state[dst + "self_attn.k_proj.bias"], \
                state[dst + "self_attn.v_proj.bias"] = qb, kb, vb
            state[dst + "self_attn.o_proj.bias"] = tensors[src + "attention.wo.bias"]
        for ours, theirs in (("feed_forward.w1", "mlp.gate_proj"), ("feed_forward.w3", "mlp.up_proj"),
                             ("feed_forward.w2", "mlp.down_proj")):
            state[dst + theirs + ".weight"] = tensors[src + ours + ".weight"]
        for lora_set in ("Plora", "lora_web", "lora_sft", "lora_dpo"):
            a_name = src + f"attention.wqkv.{lora_set}_A.weight"
            if a_name not in tensors:
                continue
            a = tensors[a_name]
            bq, bk, bv = split_qkv(tensors[src + f"attention.wqkv.{lora_set}_B.weight"])
            for proj, b in (("q_proj", bq), ("k_proj", bk), ("v_proj", bv)):
                lora.setdefault(dst + "self_attn." + proj, {})[lora_set] = (a, b)
            for ours, theirs in (("attention.wo", "self_attn.o_proj"), ("feed_forward.w1", "mlp.gate_proj"),
                                 ("feed_forward.w3", "mlp.up_proj"), ("feed_forward.w2", "mlp.down_proj")):
                lora.setdefault(dst + theirs, {})[lora_set] = (tensors[src + f"{ours}.{lora_set}_A.weight"],
                                                              tensors[src + f"{ours}.{lora_set}_B.weight"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return model, lora


class LoraHooks:
    """PLoRA on the prompt's image rows (prefill only: decode steps carry no image rows), task LoRAs on every row."""

    def __init__(self, model, lora, image_mask, mode):
        self.image_mask = image_mask
        self.sets = {"base": [], "web": ["lora_web"], "write": ["lora_sft", "lora_dpo"]}[mode]
        self.handles = [model.get_submodule(path).register_forward_hook(self.hook(pairs)) for path, pairs in lora.items()]

    def hook(self, pairs):
        def add(module, inputs, output):
            x = inputs[0]  # (batch, tokens, in)
            for name in self.sets:
                a, b = pairs[name]
                output = output + (x @ a.T) @ b.T
            if self.image_mask is not None and x.shape[1] == len(self.image_mask) and "Plora" in pairs:
                a, b = pairs["Plora"]
                rows = torch.tensor(self.image_mask, dtype=torch.bool)
                output = output.clone()
                output[:, rows] += (x[:, rows] @ a.T) @ b.T
            return output
        return add


def run_case(case, out_root):
    with tempfile.TemporaryDirectory() as model_dir:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--out", model_dir,
                        *case["gen"]], check=True, stdout=subprocess.DEVNULL)
        model, lora = build_llama(model_dir)
        vocab = model.config.vocab_size
        rng = np.random.default_rng(1000 + len(case["name"]))
        prompt = np.concatenate([[1], rng.integers(3, vocab, case["prompt"] - 1)]).astype(np.int32)
        image_mask = None
        if case["image"]:
            image_mask = np.zeros(case["prompt"], dtype=np.uint8)
            image_mask[case["image"][0]:case["image"][1]] = 1
        LoraHooks(model, lora, image_mask, case["lora"])
        ids = torch.tensor(prompt[None].astype(np.int64))
        with torch.no_grad():
            logits = model(ids).logits[0].float().numpy()
            generated = model.generate(ids, max_new_tokens=case["new"], do_sample=False, num_beams=1,
                                       eos_token_id=None, pad_token_id=0)[0, len(prompt):].numpy().astype(np.int32)
    out = os.path.join(out_root, case["name"])
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "prompt_ids.npy"), prompt)
    np.save(os.path.join(out, "logits.npy"), logits.astype(np.float32))
    np.save(os.path.join(out, "greedy_ids.npy"), generated)
    if image_mask is not None:
        np.save(os.path.join(out, "image_mask.npy"), image_mask)
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"generator_args": case["gen"], "lora_mode": case["lora"], "max_new_tokens": case["new"],
                   "reference": "transformers LlamaForCausalLM, float32, eager attention"}, f, indent=2)
    print(f"{case['name']}: prompt {len(prompt)}, logits {logits.shape}, greedy {generated.tolist()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "golden"))
    args = parser.parse_args()
    torch.manual_seed(0)
    for case in CASES:
        run_case(case, args.out)


if __name__ == "__main__":
    main()
