"""A thin wrapper over ``onnxruntime.InferenceSession`` that returns outputs by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


def default_providers() -> list[str]:
    return ["CPUExecutionProvider"]


class Session:
    """One ONNX graph. ``run(feeds) -> {output_name: array}``."""

    def __init__(self, path: Path, providers=None):
        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=providers or default_providers())
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def input_type(self, name: str) -> str:
        return next(i.type for i in self.session.get_inputs() if i.name == name)
