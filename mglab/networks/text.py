"""Stage 1 of 7: the T5 text encoder. Prompts -> token ids -> hidden states the decoder attends to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..onnx.session import Session


class TextEncoder:
    """Tokenizer (``tokenizer.json``) and T5 encoder (``text_encoder*.onnx``).

    Examples
    --------
    >>> enc = TextEncoder(tokenizer_path, onnx_path)          # doctest: +SKIP
    >>> ids, mask = enc.tokenize(["lofi piano", "rock"])       # doctest: +SKIP
    >>> hidden = enc.encode(ids, mask)                        # [2, n, d]  # doctest: +SKIP
    """

    def __init__(self, tokenizer_path: Path, onnx_path: Path, providers=None, output: str = "last_hidden_state"):
        self.output = output            # a masked model's graph gives encoder_hidden_states (projected, masked)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        pad_id = self.tokenizer.token_to_id("<pad>")
        self.length = (self.tokenizer.padding or {}).get("length")   # a fixed text length the model was trained on
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="<pad>", length=self.length)
        self.session = Session(onnx_path, providers)

    def tokenize(self, prompts: list[str], argument: str = "prompt") -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, right-padded to the longest prompt, or to the fixed length that
        ``tokenizer.json``'s padding sets (a melody model's codes then sit at the same positions whatever the
        prompt; a longer prompt is refused, the error naming ``argument``): both ``[batch, text_len]``."""
        enc = self.tokenizer.encode_batch(prompts)
        longest = max((len(e.ids) for e in enc), default=0)
        if self.length is not None and longest > self.length:
            raise ValueError(f"{argument} has {longest} tokens: this model's prompts are padded to a fixed length, "
                             f"{argument} must be at most {self.length} tokens")
        ids = np.array([e.ids for e in enc], dtype=np.int64)                   # [batch, text_len]
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)       # [batch, text_len]
        return ids, mask

    def encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """T5 last hidden state ``[batch, text_len, d]`` (raw: the decoder projects and masks it; a masked model's
        text graph gives the projected, masked states its LM reads)."""
        out = self.session.run({"input_ids": ids, "attention_mask": mask})[self.output]
        return out.astype(np.float32, copy=False)                               # [batch, text_len, d]
