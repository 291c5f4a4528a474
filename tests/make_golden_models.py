#!/usr/bin/env python3
"""Rebuilds the checkpoint of every golden case (tests/data/golden/*/case.json) under OUT/<case>/.

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
    for case in sorted(os.listdir(golden)):
        args = json.load(open(os.path.join(golden, case, "case.json")))["generator_args"]
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"),
                        "--out", os.path.join(out, case), *args], check=True)


if __name__ == "__main__":
    main()
