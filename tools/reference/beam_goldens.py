#!/usr/bin/env python3
"""Golden beam searches: transformers' generate(num_beams=B) on the golden checkpoints, text and image prompts.

The reference is the transformers version IXC-2.5 pins (4.33; spec section 8), run as chat() runs it: the prompt goes
in as input embeddings, so generate() seeds its ids with [BOS]. The repetition penalty then sees BOS and the
generated ids, beams are scored sum / (1 + generated tokens), and the best beam comes back with eos_token_id[0]
after it where it ended on an EOS id. The model is the Llama mapping and LoRA hooks of language_model_goldens.py;
the image prompt is multimodal_goldens.py's.

Run it once under each version; it writes tests/data/golden/beams/<case>.json, keeping what the other wrote:
    ids               the generated ids under 4.x (the reference we follow)
    ids_transformers5 the same search under 5.x, whose empty seed may pick another winner (for the record)

    python3 -m venv /tmp/ref5 && /tmp/ref5/bin/pip install torch transformers safetensors numpy pillow
    python3 -m venv /tmp/ref433 && /tmp/ref433/bin/pip install transformers==4.33.3 "numpy<2" safetensors pillow
    # ref433 borrows ref5's torch: a .pth file in its site-packages naming ref5's site-packages
    /tmp/ref433/bin/python tools/reference/beam_goldens.py && /tmp/ref5/bin/python tools/reference/beam_goldens.py
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from language_model_goldens import ROOT, LoraHooks, build_llama  # noqa: E402

GOLDEN = os.path.join(ROOT, "tests", "data", "golden")
# Golden cases (their checkpoints and prompts) and the extra EOS id each search also stops at: the greedy
# continuation's token at `eos_at`, so that beams end early and finished hypotheses compete with running ones.
CASES = [
    dict(case="tiny_f32", eos_at=2),
    dict(case="gqa4_bf16", eos_at=1),
    dict(case="tiny_plora", eos_at=3),
    dict(case="multimodal/one_image", eos_at=2),
]
SEARCHES = [(beams, penalty) for beams in (2, 3) for penalty in (1.005, 3.0)]
MAX_NEW_TOKENS = 10
# 5.x seeds generate()'s ids with nothing; 4.x with [BOS] (given input embeddings), which comes back in its output.
TRANSFORMERS5 = int(transformers.__version__.split(".")[0]) >= 5


def case_prompt(case, model_dir, model):
    """(inputs_embeds (1, positions, hidden), image mask or None, the case's greedy ids)."""
    folder = os.path.join(GOLDEN, case)
    greedy = np.load(os.path.join(folder, "greedy_ids.npy")).tolist()
    spec = json.load(open(os.path.join(folder, "case.json")))
    if "pieces" in spec:
        from multimodal_goldens import prompt_embeddings
        inputs, mask, _, _, _ = prompt_embeddings({"pieces": spec["pieces"]}, model_dir, model)
        return inputs, mask, greedy
    ids = np.load(os.path.join(folder, "prompt_ids.npy"))
    mask_file = os.path.join(folder, "image_mask.npy")
    mask = np.load(mask_file) if os.path.exists(mask_file) else None
    with torch.no_grad():
        inputs = model.model.embed_tokens(torch.tensor(ids.astype(np.int64)))[None]
    return inputs, mask, greedy


def run(case):
    spec = json.load(open(os.path.join(GOLDEN, case["case"], "case.json")))
    with tempfile.TemporaryDirectory() as model_dir:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--out", model_dir,
                        *spec["generator_args"]], check=True, stdout=subprocess.DEVNULL)
        runs = []
        for beams, penalty in SEARCHES:
            # A model of its own per search: dynamic-NTK RoPE keeps the longest length it has seen (spec 6), and
            # each search must start as a fresh process does.
            model, lora = build_llama(model_dir)
            inputs, mask, greedy = case_prompt(case["case"], model_dir, model)
            LoraHooks(model, lora, mask, spec.get("lora_mode", "base"))
            eos = [2, greedy[case["eos_at"]]]  # the tokenizer's EOS, and a token beams meet early
            with torch.no_grad():
                out = model.generate(inputs_embeds=inputs, max_new_tokens=MAX_NEW_TOKENS, num_beams=beams,
                                     do_sample=False, repetition_penalty=penalty, length_penalty=1.0,
                                     early_stopping=False, eos_token_id=eos, pad_token_id=0, bos_token_id=1)
            ids = out[0].tolist()
            if not TRANSFORMERS5:
                assert ids[0] == 1, "4.x seeds the ids with BOS"
                ids = ids[1:]
            runs.append(dict(num_beams=beams, repetition_penalty=penalty, eos_ids=eos,
                             max_new_tokens=MAX_NEW_TOKENS, ids=ids))
            print(f"{case['case']} B={beams} penalty={penalty}: {ids}")
    return runs


def save_golden(folder, case, fill):
    """Updates tests/data/golden/<folder>/<case>.json, which keeps both versions' results: fill(record, key) writes
    this transformers version's under `key` ("ids" under 4.x, the reference; "ids_transformers5" under 5.x), and the
    version goes beside them."""
    out_dir = os.path.join(GOLDEN, folder)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, case.replace("/", "_") + ".json")
    record = json.load(open(path)) if os.path.exists(path) else {"case": case}
    key = "ids_transformers5" if TRANSFORMERS5 else "ids"
    fill(record, key)
    record[key.replace("ids", "transformers")] = transformers.__version__
    with open(path, "w") as f:
        json.dump(record, f, indent=1)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    for case in CASES:
        runs = run(case)

        def fill(record, key):
            if not record.get("searches"):
                record["searches"] = [{k: v for k, v in r.items() if k != "ids"} for r in runs]
            for search, r in zip(record["searches"], runs):
                assert search["eos_ids"] == r["eos_ids"] and search["num_beams"] == r["num_beams"], "a case changed"
                search[key] = r["ids"]
        save_golden("beams", case["case"], fill)


if __name__ == "__main__":
    main()
