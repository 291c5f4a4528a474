#!/usr/bin/env python3
"""Golden greedy continuations where the repetition penalty's history decides: does it hold BOS?

transformers up to 4.37, given input embeddings alone (as IXC-2.5's chat() calls it), seeds generate()'s ids with
[BOS], and the repetition penalty sees them: BOS is penalized in greedy decoding too (spec section 8); 5.x seeds
nothing. To make that visible, the head's BOS row becomes the first greedy token's row times 2 (times 1/2 where that
token's logit is negative; exact in every float format), so that unpenalized BOS wins the first step, and greedy
decoding runs with repetition penalty 3.0, under which a penalized BOS loses. The checkpoints, prompts and model are
beam_goldens.py's.

Run it under each version; it writes tests/data/golden/penalty_bos/<case>.json, keeping what the other wrote:
    ids               the greedy ids under 4.x (the reference we follow)
    ids_transformers5 under 5.x (for the record: BOS is chosen)

    /tmp/ref433/bin/python tools/reference/penalty_goldens.py && /tmp/ref5/bin/python tools/reference/penalty_goldens.py
(the virtual environments as beam_goldens.py makes them)
"""
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from beam_goldens import GOLDEN, TRANSFORMERS5, case_prompt, save_golden  # noqa: E402
from language_model_goldens import ROOT, LoraHooks, build_llama  # noqa: E402

CASES = ["tiny_f32", "gqa4_bf16", "multimodal/one_image"]
PENALTY = 3.0
MAX_NEW_TOKENS = 6
BOS = 1


def run(case):
    spec = json.load(open(os.path.join(GOLDEN, case, "case.json")))
    with tempfile.TemporaryDirectory() as model_dir:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--out", model_dir,
                        *spec["generator_args"]], check=True, stdout=subprocess.DEVNULL)
        model, lora = build_llama(model_dir)
        inputs, mask, greedy = case_prompt(case, model_dir, model)
        LoraHooks(model, lora, mask, spec.get("lora_mode", "base"))
        first = greedy[0]
        with torch.no_grad():
            logits = model(inputs_embeds=inputs).logits[0, -1]
            assert int(logits.argmax()) == first, "the case's first greedy token"
            scale = 2.0 if float(logits[first]) > 0 else 0.5
            # A fresh model for the search (dynamic-NTK RoPE remembers lengths it has seen), with the BOS row made.
            model, lora = build_llama(model_dir)
            LoraHooks(model, lora, mask, spec.get("lora_mode", "base"))
            model.lm_head.weight[BOS] = model.lm_head.weight[first] * scale
            out = model.generate(inputs_embeds=inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1,
                                 repetition_penalty=PENALTY, eos_token_id=None, pad_token_id=0, bos_token_id=BOS)
    ids = out[0].tolist()
    if not TRANSFORMERS5:
        assert ids[0] == BOS, "4.x seeds the ids with BOS"
        ids = ids[1:]
    print(f"{case}: BOS row = row {first} x {scale}, penalty {PENALTY}: {ids}")
    return dict(case=case, bos_row_from=first, scale=scale, repetition_penalty=PENALTY, max_new_tokens=MAX_NEW_TOKENS,
                ids=ids)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    for case in CASES:
        result = run(case)

        def fill(record, key):
            for field in ("case", "bos_row_from", "scale", "repetition_penalty", "max_new_tokens"):
                assert record.get(field, result[field]) == result[field], f"{case}: {field} changed"
                record[field] = result[field]
            record[key] = result["ids"]
        save_golden("penalty_bos", case, fill)


if __name__ == "__main__":
    main()
