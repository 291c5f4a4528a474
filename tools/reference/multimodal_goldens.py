#!/usr/bin/env python3
"""Golden logits of the whole multimodal forward of a tiny IXC-2.5 checkpoint: text + images (and video).

Built on independent implementations: Pillow (decode, bilinear resize, padding), torch (normalization, bicubic global
view, tiling), transformers' CLIPVisionModel (the ViT, quick_gelu; hidden_states[-1] before post_layernorm, CLS
dropped), torch for the 2x2 merge, the plora_sub_GN / plora_glb_GN layout and vision_proj (Linear, exact GELU,
Linear), and the Llama mapping of language_model_goldens.py for the decoder with PLoRA on the image rows.
The tiny checkpoint's ViT works on 56-px tiles (a 4x4 patch grid), so `tile` is 56 here where IXC-2.5 has 560.

Writes tests/data/golden/multimodal/<case>/{case.json, logits.npy, greedy_ids.npy, image_embeds_0.npy}.
    python3 tools/reference/multimodal_goldens.py
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPVisionConfig, CLIPVisionModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from image_goldens import crops, hd_transform  # noqa: E402
from language_model_goldens import ROOT, LoraHooks, build_llama  # noqa: E402

IMAGES = os.path.join(ROOT, "tests", "data", "images")

CASES = [
    dict(name="one_image", gen=["--preset", "tiny", "--seed", "0"],
         pieces=[{"ids": [1, 17, 230, 45]}, {"image": "cars1.jpg"}, {"ids": [99, 100, 7, 311, 12, 5]}], new=8),
    dict(name="three_images_gqa4_bf16", gen=["--preset", "tiny-gqa4", "--seed", "7", "--dtype", "bf16"],
         pieces=[{"ids": [1, 40]}, {"image": "cars1.jpg"}, {"ids": [41, 42]}, {"image": "cars2.jpg"},
                 {"ids": [43, 44, 45]}, {"image": "cars3.jpg"}, {"ids": [300, 301, 302, 303]}], new=8),
    dict(name="portrait_first", gen=["--preset", "tiny", "--seed", "2"],
         pieces=[{"ids": [1]}, {"image": "dubai.png"}, {"ids": [5, 6, 7, 8, 9]}], new=6),
    dict(name="vit_d64_one_image", gen=["--preset", "tiny", "--seed", "9", "--vision", "tiny-d64"],
         pieces=[{"ids": [1, 17, 230]}, {"image": "cars2.jpg"}, {"ids": [99, 100, 7]}], new=6),
    dict(name="video", gen=["--preset", "tiny-gqa4", "--seed", "3"],
         pieces=[{"ids": [1, 60, 61]}, {"video": "landscape.mp4"}, {"ids": [62, 63, 64, 65]}], new=8),
]


def video_transform(image, tile):
    """The reference's Video_transform (spec 4): short side to tile, long side padded at its end, a strip."""
    width, height = image.size
    trans = width < height
    if trans:
        image = image.transpose(Image.Transpose.TRANSPOSE)
        width, height = image.size
    new_w = int(tile * (width / height))
    image = image.resize((new_w, tile), Image.Resampling.BILINEAR)
    image = image.transpose(Image.Transpose.TRANSPOSE)  # pad along the long side: it is now the height
    target = int(np.ceil(new_w / tile) * tile)
    padded = Image.new("RGB", (tile, target), (255, 255, 255))
    padded.paste(image, (0, 0))
    return padded if trans else padded.transpose(Image.Transpose.TRANSPOSE)


def load_vision(model_dir, config):
    v = config["vision_config"]
    clip = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
        num_hidden_layers=v["num_hidden_layers"], num_attention_heads=v["num_attention_heads"],
        image_size=v["image_size"], patch_size=v["patch_size"], hidden_act=v["hidden_act"],
        layer_norm_eps=v["layer_norm_eps"], num_channels=3)).float().eval()
    tensors = {}
    for file in sorted(os.listdir(model_dir)):
        if file.endswith(".safetensors"):
            tensors.update({k: t.float() for k, t in load_file(os.path.join(model_dir, file)).items()})
    # transformers 5 keys CLIPVisionModel without "vision_model.", 4.x with it.
    nested = any(k.startswith("vision_model.") for k in clip.state_dict())
    prefix = "vit.vision_tower." if nested else "vit.vision_tower.vision_model."
    state = {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}
    missing, unexpected = clip.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    hidden = config["hidden_size"]
    proj = torch.nn.Sequential(torch.nn.Linear(4 * v["hidden_size"], hidden), torch.nn.GELU(),
                               torch.nn.Linear(hidden, hidden)).float().eval()
    proj.load_state_dict({"0.weight": tensors["vision_proj.0.weight"], "0.bias": tensors["vision_proj.0.bias"],
                          "2.weight": tensors["vision_proj.2.weight"], "2.bias": tensors["vision_proj.2.bias"]})
    return clip, proj, tensors["plora_glb_GN"], tensors["plora_sub_GN"], v["image_size"]


