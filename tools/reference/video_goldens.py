#!/usr/bin/env python3
"""Test videos (made with the ffmpeg command line, so they are real codec files) and golden frames and composites.

The reference side follows the reference's ixc_utils (spec 4): decord (PyPI) for frames and the average frame rate,
one frame per second, at most 32, Pillow bilinear resize of each frame to a long side of 1120, and the frame2img
composite drawn with Pillow (labels with DejaVu Sans at 40 px, where the reference uses SimHei), then Video_transform.

    python3 tools/reference/video_goldens.py
"""
import json
import os
import subprocess

import decord
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIDEOS = os.path.join(ROOT, "tests", "data", "videos")
GOLDEN = os.path.join(ROOT, "tests", "data", "golden", "videos")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

# name: ffmpeg arguments after the input options
MAKE = {
    "landscape.mp4": "-f lavfi -i testsrc2=size=320x180:rate=25:duration=3 -c:v libx264 -pix_fmt yuv420p",
    "portrait.webm": "-f lavfi -i testsrc2=size=144x256:rate=10:duration=2.5 -c:v libvpx -b:v 300k",
    "many_frames.mkv": "-f lavfi -i testsrc=size=96x54:rate=2:duration=40 -c:v libx264 -pix_fmt yuv420p",
    "mjpeg.avi": "-f lavfi -i testsrc2=size=160x120:rate=30:duration=2 -c:v mjpeg -q:v 3",
    # Bad inputs.
    "audio_only.mka": "-f lavfi -i sine=frequency=440:duration=1 -c:a pcm_s16le",
    "variable_rate.mkv": "-f lavfi -i testsrc=size=64x48:rate=10:duration=3 -vf select='not(between(n\\,5\\,14))' "
                         "-fps_mode vfr -c:v libx264 -pix_fmt yuv420p",
    # Frames of 1200 x 1: resized to a long side of 1120, the short side is 0 (the reference's resize fails too).
    "narrow.mkv": "-f lavfi -i color=c=red:size=1200x2:rate=4:duration=1 -vf format=rgb24,crop=1200:1:0:0 -c:v png",
}


def make_videos():
    os.makedirs(VIDEOS, exist_ok=True)
    for name, args in MAKE.items():
        path = os.path.join(VIDEOS, name)
        subprocess.run(f"ffmpeg -loglevel error -y {args} {path}", shell=True, check=True)
    with open(os.path.join(VIDEOS, "landscape.mp4"), "rb") as f:
        data = f.read()
    with open(os.path.join(VIDEOS, "truncated.mp4"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(os.path.join(VIDEOS, "empty.mp4"), "wb"):
        pass


def load_video(path, num_frm=32):
    video = decord.VideoReader(path, num_threads=1)
    fps = video.get_avg_fps()
    indices = list(range(0, len(video), round(fps)))
    if len(indices) > num_frm:
        step = len(indices) / (num_frm + 1)
        indices = [indices[int(i * step)] for i in range(num_frm)]
    frames = [Image.fromarray(video[i].asnumpy()) for i in indices]
    return frames, indices, fps, len(video)


def frame2img(frames, font, tile=560):
    resized = []
    for img in frames:
        w, h = img.size
        if w > h:
            size = (2 * tile, int(2 * tile / (w / h)))
        else:
            size = (int(2 * tile * (w / h)), 2 * tile)
        resized.append(img.resize(size, Image.Resampling.BILINEAR))
    pad = 40
    if w > h:  # the last frame's orientation, as the reference
        width = max(im.size[0] for im in resized)
        height = sum(im.size[1] + 10 + pad for im in resized)
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        y = 0
        for idx, im in enumerate(resized):
            canvas.paste(im, (0, pad + y))
            draw.text((0, y), f"<IMAGE {idx}>", font=font, fill="black")
            if idx + 1 < len(resized):
                line_y = pad + y + im.size[1] + 5
                draw.line([(0, line_y), (width, line_y)], fill="black", width=2)
            y += im.size[1] + 10 + pad
    else:
        width = sum(im.size[0] + 10 for im in resized)
        height = max(im.size[1] for im in resized) + pad
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        x = 0
        for idx, im in enumerate(resized):
            canvas.paste(im, (x, pad))
            draw.text((x, 0), f"<IMAGE {idx}>", font=font, fill="black")
            if idx + 1 < len(resized):
                draw.line([(x + im.size[0] + 5, 0), (x + im.size[0] + 5, height)], fill="black", width=2)
            x += im.size[0] + 10
    return canvas


def main():
    make_videos()
    os.makedirs(GOLDEN, exist_ok=True)
    font = ImageFont.truetype(FONT, 40)
    cases = []
    for name in ["landscape.mp4", "portrait.webm", "many_frames.mkv", "mjpeg.avi"]:
        frames, indices, fps, total = load_video(os.path.join(VIDEOS, name))
        composite = frame2img(frames, font)
        case = {"input": name, "fps": fps, "total_frames": total, "indices": indices,
                "composite_size": list(composite.size)}
        if composite.size[0] * composite.size[1] < 6_000_000:
            case["first_frame"] = name + ".frame0.png"
            frames[0].save(os.path.join(GOLDEN, case["first_frame"]))
            case["composite"] = name + ".composite.png"
            composite.save(os.path.join(GOLDEN, case["composite"]))
        cases.append(case)
        print(name, fps, total, indices[:5], composite.size)
    with open(os.path.join(GOLDEN, "videos.json"), "w") as f:
        json.dump({"font": FONT, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
