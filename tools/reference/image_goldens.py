#!/usr/bin/env python3
"""Golden images for decoding, the HD transform and the crops, from Pillow and torch (PyPI).

1. Writes synthetic inputs that reach every decoder branch (PNG colour types and bit depths, palette transparency,
   CMYK / grey / progressive JPEG, lossy and lossless WebP, GIF, BMP) and every HD-transform branch (small, wide,
   portrait, exact multiples), under tests/data/images/synthetic/.
2. For each input: Pillow's Image.open(...).convert('RGB') as a PNG (lossless), and the reference's HD transform
   (spec 3.3: transpose, scale search, Pillow bilinear resize, white bottom padding, transpose back) as a PNG, with
   its geometry in images.json.
3. Crops: torch's ToTensor + Normalize, F.interpolate(bicubic, align_corners=False) for the global view and the
   reference's tiling, as float32 .npy for small tiles, and as sampled values for a real 560-px case.

    python3 tools/reference/image_goldens.py
"""
import io
import json
import math
import os
import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.path.join(ROOT, "tests", "data", "images")
SYNTHETIC = os.path.join(IMAGES, "synthetic")
GOLDEN = os.path.join(ROOT, "tests", "data", "golden", "images")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def picture(width, height, seed):
    """A smooth scene with edges and a little noise: resampling errors show, files stay small."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 128 + 100 * np.sin(x / (7 + seed) + y / 23)
    g = 255 * (x / max(width - 1, 1))
    b = np.where((x // 16 + y // 16) % 2 == 0, 40, 220)
    image = np.stack([r, g, b], axis=-1) + rng.normal(0, 2, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def png16_rgb(path, array16):
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    height, width, _ = array16.shape
    raw = b"".join(b"\x00" + array16[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_synthetic():
    os.makedirs(SYNTHETIC, exist_ok=True)
    base = Image.fromarray(picture(300, 200, 1))
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1)))
    rgba = base.copy()
    rgba.putalpha(alpha)
    rgba.save(os.path.join(SYNTHETIC, "rgba.png"))
    gray = base.convert("L")
    la = gray.copy()
    la.putalpha(alpha)
    la.save(os.path.join(SYNTHETIC, "gray_alpha.png"))
    gray.resize((130, 90)).save(os.path.join(SYNTHETIC, "gray.png"))
    gray.resize((64, 40)).convert("1").save(os.path.join(SYNTHETIC, "bilevel.png"))
    palette = base.resize((70, 50)).quantize(16)
    palette.save(os.path.join(SYNTHETIC, "palette_transparent.png"), transparency=3)
    png16_rgb(os.path.join(SYNTHETIC, "rgb16.png"),
              (picture(33, 21, 2).astype(np.uint16) * 257 + np.arange(33)[None, :, None]).astype(np.uint16))
    base.save(os.path.join(SYNTHETIC, "baseline.jpg"), quality=85)
    base.save(os.path.join(SYNTHETIC, "progressive.jpg"), quality=80, progressive=True)
    base.save(os.path.join(SYNTHETIC, "subsampling444.jpg"), quality=90, subsampling=0)
    gray.save(os.path.join(SYNTHETIC, "gray.jpg"), quality=85)
    base.convert("CMYK").save(os.path.join(SYNTHETIC, "cmyk.jpg"), quality=90)
    base.save(os.path.join(SYNTHETIC, "lossy.webp"), quality=80)
    rgba.save(os.path.join(SYNTHETIC, "lossless.webp"), lossless=True)
    frames = [base.resize((90, 60)).quantize(32), Image.fromarray(picture(90, 60, 5)).quantize(32)]
    frames[0].save(os.path.join(SYNTHETIC, "animated.gif"), save_all=True, append_images=frames[1:], duration=100)
    base.resize((111, 75)).save(os.path.join(SYNTHETIC, "rgb24.bmp"))
    palette.save(os.path.join(SYNTHETIC, "palette8.bmp"))
    # A decompression bomb: a valid header claiming 100000 x 100000 pixels, and no data.
    os.makedirs(os.path.join(IMAGES, "bad"), exist_ok=True)
    with open(os.path.join(IMAGES, "bad", "bomb.png"), "wb") as f:
        ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
        f.write(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr +
                struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF))
    # HD-transform branches: wide, portrait, an exact multiple of 560, a tiny one (upscaled to one tile).
    Image.fromarray(picture(1500, 300, 3)).save(os.path.join(SYNTHETIC, "wide.jpg"), quality=85)
    Image.fromarray(picture(240, 1300, 4)).save(os.path.join(SYNTHETIC, "tall.png"))
    Image.fromarray(picture(1120, 560, 6)).save(os.path.join(SYNTHETIC, "exact.jpg"), quality=85)
    Image.fromarray(picture(40, 30, 7)).save(os.path.join(SYNTHETIC, "tiny.png"))


def hd_transform(image, hd_num, tile):
    """The reference's Image_transform (spec 3.3), with `tile` for 560."""
    width, height = image.size
    trans = width < height
    if trans:
        image = image.transpose(Image.Transpose.TRANSPOSE)
        width, height = image.size
    ratio = width / height
    scale = 1
    while scale * np.ceil(scale / ratio) <= hd_num:
        scale += 1
    scale -= 1
    scale = min(np.ceil(width / tile), scale)
    new_w = int(scale * tile)
    new_h = int(new_w / ratio)
    resized = image if image.size == (new_w, new_h) else image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    target = int(np.ceil(new_h / tile) * tile)
    padded = Image.new("RGB", (new_w, target), (255, 255, 255))
    padded.paste(resized, (0, 0))
    if trans:
        padded = padded.transpose(Image.Transpose.TRANSPOSE)
    resized_size = (new_h, new_w) if trans else (new_w, new_h)
    return padded, resized_size


