#!/usr/bin/env python3
"""INRIA Person test split: gapstream's image-level accuracy and box AP@0.5 / CorLoc next to
OpenCV's HOG people detector.

Metrics come from gapstream.training.evaluate (the same code as ``gapstream eval``); HOG is
OpenCV 4's default people detector. Writes
benchmarks/results/accuracy.md and accuracy.json.

    python benchmarks/accuracy.py [--data data/INRIAPerson] [--models M.tflite ...]
"""

from __future__ import annotations

import sys

from gapstream.bench.accuracy import accuracy_main

if __name__ == "__main__":
    sys.exit(accuracy_main())
