"""Quantized variants made the way the published ``Xenova/musicgen-*`` files were: see :mod:`mglab.onnx.quantize`.

    python scripts/quantize.py data/models/tiny-musicgen/onnx/decoder_model_merged.onnx q8 q4 ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mglab.onnx.quantize import VARIANTS, main, make  # noqa: E402, F401

if __name__ == "__main__":
    main()
