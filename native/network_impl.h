// What a Network holds once built: its sizes, its weights packed for its kernels, and its idle
// workspaces. Shared by construction (network.cc) and the forward pass (forward.cc).
#pragma once

#include <vector>

#include "birnn.h"
#include "kernels/kernel.h"
#include "workspace.h"

namespace birnn {

// One (layer, direction)'s weights in the kernel's panel layout (kernels/kernel.h).
struct PackedLayer {
  int in = 0;  // input width: inputSize for layer 0, D * Hout above it
  detail::Floats wih, whh;
  detail::Floats wihTail, whhTail;  // their tails' rows (kernel.h's TailArgs), when the geometry has one
  detail::Floats bias;  // b_ih + b_hh (the GRU's new gate: b_ih only), seeds the input projection
  detail::Floats bhn;   // GRU: b_hn, which r scales
  detail::Floats whr;   // LSTM projection W_hr, in panels of projWidth columns
};

namespace detail {
// The network as the forward pass reads it (Network::Impl is private to Network).
struct PackedNetwork {
  Config cfg;
  Isa isa;
  const Kernels* k = nullptr;
  PanelGeometry geo;
  int H = 0, Hout = 0, D = 1;
  // The projection's panels: kProjectionVectors vectors wide, one of the widths gemm() serves.
  int projWidth = 0, projPanels = 0;
  std::vector<PackedLayer> layers;  // numLayers * D, layer-major, direction-minor
};
}  // namespace detail

struct Network::Impl : detail::PackedNetwork {
  mutable detail::WorkspacePool workspaces;

  void run(const Call& call) const;  // forward.cc

 private:
  // A plan of several groups (ThreadPlan::groups): each group of sequences on one thread.
  void runGroups(const Call& call, const detail::ThreadPlan& plan, const detail::WorkerPool::Lease& lease) const;
};

}  // namespace birnn
