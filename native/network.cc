// Building a Network: the configuration checks and the packing of PyTorch's weights into the
// kernel's panel layout (kernels/kernel.h), once at construction; and the per-call argument
// checks of forward(); allocateFloats. The forward pass itself is forward.cc.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "birnn.h"
#include "kernels/kernel.h"
#include "network_impl.h"

namespace birnn {

namespace {

using detail::Floats;
using detail::PanelGeometry;
using idx = std::ptrdiff_t;

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// PyTorch's [G*H, K] gate matrix regrouped into the panel layout of kernel.h, and its tail's
// rows (TailArgs) into `tail`.
Floats packGates(const float* w, int K, int H, const PanelGeometry& geo, Floats& tail) {
  Floats out(static_cast<std::size_t>(K) * geo.paddedColumns(), 0.0f);
  const idx ldw = detail::tailRowFloats(K, geo.lanes);
  tail.assign(static_cast<std::size_t>(geo.G) * geo.tail * ldw, 0.0f);
  for (int p = 0; p < geo.panels; ++p) {
    const int units = geo.unitsOf(p), tiled = geo.tiledUnitsOf(p), PW = geo.tiledWidthOf(p);
    for (int g = 0; g < geo.G; ++g) {
      for (int u = 0; u < units; ++u) {
        const int unit = p * geo.units + u;
        if (unit >= H) break;
        const float* row = w + (static_cast<idx>(g) * H + unit) * K;
        if (u >= tiled) {
          std::copy(row, row + K, tail.data() + (g * geo.tail + u - tiled) * ldw);
          continue;
        }
        float* col = out.data() + static_cast<idx>(p) * K * geo.width() + g * tiled + u;
        for (int k = 0; k < K; ++k) col[static_cast<idx>(k) * PW] = row[k];
      }
    }
  }
  return out;
}

// A bias (or any per-gate vector of G*H values) in the same interleaved column order.
Floats packGateVector(const float* v, int H, const PanelGeometry& geo) {
  Floats out(geo.paddedColumns(), 0.0f);
  for (int p = 0; p < geo.panels; ++p) {
    const int units = geo.unitsOf(p);
    for (int g = 0; g < geo.G; ++g) {
      for (int u = 0; u < units && p * geo.units + u < H; ++u) {
        out[static_cast<idx>(p) * geo.width() + g * units + u] = v[static_cast<idx>(g) * H + p * geo.units + u];
      }
    }
  }
  return out;
}

// W_hr [Hout, H] as the B operand of cellOut [m, H] x W_hr^T, in panels of `width` columns.
Floats packProjection(const float* w, int Hout, int H, int width, int panels) {
  Floats out(static_cast<std::size_t>(panels) * H * width, 0.0f);
  for (int o = 0; o < Hout; ++o) {
    float* col = out.data() + static_cast<idx>(o / width) * H * width + o % width;
    for (int k = 0; k < H; ++k) col[static_cast<idx>(k) * width] = w[static_cast<idx>(o) * H + k];
  }
  return out;
}

}  // namespace

Network::Network(const Config& config, const LayerWeights* weights, Isa isa)
    : Network(config, weights, detail::kernelsFor(isa)) {}

Network::Network(const Config& config, const LayerWeights* weights, const detail::Kernels& kernels)
    : impl_(new Impl) {
  Impl& n = *impl_;
  require(config.inputSize > 0 && config.hiddenSize > 0 && config.numLayers > 0,
          "config: inputSize, hiddenSize and numLayers must be positive");
  require(config.projSize >= 0, "config: projSize must not be negative");
  require(config.projSize == 0 || config.mode == Mode::Lstm, "config: only an LSTM has a projection");
  require(config.mode >= Mode::RnnTanh && config.mode <= Mode::Lstm, "config: unknown mode");
  require(weights != nullptr, "weights: missing");
  n.cfg = config;
  n.isa = kernels.isa;
  n.k = &kernels;
  n.H = config.hiddenSize;
  n.Hout = config.projSize ? config.projSize : config.hiddenSize;
  n.D = config.bidirectional ? 2 : 1;
  n.geo = detail::geometryFor(config.mode, n.H, n.k->lanes, n.k->tailUnits);
  n.projWidth = detail::kProjectionVectors * n.k->lanes;
  n.projPanels = (n.Hout + n.projWidth - 1) / n.projWidth;
  const int G = n.geo.G;
  for (int l = 0; l < config.numLayers; ++l) {
    for (int d = 0; d < n.D; ++d) {
      const LayerWeights& w = weights[l * n.D + d];
      const std::string where = "weights[layer " + std::to_string(l) + (d ? ", reverse]" : "]");
      require(w.wIh && w.wHh, where + ": weight_ih and weight_hh are required");
      require(!config.bias || (w.bIh && w.bHh), where + ": bias_ih and bias_hh are required");
      require(!config.projSize || w.wHr, where + ": weight_hr is required with a projection");
      PackedLayer p;
      p.in = l == 0 ? config.inputSize : n.D * n.Hout;
      p.wih = packGates(w.wIh, p.in, n.H, n.geo, p.wihTail);
      p.whh = packGates(w.wHh, n.Hout, n.H, n.geo, p.whhTail);
      // Summed biases seed the input projection; the GRU's b_hn stays apart since r scales it.
      std::vector<float> bias(static_cast<std::size_t>(G) * n.H, 0.0f);
      if (config.bias) {
        for (int i = 0; i < G * n.H; ++i) {
          const bool gruNewGate = config.mode == Mode::Gru && i >= 2 * n.H;
          bias[i] = gruNewGate ? w.bIh[i] : w.bIh[i] + w.bHh[i];
        }
      }
      p.bias = packGateVector(bias.data(), n.H, n.geo);
      if (config.mode == Mode::Gru) {
        p.bhn.assign(n.geo.paddedUnits(), 0.0f);
        if (config.bias) std::copy(w.bHh + 2 * n.H, w.bHh + 3 * n.H, p.bhn.begin());
      }
      if (config.projSize) p.whr = packProjection(w.wHr, n.Hout, n.H, n.projWidth, n.projPanels);
      n.layers.push_back(std::move(p));
    }
  }
}

Network::~Network() = default;
const Config& Network::config() const { return impl_->cfg; }
Isa Network::isa() const { return impl_->isa; }
void Network::trim() const { impl_->workspaces.trim(); }

void Network::forward(const Call& call) const {
  const Impl& n = *impl_;
  require(call.seqLen > 0, "seqLen: expected at least 1, received " + std::to_string(call.seqLen));
  require(call.batch > 0, "batch: expected at least 1, received " + std::to_string(call.batch));
  require(call.input && call.hN, "input and hN are required");
  require(n.cfg.mode == Mode::Lstm || !call.c0, "c0: only an LSTM has a cell state");
  require(call.threads > 0, "threads: expected at least 1, received " + std::to_string(call.threads));
  // Every buffer of a call holds at most T * N rows of the widest row: its size, computed in 64
  // bits, must fit this build's addresses (a 32-bit one: wasm32), or an index would wrap.
  const double widest = std::max({n.cfg.inputSize, n.D * n.Hout, n.geo.paddedColumns(), n.geo.paddedUnits()});
  const double bytes = static_cast<double>(call.seqLen) * call.batch * widest * sizeof(float);
  require(bytes < static_cast<double>(PTRDIFF_MAX),
          "seqLen x batch: this call's buffers would take " + std::to_string(static_cast<long long>(bytes / (1 << 20))) +
              " MiB, past what this build can address; make the batch or T smaller");
  if (call.lengths) {
    for (int i = 0; i < call.batch; ++i) {
      require(call.lengths[i] >= 1 && call.lengths[i] <= call.seqLen,
              "lengths[" + std::to_string(i) + "]: expected a length in [1, " + std::to_string(call.seqLen) +
                  "], received " + std::to_string(call.lengths[i]));
    }
  }
  n.run(call);
}

bool leavesPadding(const Call& call) {
  return call.lengths && std::any_of(call.lengths, call.lengths + call.batch,
                                     [&](int32_t length) { return length < call.seqLen; });
}

float* allocateFloats(std::size_t n, std::size_t& capacity, bool zeroed) {
#if BIRNN_MMAP
  if (const std::size_t bytes = n * sizeof(float); bytes >= detail::kMappedBytes) {
    float* p = static_cast<float*>(detail::PageCache::instance().take(bytes, capacity, zeroed));
    capacity /= sizeof(float);
    return p;
  }
#endif
  void* p = zeroed ? std::calloc(n ? n : 1, sizeof(float)) : std::malloc((n ? n : 1) * sizeof(float));
  if (p == nullptr) throw std::bad_alloc();
  capacity = n;
  return static_cast<float*>(p);
}

void freeFloats(float* p, std::size_t capacity) {
  if (p == nullptr) return;
#if BIRNN_MMAP
  if (capacity * sizeof(float) >= detail::kMappedBytes) {
    detail::PageCache::instance().give(p, capacity * sizeof(float));
    return;
  }
#else
  (void)capacity;
#endif
  std::free(p);
}

void trimFloats() {
#if BIRNN_MMAP
  detail::PageCache::instance().trim();
#endif
}

}  // namespace birnn