def crops(padded, tile):
    """ToTensor + Normalize, the bicubic global view, and row-major tiles: (1 + h*w, 3, tile, tile)."""
    x = torch.from_numpy(np.asarray(padded).copy()).permute(2, 0, 1).float().div(255)
    x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    glb = F.interpolate(x[None], size=(tile, tile), mode="bicubic", align_corners=False)
    h, w = x.shape[1] // tile, x.shape[2] // tile
    tiles = x.reshape(3, h, tile, w, tile).permute(1, 3, 0, 2, 4).reshape(h * w, 3, tile, tile)
    return torch.cat([glb, tiles]).numpy().astype(np.float32)


def main():
    torch.set_num_threads(1)
    write_synthetic()
    os.makedirs(GOLDEN, exist_ok=True)
    inputs = sorted(os.path.join("synthetic", f) for f in os.listdir(SYNTHETIC)) + \
        ["cars1.jpg", "cars2.jpg", "cars3.jpg", "screenshot.jpg", "dubai.png"]
    hd_pixels = {"cars1.jpg": [1, 6], "synthetic/wide.jpg": [6], "synthetic/tall.png": [4],
                 "synthetic/exact.jpg": [2], "synthetic/tiny.png": [24], "dubai.png": [1], "synthetic/rgba.png": [4]}
    cases = []
    for name in inputs:
        image = Image.open(os.path.join(IMAGES, name)).convert("RGB")
        stem = name.replace("/", "_")
        case = {"input": name, "size": list(image.size), "hd": []}
        # The large HD-branch inputs are checked after the transform; their decoders are covered by the small ones.
        if name.startswith("synthetic") and image.size[0] * image.size[1] < 300_000:
            case["decoded"] = stem + ".decoded.png"
            image.save(os.path.join(GOLDEN, case["decoded"]))
        for hd_num in [1, 2, 4, 6, 9, 12, 16, 24, 25]:
            padded, resized = hd_transform(image, hd_num, 560)
            entry = {"hd_num": hd_num, "resized": list(resized), "padded": list(padded.size),
                     "grid": [padded.size[1] // 560, padded.size[0] // 560]}
            if hd_num in hd_pixels.get(name, []):
                entry["pixels"] = f"{stem}.hd{hd_num}.png"
                padded.save(os.path.join(GOLDEN, entry["pixels"]))
            case["hd"].append(entry)
        cases.append(case)
    # Crops, whole, at the tiny models' 56-px tile; sampled at the real 560-px tile.
    crop_cases = []
    for name, hd_num, tile in [("cars1.jpg", 6, 56), ("synthetic/tall.png", 4, 56), ("dubai.png", 3, 56)]:
        image = Image.open(os.path.join(IMAGES, name)).convert("RGB")
        padded, _ = hd_transform(image, hd_num, tile)
        file = f"{name.replace('/', '_')}.hd{hd_num}.tile{tile}.crops.npy"
        np.save(os.path.join(GOLDEN, file), crops(padded, tile))
        crop_cases.append({"input": name, "hd_num": hd_num, "tile": tile, "crops": file})
    image = Image.open(os.path.join(IMAGES, "cars3.jpg")).convert("RGB")
    padded, _ = hd_transform(image, 6, 560)
    full = crops(padded, 560)
    rng = np.random.default_rng(0)
    index = np.stack([rng.integers(0, s, 4000) for s in full.shape], axis=1)
    sampled = {"input": "cars3.jpg", "hd_num": 6, "tile": 560, "shape": list(full.shape),
               "index": index.tolist(), "values": full[tuple(index.T)].tolist()}
    with open(os.path.join(GOLDEN, "images.json"), "w") as f:
        json.dump({"cases": cases, "crops": crop_cases, "sampled_crops": sampled}, f)
    print(f"{len(cases)} inputs, {len(crop_cases)} crop goldens")


if __name__ == "__main__":
    main()
