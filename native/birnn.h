// birnn kernel: PyTorch's nn.RNN / nn.GRU / nn.LSTM forward pass for inference.
// Plain C++17 with no Node headers: sizes and pointers in, results out, so the kernel can be
// tested and benchmarked from C++ alone. native/binding.cc is the only file that knows Node.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "spec.h"  // Mode, Isa and their names: the contract with the TypeScript layer

namespace birnn {

namespace detail {
struct Kernels;
}

// Best instruction set this CPU (and OS, for the AVX register state) supports.
Isa detectIsa();
bool isaSupported(Isa isa);
std::vector<Isa> supportedIsas();  // best first; always ends with Generic
const char* isaName(Isa isa);  // spec::kIsas' name
// A spec::kIsas name ("generic", "avx2", "avx512"); throws std::invalid_argument for anything else.
Isa parseIsa(const std::string& name);

struct Config {
  Mode mode = Mode::Lstm;
  int inputSize = 0;
  int hiddenSize = 0;
  int projSize = 0;  // 0: no projection (LSTM only)
  int numLayers = 1;
  bool bidirectional = false;
  bool bias = true;
};

// One (layer, direction)'s PyTorch parameters, row-major float32 exactly as in the state_dict.
// G is spec::gates(mode) (1 RNN, 3 GRU, 4 LSTM), H hiddenSize, Hout projSize or hiddenSize,
// in = inputSize for layer 0 and D*Hout above it. Only read during construction.
struct LayerWeights {
  const float* wIh = nullptr;  // [G*H, in]
  const float* wHh = nullptr;  // [G*H, Hout]
  const float* bIh = nullptr;  // [G*H], null when !bias
  const float* bHh = nullptr;  // [G*H], null when !bias
  const float* wHr = nullptr;  // [Hout, H], null when projSize == 0
};

// Memory for at least n floats, zero-filled when `zeroed` (a Call's outputs where it leaves
// padding: leavesPadding); sets `capacity` to what was allocated, which freeFloats takes back.
// Large sizes are mapped from the OS and, once freed, kept process-wide (up to 64 MiB) for later
// allocations of about their size (blocks up to 32 MiB); trimFloats() returns those to the OS.
// Throws std::bad_alloc.
float* allocateFloats(std::size_t n, std::size_t& capacity, bool zeroed);
void freeFloats(float* p, std::size_t capacity);
void trimFloats();

// Threads of the process-wide pool that every Network's calls compute on: the CPUs this process
// may run on, within its cgroup's CPU quota, or BIRNN_POOL_THREADS; at least 1.
int computeThreads();

// Work posted to the pool (post): a task computes its forward calls on the pool thread that
// starts it, which holds a compute slot for it, so no other thread waits for the call.
class Task {
 public:
  virtual ~Task() = default;
  virtual void run() noexcept = 0;
};
// Queues `task` (tagged with `owner`, for withdraw) to start on the pool when a compute slot is
// free, in the order posted, after the threads already waiting for a slot in forward(); where the
// pool has no thread, runs it at once on this thread. Never blocks for a slot. The pool deletes
// the task after run() returns.
void post(const void* owner, std::unique_ptr<Task> task);
// Takes back `owner`'s tasks that have not started (returned, for the caller to delete on its
// own thread), then waits until none of its tasks is running (so never call it from one).
std::vector<std::unique_ptr<Task>> withdraw(const void* owner);

// One forward call. All pointers are caller-owned and must stay valid for the call.
struct Call {
  int seqLen = 0;  // T
  int batch = 0;   // N (unbatched input is N = 1)
  bool batchFirst = false;
  const float* input = nullptr;      // [T, N, in] or [N, T, in]
  const float* h0 = nullptr;         // [L*D, N, Hout] or null for zeros
  const float* c0 = nullptr;         // [L*D, N, H] or null for zeros (LSTM)
  const int32_t* lengths = nullptr;  // [N], each in [1, T], or null for all T
  // Steps past a sequence's length are left as they arrive in output and layers, which must then
  // arrive zero-filled (leavesPadding); every other element of every output is written.
  float* output = nullptr;           // [T, N, D*Hout] or [N, T, D*Hout], or null: not wanted
  float* hN = nullptr;               // [L*D, N, Hout]
  float* cN = nullptr;               // [L*D, N, H], LSTM only (may be null otherwise)
  float* layers = nullptr;           // null, or [L] x output layout: every layer's full output
  int threads = 1;                   // upper bound on threads used; results do not depend on it
};

// Whether some sequence of `call` is shorter than seqLen, so that its outputs must arrive
// zero-filled (Call::output); lengths are checked by Network::forward.
bool leavesPadding(const Call& call);

class Network {
 public:
  // weights has numLayers * D entries, layer-major, direction-minor. Packs them into the
  // kernel's own layout; throws std::invalid_argument on a bad config or missing tensor.
  Network(const Config& config, const LayerWeights* weights, Isa isa);
  // Internal, for the kernel tests: runs on the given kernels, e.g. a portable build of another
  // ISA's tile geometry on a CPU that lacks that ISA.
  Network(const Config& config, const LayerWeights* weights, const detail::Kernels& kernels);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Thread-safe: any number of calls may run at once on one Network.
  // Throws std::invalid_argument on bad sizes or lengths.
  void forward(const Call& call) const;
  // Frees the work buffers kept between calls (calls in flight keep theirs). Thread-safe.
  void trim() const;

  const Config& config() const;
  Isa isa() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace birnn
