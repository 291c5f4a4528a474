#!/usr/bin/env python3
"""IXC-2.5's composition tasks through the cluster's OpenAI API with the official client (docs/composition.md):
prints the page or the article. One line per task:

    python3 deploy/examples/compose.py http://127.0.0.1:8000/v1 write_webpage \
        "A website for Research institutions. The name is Shanghai AI lab."
    python3 deploy/examples/compose.py http://127.0.0.1:8000/v1 screen_2_webpage --image tests/data/images/screenshot.jpg
    python3 deploy/examples/compose.py http://127.0.0.1:8000/v1 resume_2_webpage --file tests/data/resume.md
    python3 deploy/examples/compose.py http://127.0.0.1:8000/v1 write_article \
        "Please write a blog based on the title: French Pastries: A Sweet Indulgence"

The tasks take the reference functions' settings (2 beams and repetition penalty 3.0 for the webpages, 4800 tokens);
--max-tokens bounds them (the demo model writes noise either way: the point is the path).
"""
import argparse
import base64

import openai

parser = argparse.ArgumentParser()
parser.add_argument("base_url")
parser.add_argument("task", choices=["write_webpage", "screen_2_webpage", "resume_2_webpage", "write_article"])
parser.add_argument("text", nargs="?", default="", help="the instruction (ignored by screen_2_webpage)")
parser.add_argument("--file", help="read the text from this file (a resume's markdown)")
parser.add_argument("--image", help="an image: the screenshot for screen_2_webpage")
parser.add_argument("--max-tokens", type=int, default=64)
args = parser.parse_args()

text = open(args.file).read() if args.file else args.text
content = []
if args.image:
    with open(args.image, "rb") as f:
        url = "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()
    content.append({"type": "image_url", "image_url": {"url": url}})
content.append({"type": "text", "text": text})
client = openai.OpenAI(base_url=args.base_url, api_key="none")
answer = client.chat.completions.create(model=client.models.list().data[0].id, max_tokens=args.max_tokens, seed=202,
                                        messages=[{"role": "user", "content": content}],
                                        extra_body={"ixc_task": args.task})
print(answer.choices[0].message.content)
