#!/usr/bin/env python3
"""Asks the cluster's OpenAI API about an image with the official client, streaming the answer.

    python3 deploy/examples/ask_image.py http://127.0.0.1:8000/v1 tests/data/images/cars1.jpg "What is in the picture?"
"""
import base64
import sys

import openai

base_url, image, question = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key="none")
model = client.models.list().data[0].id
with open(image, "rb") as f:
    url = "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()
stream = client.chat.completions.create(
    model=model, max_tokens=24, temperature=0.8, top_p=0.8, seed=1, stream=True,
    messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                           {"type": "text", "text": question}]}])
for chunk in stream:
    print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
