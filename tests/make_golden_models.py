#!/usr/bin/env python3
"""Rebuilds the checkpoint of every golden case (tests/data/golden/{,multimodal/}*/case.json) under OUT/.

CTest runs this once, as the fixture of the golden tests; it needs numpy only.
    python3 tests/make_golden_models.py OUT
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    out = sys.argv[1]
    golden = os.path.join(ROOT, "tests", "data", "golden")
    for suite, prefix in (("", ""), ("multimodal", "multimodal_")):
        folder = os.path.join(golden, suite)
        for case in sorted(os.listdir(folder)):
            case_file = os.path.join(folder, case, "case.json")
            if not os.path.exists(case_file):
                continue
            args = json.load(open(case_file))["generator_args"]
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"),
                            "--out", os.path.join(out, prefix + case), *args], check=True)


if __name__ == "__main__":
    main()