def embed(clip, proj, glb_gn, sub_gn, tile, crop_pixels, rows, cols):
    with torch.no_grad():
        out = clip(torch.from_numpy(crop_pixels), output_hidden_states=True)
        features = out.hidden_states[-1][:, 1:]  # (n, grid^2, C), before post_layernorm, CLS dropped
        n, patches, c = features.shape
        g = int(round(patches ** 0.5))
        s = g // 2
        merged = features.reshape(n, s, 2, s, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, s, s, 4 * c)
        glb = torch.cat([merged[0:1], sub_gn.reshape(1, 1, 1, 4 * c).repeat(1, s, 1, 1)], dim=2).reshape(-1, 4 * c)
        sub = merged[1:].reshape(rows, cols, s, s, 4 * c).permute(0, 2, 1, 3, 4).reshape(rows * s, cols * s, 4 * c)
        sub = torch.cat([sub, sub_gn.reshape(1, 1, 4 * c).repeat(rows * s, 1, 1)], dim=1).reshape(-1, 4 * c)
        sequence = torch.cat([glb, glb_gn.reshape(1, 4 * c), sub], dim=0)
        assert sequence.shape[0] == (rows * cols + 1) * s * s + 1 + (rows + 1) * s
        return proj(sequence)


def prompt_embeddings(case, model_dir, model):
    """The case's interleaved prompt as the reference embeds it: (1, positions, hidden) inputs, the image-row mask,
    the first image's embeddings and hd_num. Records each image's grid in case["pieces"]."""
    config = json.load(open(os.path.join(model_dir, "config.json")))
    clip, proj, glb_gn, sub_gn, tile = load_vision(model_dir, config)
    images = [p for p in case["pieces"] if "image" in p or "video" in p]
    hd_num = 24 if len(images) == 1 else 6  # spec 5.2: one image 24, several 6 each
    parts, mask, first_image = [], [], None
    for piece in case["pieces"]:
        if "ids" in piece:
            with torch.no_grad():
                parts.append(model.model.embed_tokens(torch.tensor(piece["ids"])))
            mask += [0] * len(piece["ids"])
        else:
            if "video" in piece:
                from PIL import ImageFont
                from video_goldens import FONT, frame2img, load_video  # decord: only the video case needs it
                frames, _, _, _ = load_video(os.path.join(ROOT, "tests", "data", "videos", piece["video"]))
                composite = frame2img(frames, ImageFont.truetype(FONT, 40), tile)
                padded = video_transform(composite, tile)
            else:
                image = Image.open(os.path.join(IMAGES, piece["image"])).convert("RGB")
                padded, _ = hd_transform(image, hd_num, tile)
            rows, cols = padded.size[1] // tile, padded.size[0] // tile
            embeds = embed(clip, proj, glb_gn, sub_gn, tile, crops(padded, tile), rows, cols)
            piece["grid"] = [rows, cols]
            first_image = embeds if first_image is None else first_image
            parts.append(embeds)
            mask += [1] * embeds.shape[0]
    return torch.cat(parts)[None], np.array(mask, dtype=np.uint8), first_image, hd_num, tile


def run_case(case, out_root):
    with tempfile.TemporaryDirectory() as model_dir:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--out", model_dir,
                        *case["gen"]], check=True, stdout=subprocess.DEVNULL)
        model, lora = build_llama(model_dir)
        inputs, mask, first_image, hd_num, tile = prompt_embeddings(case, model_dir, model)
        LoraHooks(model, lora, mask, "base")
        with torch.no_grad():
            logits = model(inputs_embeds=inputs).logits[0].numpy()
            generated = model.generate(inputs_embeds=inputs, max_new_tokens=case["new"], do_sample=False,
                                       num_beams=1, eos_token_id=None, pad_token_id=0)[0].numpy().astype(np.int32)
    out = os.path.join(out_root, case["name"])
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "logits.npy"), logits.astype(np.float32))
    np.save(os.path.join(out, "greedy_ids.npy"), generated)
    np.save(os.path.join(out, "image_embeds_0.npy"), first_image.numpy().astype(np.float32))
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"generator_args": case["gen"], "pieces": case["pieces"], "hd_num": hd_num, "tile": tile,
                   "max_new_tokens": case["new"], "image_mask_rows": int(sum(mask))}, f, indent=1)
    print(f"{case['name']}: {len(mask)} positions ({sum(mask)} vision), greedy {generated.tolist()}")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    out_root = os.path.join(ROOT, "tests", "data", "golden", "multimodal")
    for case in CASES:
        run_case(case, out_root)


if __name__ == "__main__":
    main()
