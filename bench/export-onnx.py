#!/usr/bin/python3
"""ONNX export of a state_dict saved as safetensors, for onnxruntime-node on the same weights.

    /usr/bin/python3 bench/export-onnx.py bench/out/serve-standard.safetensors
                                    (bench/serve.mjs runs it when the .onnx is missing or stale)

Writes X.onnx next to X.safetensors with make-models.py's export (opset 17, native RNN/GRU/LSTM
nodes, T and N dynamic). The module is read off the tensors: the gate count gives the mode (an RNN
is taken as tanh, as birnn's default), the keys give layers and directions; load_state_dict is
strict, so weights that do not fit the module fail here rather than in a comparison later.
"""

import importlib.util
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("make_models", os.path.join(HERE, "make-models.py"))
make_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_models)  # its export_onnx and CLS; nothing runs on import
spec = importlib.util.spec_from_file_location("torch_runner", os.path.join(HERE, "contenders", "torch-runner.py"))
torch_runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_runner)  # its read_safetensors; it runs nothing on import either

MODES = {1: "RNN_TANH", 3: "GRU", 4: "LSTM"}


def export(path):
    state = torch_runner.read_safetensors(path)
    H = state["weight_hh_l0"].shape[1]
    mode = MODES[state["weight_hh_l0"].shape[0] // H]
    I = state["weight_ih_l0"].shape[1]
    L = len([k for k in state if re.fullmatch(r"weight_ih_l\d+", k)])
    bi = "weight_ih_l0_reverse" in state
    kw = dict(input_size=I, hidden_size=H, num_layers=L, bidirectional=bi)
    if mode == "RNN_TANH":
        kw["nonlinearity"] = "tanh"
    m = make_models.CLS[mode](**kw).eval()
    m.load_state_dict(state, strict=True)
    onnx = os.path.splitext(path)[0] + ".onnx"
    tmp = onnx + ".tmp"  # renamed when complete: a killed export leaves no .onnx that looks fresh
    make_models.export_onnx(m, mode, tmp, I)
    os.replace(tmp, onnx)
    print("export-onnx: %s(%d, %d, %d%s) -> %s" % (mode, I, H, L, ", bidirectional" if bi else "", onnx))


if __name__ == "__main__":
    torch.set_num_threads(1)
    for p in sys.argv[1:]:
        export(p)
