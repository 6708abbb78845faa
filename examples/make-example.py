#!/usr/bin/python3
"""The bundled example for `npm start` and docs/cli.md, made with real PyTorch.

    /usr/bin/python3 examples/make-example.py

Writes, next to this script:
  model.safetensors  the state_dict of nn.LSTM(16, 32, num_layers=2, bidirectional=True)
  input.npy          64 sequences of 50 steps, time-major (50, 64, 16) float32
  input.jsonl        8 sequences of 5 to 40 steps, one per line (ragged)
  expected.safetensors  PyTorch's results, to check `birnn score` against:
                     npy_last (64, 64), npy_mean (64, 64) and jsonl_last (8, 64)
Deterministic (seeded): re-running gives the same files.
"""

import json
import os
import sys

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "fixtures"))
from generate import save_safetensors  # noqa: E402  (the fixtures' minimal safetensors writer)

I, H, LAYERS, T, N = 16, 32, 2, 50, 64
LENGTHS = [12, 40, 5, 27, 33, 8, 19, 40]


def last_step(out, lengths):
    """Forward direction at each sequence's last valid step, backward direction at step 0."""
    rows = [torch.cat([out[n - 1, b, :H], out[0, b, H:]]) for b, n in enumerate(lengths)]
    return torch.stack(rows)


def main():
    torch.manual_seed(5)
    lstm = torch.nn.LSTM(I, H, num_layers=LAYERS, bidirectional=True).eval()
    save_safetensors(lstm.state_dict(), os.path.join(HERE, "model.safetensors"),
                     {"torch": torch.__version__, "made_by": "examples/make-example.py"})

    x = torch.randn(T, N, I)
    np.save(os.path.join(HERE, "input.npy"), x.numpy())
    with torch.no_grad():
        full, _ = lstm(x)

    # JSONL: rounded to 4 decimals to keep the file small; PyTorch scores exactly those values.
    seqs = [torch.randn(n, I).mul(1e4).round().div(1e4) for n in LENGTHS]
    with open(os.path.join(HERE, "input.jsonl"), "w") as f:
        for s in seqs:
            f.write(json.dumps([[round(v, 4) for v in row] for row in s.tolist()], separators=(",", ":")) + "\n")
    padded = torch.nn.utils.rnn.pad_sequence(seqs)  # (T, N, I)
    with torch.no_grad():
        packed_out, _ = lstm(pack_padded_sequence(padded, torch.tensor(LENGTHS), enforce_sorted=False))
    out, _ = pad_packed_sequence(packed_out)

    save_safetensors({"npy_last": last_step(full, [T] * N), "npy_mean": full.mean(0),
                      "jsonl_last": last_step(out, LENGTHS)},
                     os.path.join(HERE, "expected.safetensors"), {"torch": torch.__version__})


if __name__ == "__main__":
    main()
