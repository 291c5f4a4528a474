#!/usr/bin/env python3
"""Golden prompts and token ids for the IXC-2.5 chat template and interleaved tokenization (spec 5.1, 5.2).

The template strings are built here from the spec, independently of coordinator/chat_template.cc; the ids come from
the SentencePiece Python package (PyPI) on the real tokenizer.model. Each case stores the full prompt string and,
per piece between <ImageHere> placeholders, the ids the reference's interleav_wrap_chat would produce (BOS on the
first piece only; empty later pieces skipped).

    python3 tools/reference/tokenizer_goldens.py > tests/data/tokenizer_golden.json
"""
import json
import os

import sentencepiece

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
S, E = "[UNUSED_TOKEN_146]", "[UNUSED_TOKEN_145]"
META = ("You are an AI assistant whose name is InternLM-XComposer (浦语·灵笔).\n"
        "- InternLM-XComposer (浦语·灵笔) is a multi-modality conversational language model that is developed by "
        "Shanghai AI Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
        "- InternLM-XComposer (浦语·灵笔) can understand and communicate fluently in the language chosen by the user "
        "such as English and 中文.\n"
        "- InternLM-XComposer (浦语·灵笔) is capable of comprehending and articulating responses effectively based on "
        "the provided image.")


def chat(query, history=(), use_meta=False):
    prompt = f"{S}system\n{META}{E}\n" if use_meta else ""
    for q, a in history:
        prompt += f"{S}user\n{q}{E}\n{S}assistant\n{a}{E}\n"
    return prompt + f"{S}user\n{query}{E}\n{S}assistant\n"


CASES = [
    dict(name="plain", chat=None, text="Hello world! The quick brown fox.", images=0),
    dict(name="chat", chat=dict(query="Describe the car in detail."), images=0),
    dict(name="chat_meta", chat=dict(query="Analyze the given image in a detail manner", use_meta=True), images=0),
    dict(name="multi_turn", chat=dict(query="And the second one?", history=[("What is 2+2?", "4."),
                                                                            ("你好，请介绍一下自己", "我是浦语·灵笔。")]),
         images=0),
    dict(name="one_image_prepended", chat=dict(query="Analyze the given image in a detail manner", use_meta=True),
         images=1),
    dict(name="three_images", chat=dict(
        query="Image1 <ImageHere>; Image2 <ImageHere>; Image3 <ImageHere>; I want to buy a car from the three "
              "given cars, analyze their advantages and weaknesses one by one"), images=3),
    dict(name="bytes_and_spaces", chat=None, text="  tabs\tand  spaces 🚗🚕 naïve ünïcödé\n\nend", images=0),
]


def main():
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(ROOT, "tests", "data", "tokenizer.model"))
    out = []
    for case in CASES:
        prompt = chat(**case["chat"]) if case["chat"] else case["text"]
        if case["images"] == 1 and "<ImageHere>" not in prompt:
            prompt = "<ImageHere>" + prompt
        pieces = []
        for i, part in enumerate(prompt.split("<ImageHere>")):
            if i == 0 or part:
                pieces.append(([sp.bos_id()] if i == 0 else []) + sp.encode(part))
        out.append(dict(name=case["name"], chat=case["chat"], text=case.get("text"), images=case["images"],
                        prompt=prompt, pieces=pieces))
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
