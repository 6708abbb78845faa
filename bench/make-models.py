#!/usr/bin/python3
"""Benchmark models for birnn and its peers, made once with real PyTorch.

    /usr/bin/python3 bench/make-models.py      (bench/run.mjs runs it when bench/out is stale)

For every model: the state_dict as safetensors (for birnn), and the same module exported with
torch.onnx.export at opset 17 (native RNN/GRU/LSTM nodes; GRU with linear_before_reset=1; T and N
dynamic) for onnxruntime-node. For every fixed workload: its input, as safetensors. Every
contender's output, PyTorch's included, is checked against birnn's at run time. Everything goes to
bench/out/ (gitignored), with bench/out/models.json describing it.
Deterministic: each model and input is seeded from its name.
"""

import hashlib
import json
import os
import sys
import warnings
import zlib

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
sys.path.insert(0, os.path.join(HERE, "..", "test", "fixtures"))
from generate import save_safetensors  # noqa: E402  (the repo's plain-Python writer)

CLS = {"RNN_TANH": nn.RNN, "GRU": nn.GRU, "LSTM": nn.LSTM}

# name: (mode, input, hidden, layers, bidirectional)
MODELS = {
    "seed-rnn": ("RNN_TANH", 25, 50, 4, True),
    "big-rnn": ("RNN_TANH", 128, 256, 2, True),
    "big-gru": ("GRU", 128, 256, 2, True),
    "big-lstm": ("LSTM", 128, 256, 2, True),
}
# Sweep: one bidirectional LSTM layer, input 128; hidden varies (seq and batch vary at run time).
SWEEP_HIDDEN = [64, 128, 256, 512, 1024]
for h in SWEEP_HIDDEN:
    MODELS["sweep-lstm-h%d" % h] = ("LSTM", 128, h, 1, True)

# name: (model, T, N)
WORKLOADS = {
    "W-seed": ("seed-rnn", 5, 15),
    "W-b1-rnn": ("big-rnn", 100, 1),
    "W-b1-gru": ("big-gru", 100, 1),
    "W-b1-lstm": ("big-lstm", 100, 1),
    "W-b64-rnn": ("big-rnn", 100, 64),
    "W-b64-gru": ("big-gru", 100, 64),
    "W-b64-lstm": ("big-lstm", 100, 64),
}


def seed_of(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def make_module(name):
    mode, I, H, L, bi = MODELS[name]
    torch.manual_seed(seed_of(name))
    kw = dict(input_size=I, hidden_size=H, num_layers=L, bidirectional=bi)
    if mode == "RNN_TANH":
        kw["nonlinearity"] = "tanh"
    return CLS[mode](**kw).eval()


def export_onnx(m, mode, path, I):
    x = torch.zeros(3, 2, I)
    outs = ["output", "hN"] + (["cN"] if mode == "LSTM" else [])
    axes = {"input": {0: "T", 1: "N"}, "output": {0: "T", 1: "N"}}
    for o in outs[1:]:
        axes[o] = {1: "N"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), path, opset_version=17, input_names=["input"],
                          output_names=outs, dynamic_axes=axes, do_constant_folding=True)


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.abspath(__file__), "rb") as f:
        script_hash = hashlib.sha256(f.read()).hexdigest()[:16]
    meta = {"torch": torch.__version__}
    manifest = {"script": script_hash, "torch": torch.__version__, "models": {}, "workloads": {}}
    for name, (mode, I, H, L, bi) in MODELS.items():
        m = make_module(name)
        st = name + ".safetensors"
        onnx = name + ".onnx"
        save_safetensors(m.state_dict(), os.path.join(OUT, st), meta)
        export_onnx(m, mode, os.path.join(OUT, onnx), I)
        manifest["models"][name] = {"mode": mode, "inputSize": I, "hiddenSize": H,
                                    "numLayers": L, "bidirectional": bi,
                                    "safetensors": st, "onnx": onnx}
    for wl, (model, T, N) in WORKLOADS.items():
        I = MODELS[model][1]
        torch.manual_seed(seed_of(wl))
        x = torch.randn(T, N, I)
        io = wl + ".io.safetensors"
        save_safetensors({"input": x}, os.path.join(OUT, io), meta)
        manifest["workloads"][wl] = {"model": model, "T": T, "N": N, "io": io}
    with open(os.path.join(OUT, "models.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("make-models: torch %s, %d models, %d workloads -> %s"
          % (torch.__version__, len(MODELS), len(WORKLOADS), OUT))


if __name__ == "__main__":
    main()
