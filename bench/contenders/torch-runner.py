#!/usr/bin/python3
"""PyTorch CPU contender, driven by bench/contenders/pytorch.mjs over stdin/stdout (JSON lines).

Started once per thread count, with the environment already set (LD_LIBRARY_PATH to a private
OpenBLAS, OMP/OPENBLAS_NUM_THREADS, OMP_WAIT_POLICY=passive). Commands:
  {"cmd": "info"}                          -> torch version, threads, which BLAS library is mapped
  {"cmd": "run", "model": ..., "config": ..., "input": io.safetensors, "out": path, "plan": {...}}
                                           -> writes the output (float32, [T, N, D*H]) to `out`,
                                              returns the per-call milliseconds
  --rss MODEL CONFIG_JSON IO               -> one forward, prints {"peakRss": bytes}
Timing is done here with perf_counter, around `module(x)` under torch.inference_mode().
"""

import json
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn

CLS = {"RNN_TANH": nn.RNN, "GRU": nn.GRU, "LSTM": nn.LSTM}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(buf, dtype=np.float32, count=(b - a) // 4, offset=8 + n + a)
        out[name] = torch.from_numpy(arr.copy()).reshape(t["shape"])
    return out


def build(model_path, cfg):
    kw = dict(input_size=cfg["inputSize"], hidden_size=cfg["hiddenSize"],
              num_layers=cfg["numLayers"], bidirectional=cfg["bidirectional"])
    if cfg["mode"] == "RNN_TANH":
        kw["nonlinearity"] = "tanh"
    m = CLS[cfg["mode"]](**kw).eval()
    m.load_state_dict(read_safetensors(model_path))
    return m


def vm_hwm():
    """Peak RSS of this process image in bytes (VmHWM; ru_maxrss would include the parent's
    pre-exec high-water mark, which Linux carries across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def blas_libraries():
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # make sure the BLAS is loaded
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if "blas" in path or "mkl" in path:
                libs.add(path)
    return sorted(libs)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def time_runs(fn, plan, first_ms):
    """Same plan as bench/lib/common.mjs timeRuns: the output call was the first warm-up."""
    slow = first_ms >= plan["slowMs"]
    warm_until = time.perf_counter() + plan["warmupMs"] / 1e3
    warmed = 0
    while not slow and (warmed < plan["warmup"] or time.perf_counter() < warm_until):
        slow = timed(fn) >= plan["slowMs"]
        warmed += 1
    times = []
    t1 = time.perf_counter()
    while True:
        times.append(timed(fn))
        slow = slow or times[0] >= plan["slowMs"]
        very_slow = max(first_ms, times[0]) >= plan["verySlowMs"]
        enough = 1 if very_slow else plan["minSlowReps"] if slow else plan["minReps"]
        if len(times) >= plan["maxReps"]:
            break
        if len(times) >= enough and (slow or (time.perf_counter() - t1) * 1e3 >= plan["budgetMs"]):
            break
    return times


CACHE = {}


def run(req):
    key = (req["model"], json.dumps(req["config"], sort_keys=True), req["input"])
    if key not in CACHE:  # keep the module across requests, so the output call warms it
        CACHE.clear()
        CACHE[key] = (build(req["model"], req["config"]), read_safetensors(req["input"])["input"])
    m, x = CACHE[key]
    with torch.inference_mode():
        if req.get("out"):
            m(x)[0].contiguous().numpy().astype(np.float32).tofile(req["out"])
        times = time_runs(lambda: m(x), req["plan"], req.get("firstMs", 0)) if req.get("plan") else []
    return {"times": times}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rss":
        m = build(sys.argv[2], json.loads(sys.argv[3]))
        x = read_safetensors(sys.argv[4])["input"]
        with torch.inference_mode():
            m(x)
        print(json.dumps({"peakRss": vm_hwm()}))
        return
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["cmd"] == "info":
                res = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                       "blas": blas_libraries(), "mkldnn": torch.backends.mkldnn.is_available()}
            elif req["cmd"] == "run":
                res = run(req)
            else:
                res = {"error": "unknown command %r" % req["cmd"]}
        except Exception as e:  # report, keep serving
            res = {"error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    torch.set_num_threads(int(__import__("os").environ.get("BENCH_TORCH_THREADS", "1")))
    main()
