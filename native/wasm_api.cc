// The C ABI of wasm/birnn.wasm: the only file of the WebAssembly build that knows the wasm
// boundary, as binding.cc is for Node. Sizes and pointers into the module's memory come in;
// the caller (lib/engines/wasm-kernel.ts) allocates every buffer with birnn_malloc, and frees it.
//
// Errors: the kernel throws std::invalid_argument (and operator new fails when memory is full),
// but the wasm32-wasi libc++abi has no exception runtime. Sources are compiled with exceptions
// on and no wasm exception handling, so LLVM drops every landing pad and a `throw` is a call to
// __cxa_throw, defined here: it keeps the message and traps. The trap reaches JS as a
// WebAssembly.RuntimeError; the caller reads birnn_last_error() and throws the instance away
// (its stack pointer and heap are left where the trap found them), then makes a fresh one.
// TypeScript checks every argument first, so a trap is a bug or memory running out.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <typeinfo>
#include <vector>

#include "birnn.h"
#include "kernels/kernel.h"

#define BIRNN_EXPORT(name) extern "C" __attribute__((export_name(#name), visibility("default")))

namespace birnn::detail {
const Kernels& kernelsWasm();  // kernels/wasm.cc
}

namespace {

char lastError[512] = "";

void setError(const char* message) {
  std::strncpy(lastError, message, sizeof lastError - 1);
  lastError[sizeof lastError - 1] = '\0';
}

[[noreturn]] void fail(const char* message) {
  setError(message);
  __builtin_trap();
}

}  // namespace

// ---- the exception runtime: a throw keeps its message and traps -------------------------------

extern "C" void* __cxa_allocate_exception(std::size_t size) noexcept {
  void* p = std::malloc(size);
  if (!p) fail("out of memory");
  return p;
}

extern "C" [[noreturn]] void __cxa_throw(void* thrown, std::type_info* type, void (*)(void*)) {
  // Every exception the kernel and libc++ throw derives from std::exception; these are they.
  const std::type_info& t = *type;
  const bool known = t == typeid(std::invalid_argument) || t == typeid(std::out_of_range) ||
                     t == typeid(std::length_error) || t == typeid(std::logic_error) ||
                     t == typeid(std::runtime_error) || t == typeid(std::bad_alloc) ||
                     t == typeid(std::bad_array_new_length) || t == typeid(std::exception);
  fail(known ? static_cast<std::exception*>(thrown)->what() : "an exception of an unknown type");
}

// libc++ built without exceptions reports its own failures (a vector too long, ...) here, and
// its ABI layer (type_info, ...) through abort_message: both would print through WASI's stderr.
extern "C" [[noreturn]] void abort_message(const char* format, ...) { fail(format); }
namespace std {
inline namespace _LIBCPP_ABI_NAMESPACE {
[[noreturn]] void __libcpp_verbose_abort(const char* format, ...) { fail(format); }
}  // namespace _LIBCPP_ABI_NAMESPACE
}  // namespace std

// operator new: the kernel's buffers; running out of the 4 GiB of wasm32 memory is an error the
// caller can report, not an abort that prints through a WASI import.
void* operator new(std::size_t size) {
  void* p = std::malloc(size ? size : 1);
  if (!p) fail("out of memory (a WebAssembly instance has at most 4 GiB)");
  return p;
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, std::align_val_t align) {
  void* p = std::aligned_alloc(static_cast<std::size_t>(align), (size + static_cast<std::size_t>(align) - 1) &
                                                                     ~(static_cast<std::size_t>(align) - 1));
  if (!p) fail("out of memory (a WebAssembly instance has at most 4 GiB)");
  return p;
}
void* operator new[](std::size_t size, std::align_val_t align) { return operator new(size, align); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

// ---- the API ---------------------------------------------------------------------------------

// Memory for every argument and result; null when the module's memory cannot grow that far.
BIRNN_EXPORT(birnn_malloc) void* birnnMalloc(std::size_t size) { return std::malloc(size ? size : 1); }
BIRNN_EXPORT(birnn_free) void birnnFree(void* p) { std::free(p); }

// The message of the throw that trapped the last call, NUL-terminated.
BIRNN_EXPORT(birnn_last_error) const char* birnnLastError() { return lastError; }

// config: [mode (spec.h's Mode id), inputSize, hiddenSize, projSize, numLayers, bidirectional,
// bias]. tensors: numLayers*D*k pointers, layer-major, direction-minor; per (layer, direction)
// weight_ih, weight_hh, [bias_ih, bias_hh when bias], [weight_hr when projSize > 0], as for the
// Node binding. Read only during the call: the network packs its own copy. Returns the network.
BIRNN_EXPORT(birnn_network_create)
birnn::Network* birnnNetworkCreate(const int32_t* config, const float* const* tensors) {
  birnn::Config c;
  c.mode = static_cast<birnn::Mode>(config[0]);
  c.inputSize = config[1];
  c.hiddenSize = config[2];
  c.projSize = config[3];
  c.numLayers = config[4];
  c.bidirectional = config[5] != 0;
  c.bias = config[6] != 0;
  const int D = c.bidirectional ? 2 : 1;
  if (c.numLayers < 1 || c.numLayers > 1 << 16) fail("config: numLayers must be positive");
  std::vector<birnn::LayerWeights> layers(static_cast<std::size_t>(c.numLayers) * D);
  const float* const* t = tensors;
  for (birnn::LayerWeights& w : layers) {
    w.wIh = *t++;
    w.wHh = *t++;
    if (c.bias) {
      w.bIh = *t++;
      w.bHh = *t++;
    }
    if (c.projSize > 0) w.wHr = *t++;
  }
  return new birnn::Network(c, layers.data(), birnn::detail::kernelsWasm());
}

BIRNN_EXPORT(birnn_network_free) void birnnNetworkFree(birnn::Network* network) { delete network; }

// sizes: [seqLen, batch, batchFirst]. h0, c0, lengths, output, cN and layers may be null (as in
// birnn::Call); every other pointer is required. Always one thread.
BIRNN_EXPORT(birnn_network_forward)
void birnnNetworkForward(const birnn::Network* network, const int32_t* sizes, const float* input, const float* h0,
                         const float* c0, const int32_t* lengths, float* output, float* hN, float* cN,
                         float* layers) {
  birnn::Call call;
  call.seqLen = sizes[0];
  call.batch = sizes[1];
  call.batchFirst = sizes[2] != 0;
  call.input = input;
  call.h0 = h0;
  call.c0 = c0;
  call.lengths = lengths;
  call.output = output;
  call.hN = hN;
  call.cN = cN;
  call.layers = layers;
  call.threads = 1;
  // The kernel leaves padded steps as it finds them (birnn.h): these come from malloc.
  const birnn::Config& c = network->config();
  const std::size_t outputFloats = static_cast<std::size_t>(call.seqLen) * call.batch * (c.bidirectional ? 2 : 1) *
                                   (c.projSize > 0 ? c.projSize : c.hiddenSize);
  if (output) std::memset(output, 0, outputFloats * sizeof(float));
  if (layers) std::memset(layers, 0, outputFloats * c.numLayers * sizeof(float));
  network->forward(call);
}
