#!/usr/bin/env python3
"""Converts a checkpoint published as PyTorch .bin shards into safetensors, the format ixc-cluster loads.

Reads `pytorch_model.bin.index.json` (or a single `pytorch_model.bin`) in SRC and writes, in DST, one
`.safetensors` shard per `.bin` shard with the same tensors and dtypes, a `model.safetensors.index.json`, and copies
every other file (config.json, tokenizer.model, ...). Tensors are made contiguous; tied or shared storages are
copied apart, as safetensors requires. Each shard is loaded with weights_only=True, so no pickled code runs.

    python3 tools/convert_bin_to_safetensors.py SRC DST

Needs torch and safetensors (PyPI).
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file


def convert(src, dst):
    os.makedirs(dst, exist_ok=True)
    index_path = os.path.join(src, "pytorch_model.bin.index.json")
    if os.path.exists(index_path):
        index = json.load(open(index_path))
        shards = sorted(set(index["weight_map"].values()))
    elif os.path.exists(os.path.join(src, "pytorch_model.bin")):
        index, shards = None, ["pytorch_model.bin"]
    else:
        sys.exit(f"{src}: neither pytorch_model.bin.index.json nor pytorch_model.bin is there")

    weight_map, total = {}, 0
    for shard in shards:
        state = torch.load(os.path.join(src, shard), map_location="cpu", weights_only=True)
        tensors = {name: t.detach().clone().contiguous() for name, t in state.items()}
        out_name = shard.replace("pytorch_model", "model").replace(".bin", ".safetensors")
        save_file(tensors, os.path.join(dst, out_name), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = out_name
            total += t.numel() * t.element_size()
        print(f"{shard} -> {out_name}: {len(tensors)} tensors")
    if index is not None:
        missing = set(index["weight_map"]) - set(weight_map)
        if missing:
            sys.exit(f"{index_path} names tensors no shard holds, e.g. {sorted(missing)[0]}")
    if len(shards) > 1 or index is not None:
        with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    for file in os.listdir(src):
        if not file.endswith(".bin") and file != "pytorch_model.bin.index.json" and \
                os.path.isfile(os.path.join(src, file)):
            shutil.copyfile(os.path.join(src, file), os.path.join(dst, file))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("dst")
    args = parser.parse_args()
    convert(args.src, args.dst)


if __name__ == "__main__":
    main()
