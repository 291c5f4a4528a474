#!/usr/bin/env python3
"""Writes the language model of one of our checkpoints as a llama.cpp GGUF (architecture `llama`, which InternLM2 is
once wqkv is unpacked), f32 or bf16 as the checkpoint holds it, so that llama-bench reads the same weights as
bench/llm_bench. The vision tower and the LoRAs are left out; the vocabulary is a placeholder of the checkpoint's size
(SentencePiece-shaped: <unk> <s> </s>, the 256 byte pieces, then words), which llama-bench needs only for its ids.

    python3 bench/to_gguf.py --model build/cpu/bench-models/small-v1000-f32 --out /tmp/small-f32.gguf

gguf-py is llama.cpp's own package: PYTHONPATH=<llama.cpp>/gguf-py (or pip's `gguf`).
"""
import argparse
import json
import os
import struct

import numpy as np

import gguf

DTYPES = {"F32": (np.float32, gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
          "BF16": (np.uint16, gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16)}


def read_tensors(model):
    """name -> (numpy array of the stored bits, safetensors dtype), from model.safetensors or its sharded index."""
    index = os.path.join(model, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    tensors = {}
    for name in files:
        with open(os.path.join(model, name), "rb") as f:
            header_size = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(header_size))
            data = f.read()
        for key, info in header.items():
            if key == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            array = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]][0]).reshape(info["shape"])
            tensors[key] = (array, info["dtype"])
    return tensors


def rope_rows_to_llama_cpp(w, heads):
    """HF's rotate-half rows of each head to the interleaved pairs llama.cpp's `llama` rope rotates (as its
    convert_hf_to_gguf.py permutes q and k)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    config = json.load(open(os.path.join(args.model, "config.json")))
    hidden, heads, kv_heads = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    d, group, vocab = hidden // heads, heads // kv_heads, config["vocab_size"]
    tensors = read_tensors(args.model)
    stored = tensors["output.weight"][1]
    _, ggml_type, file_type = DTYPES[stored]

    writer = gguf.GGUFWriter(args.out, "llama")
    writer.add_name(os.path.basename(os.path.normpath(args.model)))
    writer.add_file_type(file_type)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(d)
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    words = vocab - 3 - 256
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] +
                          [f"\u2581w{i}" for i in range(words)])
    writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(words)])
    writer.add_token_types([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] +
                           [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * words)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])

    def add(name, array):
        # Norm weights are f32 in GGUF whatever the matrices are.
        if array.ndim == 1 and array.dtype == np.uint16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        writer.add_tensor(name, np.ascontiguousarray(array), raw_dtype=ggml_type if array.dtype == np.uint16 else None)

    add("token_embd.weight", tensors["model.tok_embeddings.weight"][0])
    add("output_norm.weight", tensors["model.norm.weight"][0])
    add("output.weight", tensors["output.weight"][0])
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        # wqkv rows per KV group: `group` query heads, then one K head, then one V head (spec 1.3).
        wqkv = tensors[prefix + "attention.wqkv.weight"][0].reshape(kv_heads, group + 2, d, hidden)
        q = wqkv[:, :group].reshape(heads * d, hidden)
        k = wqkv[:, group].reshape(kv_heads * d, hidden)
        v = wqkv[:, group + 1].reshape(kv_heads * d, hidden)
        add(f"blk.{layer}.attn_norm.weight", tensors[prefix + "attention_norm.weight"][0])
        add(f"blk.{layer}.attn_q.weight", rope_rows_to_llama_cpp(q, heads))
        add(f"blk.{layer}.attn_k.weight", rope_rows_to_llama_cpp(k, kv_heads))
        add(f"blk.{layer}.attn_v.weight", v)
        add(f"blk.{layer}.attn_output.weight", tensors[prefix + "attention.wo.weight"][0])
        add(f"blk.{layer}.ffn_norm.weight", tensors[prefix + "ffn_norm.weight"][0])
        add(f"blk.{layer}.ffn_gate.weight", tensors[prefix + "feed_forward.w1.weight"][0])
        add(f"blk.{layer}.ffn_up.weight", tensors[prefix + "feed_forward.w3.weight"][0])
        add(f"blk.{layer}.ffn_down.weight", tensors[prefix + "feed_forward.w2.weight"][0])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
