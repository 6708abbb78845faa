// birnn Node-API binding: the only file that knows Node. It converts arguments and hands sizes and
// pointers to the kernel (birnn.h); spec() exports the TS/C++ contract of spec.h. The private
// TypeScript view of this surface is lib/engines/addon.ts.
//
// User input is validated once, in TypeScript. The checks here only protect memory (typed-array
// kinds and exact lengths, integer ranges, lengths[] within [1, seqLen], the config the kernel
// relies on), so a failure is a bug in the TS layer: every message starts "birnn internal: ".
//
// Context-aware: all state lives in the per-environment BirnnAddon instance and in the wrapped
// Network objects, so the addon loads in worker_threads and more than once per process.

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "birnn.h"

namespace {

// ---- errors ----------------------------------------------------------------------------------
// Messages name the argument, the expectation and what was received:
//   birnn internal: weights[3]: expected Float32Array of length 200, received length 150

constexpr const char* kInternal = "birnn internal: ";

template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// TypeError: the value is of the wrong kind. RangeError: right kind, wrong size or value.
#define BIRNN_REQUIRE_TYPE(env, cond, ...) \
  do { if (!(cond)) throw Napi::TypeError::New((env), Cat(kInternal, __VA_ARGS__)); } while (false)
#define BIRNN_REQUIRE_RANGE(env, cond, ...) \
  do { if (!(cond)) throw Napi::RangeError::New((env), Cat(kInternal, __VA_ARGS__)); } while (false)
#define BIRNN_REQUIRE(env, cond, ...) \
  do { if (!(cond)) throw Napi::Error::New((env), Cat(kInternal, __VA_ARGS__)); } while (false)

// A kernel exception (a failed kernel check, std::bad_alloc) as the message of a JS Error.
std::string KernelError(const std::exception& e) { return Cat(kInternal, e.what()); }

const char* TypedArrayName(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "TypedArray";
  }
}

// What was received, for error messages: "undefined", "number 2.5", "Float64Array of length 3".
std::string Describe(const Napi::Value& value) {
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return value.As<Napi::Boolean>().Value() ? "true" : "false";
    case napi_number: {
      const double number = value.As<Napi::Number>().DoubleValue();
      if (std::isnan(number)) return "number NaN";
      if (std::isinf(number)) return number > 0 ? "number Infinity" : "number -Infinity";
      if (std::trunc(number) == number && std::fabs(number) < 9007199254740992.0) {
        return Cat("number ", static_cast<long long>(number));
      }
      // Shortest form that reads back as the same double, as JS prints it.
      std::string text;
      for (int precision = 1; precision <= 17; ++precision) {
        std::ostringstream out;
        out.precision(precision);
        out << number;
        text = out.str();
        if (std::strtod(text.c_str(), nullptr) == number) break;
      }
      return Cat("number ", text);
    }
    case napi_string: {
      std::string text = value.As<Napi::String>().Utf8Value();
      if (text.size() > 40) text = text.substr(0, 40) + "...";
      return Cat("string '", text, "'");
    }
    case napi_symbol: return "symbol";
    case napi_bigint: return "bigint";
    case napi_function: return "function";
    default: break;
  }
  if (value.IsTypedArray()) {
    auto array = value.As<Napi::TypedArray>();
    return Cat(TypedArrayName(array.TypedArrayType()), " of length ", array.ElementLength());
  }
  if (value.IsArray()) return Cat("array of length ", value.As<Napi::Array>().Length());
  if (value.IsArrayBuffer()) {
    return Cat("ArrayBuffer of byteLength ", value.As<Napi::ArrayBuffer>().ByteLength());
  }
  if (value.IsDataView()) return "DataView";
  return "object";
}

// ---- argument readers --------------------------------------------------------------------------

constexpr int kMaxInt = std::numeric_limits<int>::max();

int GetInt(const Napi::Object& object, const char* key, const std::string& name, int min, int max) {
  Napi::Env env = object.Env();
  Napi::Value value = object.Get(key);
  BIRNN_REQUIRE_TYPE(env, value.IsNumber(), name, ": expected an integer, received ", Describe(value));
  const double number = value.As<Napi::Number>().DoubleValue();
  BIRNN_REQUIRE_TYPE(env, std::isfinite(number) && std::trunc(number) == number, name,
                     ": expected an integer, received ", Describe(value));
  BIRNN_REQUIRE_RANGE(env, number >= min && number <= max, name, ": expected an integer in [", min,
                      ", ", max, "], received ", Describe(value));
  return static_cast<int>(number);
}

bool GetBool(const Napi::Object& object, const char* key, const std::string& name) {
  Napi::Value value = object.Get(key);
  BIRNN_REQUIRE_TYPE(object.Env(), value.IsBoolean(), name, ": expected a boolean, received ",
                     Describe(value));
  return value.As<Napi::Boolean>().Value();
}

Napi::Object GetObject(const Napi::Value& value, const std::string& name) {
  BIRNN_REQUIRE_TYPE(value.Env(), value.IsObject() && !value.IsArray() && !value.IsFunction(),
                     name, ": expected an object, received ", Describe(value));
  return value.As<Napi::Object>();
}

bool IsAbsent(const Napi::Value& value) { return value.IsUndefined() || value.IsNull(); }

template <typename T>
struct ArrayKind;
template <>
struct ArrayKind<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
};
template <>
struct ArrayKind<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
};

// A typed array of exactly `length` elements. what() explains the length, e.g. "[2, 3, 50]": made
// only for a message, as a call's arrays are checked on every call.
template <typename T, typename What>
Napi::TypedArrayOf<T> GetArray(const Napi::Value& value, const char* name, size_t length, const What& what) {
  Napi::Env env = value.Env();
  constexpr napi_typedarray_type kType = ArrayKind<T>::type;
  const char* kind = TypedArrayName(kType);
  BIRNN_REQUIRE_TYPE(env, value.IsTypedArray() && value.As<Napi::TypedArray>().TypedArrayType() == kType,
                     name, ": expected ", kind, " of length ", length, " (", what(), "), received ",
                     Describe(value));
  auto array = value.As<Napi::TypedArrayOf<T>>();
  BIRNN_REQUIRE_RANGE(env, array.ElementLength() == length, name, ": expected ", kind, " of length ",
                      length, " (", what(), "), received length ", array.ElementLength());
  return array;
}

// Size arithmetic in size_t with an overflow check (sizes are ints, products may not fit).
size_t Mul(Napi::Env env, std::initializer_list<size_t> factors) {
  size_t product = 1;
  for (size_t factor : factors) {
    BIRNN_REQUIRE_RANGE(env, factor == 0 || product <= std::numeric_limits<size_t>::max() / factor,
                        "tensor size overflows size_t");
    product *= factor;
  }
  return product;
}

std::string Shape(std::initializer_list<long long> dims) {
  std::ostringstream out;
  out << '[';
  const char* sep = "";
  for (long long dim : dims) {
    out << sep << dim;
    sep = ", ";
  }
  out << ']';
  return out.str();
}

// "avx512, avx2, generic": the ISAs this CPU has, best first.
std::string SupportedIsas() {
  std::string list;
  for (birnn::Isa isa : birnn::supportedIsas()) list += Cat(list.empty() ? "" : ", ", birnn::isaName(isa));
  return list;
}

// "'generic', 'avx2' or 'avx512'": every ISA name of spec.h, for messages.
std::string IsaNames() {
  std::string list;
  for (int id = 0; id < birnn::spec::kIsaCount; ++id) {
    const char* sep = id == 0 ? "" : id + 1 == birnn::spec::kIsaCount ? " or " : ", ";
    list += Cat(sep, "'", birnn::spec::kIsas[id].name, "'");
  }
  return list;
}

// ---- network sizes -------------------------------------------------------------------------------

struct Sizes {
  int D, G, H, Hout, L, in;
  bool lstm;
  explicit Sizes(const birnn::Config& c)
      : D(c.bidirectional ? 2 : 1),
        G(birnn::spec::gates(c.mode)),
        H(c.hiddenSize),
        Hout(c.projSize > 0 ? c.projSize : c.hiddenSize),
        L(c.numLayers),
        in(c.inputSize),
        lstm(c.mode == birnn::Mode::Lstm) {}
  size_t LayerInput(int layer) const {
    return layer == 0 ? static_cast<size_t>(in) : static_cast<size_t>(D) * static_cast<size_t>(Hout);
  }
};

birnn::Config ReadConfig(const Napi::Value& value) {
  Napi::Env env = value.Env();
  Napi::Object object = GetObject(value, "config");
  birnn::Config config;
  config.mode = static_cast<birnn::Mode>(GetInt(object, "mode", "config.mode", 0, birnn::spec::kModeCount - 1));
  config.inputSize = GetInt(object, "inputSize", "config.inputSize", 1, kMaxInt);
  config.hiddenSize = GetInt(object, "hiddenSize", "config.hiddenSize", 1, kMaxInt);
  config.projSize = GetInt(object, "projSize", "config.projSize", 0, kMaxInt);
  config.numLayers = GetInt(object, "numLayers", "config.numLayers", 1, kMaxInt);
  config.bidirectional = GetBool(object, "bidirectional", "config.bidirectional");
  config.bias = GetBool(object, "bias", "config.bias");
  // The weight list has a weight_hr per layer only for an LSTM.
  BIRNN_REQUIRE_RANGE(env, config.projSize == 0 || config.mode == birnn::Mode::Lstm,
                      "config.projSize: expected 0 for a non-LSTM network (mode ",
                      birnn::spec::name(config.mode), "), received ", config.projSize);
  return config;
}

// weights: numLayers*D entries of k tensors each, layer-major, direction-minor, in the order
// wIh, wHh, [bIh, bHh], [wHr]. Returns pointers into the arrays; they are read only while the
// Network is constructed, so no reference is kept.
std::vector<birnn::LayerWeights> ReadWeights(const Napi::Value& value, const birnn::Config& config) {
  Napi::Env env = value.Env();
  const Sizes g(config);
  const bool proj = config.projSize > 0;
  const size_t k = 2 + (config.bias ? 2 : 0) + (proj ? 1 : 0);
  const size_t count = Mul(env, {static_cast<size_t>(g.L), static_cast<size_t>(g.D), k});
  BIRNN_REQUIRE_TYPE(env, value.IsArray(), "weights: expected an array of ", count,
                     " Float32Arrays, received ", Describe(value));
  auto array = value.As<Napi::Array>();
  BIRNN_REQUIRE_RANGE(env, array.Length() == count, "weights: expected an array of ", count,
                      " Float32Arrays (numLayers*D*", k, "), received array of length ",
                      array.Length());

  std::vector<birnn::LayerWeights> weights(static_cast<size_t>(g.L) * g.D);
  uint32_t index = 0;
  for (int layer = 0; layer < g.L; ++layer) {
    for (int dir = 0; dir < g.D; ++dir) {
      const std::string suffix = Cat("_l", layer, dir == 1 ? "_reverse" : "");
      auto next = [&](const char* torchName, size_t rows, size_t cols) -> const float* {
        const std::string name = Cat("weights[", index, "]");
        const std::string shape = cols ? Shape({(long long)rows, (long long)cols}) : Shape({(long long)rows});
        const std::string what = Cat(torchName, suffix, " ", shape);
        auto tensor =
            GetArray<float>(array.Get(index), name.c_str(), Mul(env, {rows, cols ? cols : 1}), [&] { return what; });
        ++index;
        return tensor.Data();  // Data() already points at byteOffset
      };
      birnn::LayerWeights& w = weights[static_cast<size_t>(layer) * g.D + dir];
      const size_t gh = Mul(env, {static_cast<size_t>(g.G), static_cast<size_t>(g.H)});
      w.wIh = next("weight_ih", gh, g.LayerInput(layer));
      w.wHh = next("weight_hh", gh, g.Hout);
      if (config.bias) {
        w.bIh = next("bias_ih", gh, 0);
        w.bHh = next("bias_hh", gh, 0);
      }
      if (proj) w.wHr = next("weight_hr", g.Hout, g.H);
    }
  }
  return weights;
}

birnn::Isa ReadIsa(const Napi::Value& value) {
  Napi::Env env = value.Env();
  BIRNN_REQUIRE_TYPE(env, value.IsString(), "isa: expected ", IsaNames(), ", received ", Describe(value));
  const std::string name = value.As<Napi::String>().Utf8Value();
  birnn::Isa isa = birnn::Isa::Generic;
  try {
    isa = birnn::parseIsa(name);
  } catch (const std::invalid_argument&) {
    throw Napi::RangeError::New(env, Cat(kInternal, "isa: expected ", IsaNames(), ", received ", Describe(value)));
  }
  BIRNN_REQUIRE(env, birnn::isaSupported(isa), "isa '", name,
                "' is not supported by this CPU (supported: ", SupportedIsas(), ")");
  return isa;
}

// ---- forward calls -------------------------------------------------------------------------------

// Floats from birnn::allocateFloats, owned until handed to a JS ArrayBuffer, which then frees
// them.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(length_, other.length_);
    std::swap(capacity_, other.capacity_);
    return *this;
  }
  ~Buffer() { birnn::freeFloats(data_, capacity_); }

  // Throws std::bad_alloc.
  float* Allocate(size_t length, bool zeroed) {
    birnn::freeFloats(data_, capacity_);
    data_ = nullptr;
    data_ = birnn::allocateFloats(length, capacity_, zeroed);
    length_ = length;
    return data_;
  }
  float* data() const { return data_; }
  size_t capacity() const { return capacity_; }
  // The JS array of `length` floats that owns the memory from now on.
  Napi::Float32Array Release(Napi::Env env) {
    const size_t capacity = capacity_;
    auto buffer = Napi::ArrayBuffer::New(env, data_, length_ * sizeof(float), [capacity](Napi::Env, void* p) {
      birnn::freeFloats(static_cast<float*>(p), capacity);
    });
    data_ = nullptr;
    return Napi::Float32Array::New(env, length_, buffer, 0);
  }

 private:
  float* data_ = nullptr;
  size_t length_ = 0, capacity_ = 0;
};

// The copies forward() makes of its inputs, kept for the next calls of the same network: a fresh
// multi-MB copy costs page faults on the main thread. Bounded like the kernel's work buffers;
// used on the main thread only (jobs are made and freed there), so it needs no lock.
class Staging {
 public:
  static constexpr size_t kKept = 16;  // 16 concurrent calls of one model stay warm
  static constexpr size_t kMaxBytes = size_t(256) << 20;

  // A copy of data[0, n), in the smallest kept buffer that holds it.
  Buffer copy(const float* data, size_t n) {
    auto best = idle_.end();
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if (it->capacity() >= n && (best == idle_.end() || it->capacity() < best->capacity())) best = it;
    }
    Buffer out;
    if (best != idle_.end()) {
      out = std::move(*best);
      idle_.erase(best);
    } else {
      out.Allocate(n, false);  // every float is copied over
    }
    std::copy(data, data + n, out.data());
    return out;
  }
  void keep(Buffer&& buffer) {
    size_t bytes = buffer.capacity() * sizeof(float);
    for (const auto& b : idle_) bytes += b.capacity() * sizeof(float);
    if (idle_.size() < kKept && bytes <= kMaxBytes) idle_.push_back(std::move(buffer));
  }
  void clear() { idle_.clear(); }

 private:
  std::vector<Buffer> idle_;
};

// One forward call's arguments and results. The kernel reads and writes through `call`.
// forwardSync reads the caller's arrays in place. forward() copies them (one memcpy each, into
// kept buffers): Node-API cannot pin an ArrayBuffer, and one detached by a transfer while the
// kernel runs could be freed under it; a reference would keep the array, not its memory.
struct Job {
  std::shared_ptr<const birnn::Network> network;
  std::shared_ptr<Staging> staging;
  birnn::Call call;
  std::vector<int32_t> lengths;  // copied: validated here, so JS cannot change them mid-run
  std::vector<Buffer> copies;
  // The outputs' lengths, and their memory once allocated.
  size_t outputLength = 0, stateLength = 0, cellLength = 0;
  bool lstm = false, returnOutput = true, returnLayers = false;
  // forward() allocates them on the pool thread that computes it (AllocateOutputs), so their pages
  // are touched off the main thread; forwardSync() writes into V8 arrays instead.
  Buffer output, hN, cN, layers;
  ~Job() {
    for (auto& c : copies) staging->keep(std::move(c));
  }

  // Zero-filled only where the kernel leaves padding. Throws std::bad_alloc.
  void AllocateOutputs() {
    const bool zeroed = birnn::leavesPadding(call);
    if (returnOutput) call.output = output.Allocate(outputLength, zeroed);
    call.hN = hN.Allocate(stateLength, false);
    if (lstm) call.cN = cN.Allocate(cellLength, false);
    if (returnLayers) call.layers = layers.Allocate(outputLength * layerCount, zeroed);
  }
  size_t layerCount = 0;

  // { output?, hN, cN?, layers? }, the arrays now owned by JS.
  Napi::Object Result(Napi::Env env) {
    Napi::Object result = Napi::Object::New(env);
    if (returnOutput) result.Set("output", output.Release(env));
    result.Set("hN", hN.Release(env));
    if (lstm) result.Set("cN", cN.Release(env));
    if (returnLayers) result.Set("layers", layers.Release(env));
    return result;
  }
};

// Checks `value` against the network; the outputs are allocated later (Job::AllocateOutputs).
// With `copy` (an asynchronous run) the inputs are copied into the job.
std::unique_ptr<Job> PrepareJob(const Napi::Value& value,
                                const std::shared_ptr<const birnn::Network>& network,
                                const std::shared_ptr<Staging>& staging, bool copy) {
  Napi::Env env = value.Env();
  const birnn::Config& config = network->config();
  const Sizes g(config);
  Napi::Object object = GetObject(value, "call");

  auto job = std::make_unique<Job>();
  job->network = network;
  job->staging = staging;
  birnn::Call& call = job->call;
  call.seqLen = GetInt(object, "seqLen", "call.seqLen", 1, kMaxInt);
  call.batch = GetInt(object, "batch", "call.batch", 1, kMaxInt);
  call.batchFirst = GetBool(object, "batchFirst", "call.batchFirst");
  const bool returnLayers = GetBool(object, "returnLayers", "call.returnLayers");
  // False when only the final states are wanted: the kernel then skips writing the output (which
  // every layer's output includes).
  const bool returnOutput =
      IsAbsent(object.Get("returnOutput")) || GetBool(object, "returnOutput", "call.returnOutput") || returnLayers;
  call.threads = GetInt(object, "threads", "call.threads", 1, birnn::spec::kMaxThreads);

  const size_t T = call.seqLen, N = call.batch, D = g.D, L = g.L;
  const size_t in = g.in, H = g.H, Hout = g.Hout;
  auto keep = [&](const Napi::Float32Array& array) -> const float* {
    if (!copy) return array.Data();
    job->copies.push_back(staging->copy(array.Data(), array.ElementLength()));
    return job->copies.back().data();
  };

  auto input = GetArray<float>(object.Get("input"), "call.input", Mul(env, {T, N, in}), [&] {
    return call.batchFirst ? Cat("[batch, seqLen, inputSize] = ", Shape({(long long)N, (long long)T, (long long)in}))
                           : Cat("[seqLen, batch, inputSize] = ", Shape({(long long)T, (long long)N, (long long)in}));
  });
  call.input = keep(input);

  Napi::Value h0 = object.Get("h0");
  if (!IsAbsent(h0)) {
    auto array = GetArray<float>(h0, "call.h0", Mul(env, {L, D, N, Hout}), [&] {
      return Cat("[numLayers*D, batch, Hout] = ", Shape({(long long)(L * D), (long long)N, (long long)Hout}));
    });
    call.h0 = keep(array);
  }
  Napi::Value c0 = object.Get("c0");
  if (!IsAbsent(c0)) {
    BIRNN_REQUIRE_TYPE(env, g.lstm, "call.c0: expected undefined for a non-LSTM network, received ",
                       Describe(c0));
    auto array = GetArray<float>(c0, "call.c0", Mul(env, {L, D, N, H}), [&] {
      return Cat("[numLayers*D, batch, hiddenSize] = ", Shape({(long long)(L * D), (long long)N, (long long)H}));
    });
    call.c0 = keep(array);
  }
  Napi::Value lengths = object.Get("lengths");
  if (!IsAbsent(lengths)) {
    auto array = GetArray<int32_t>(lengths, "call.lengths", N, [] { return "one per batch entry"; });
    job->lengths.assign(array.Data(), array.Data() + N);
    for (size_t i = 0; i < N; ++i) {
      const int32_t length = job->lengths[i];
      BIRNN_REQUIRE_RANGE(env, length >= 1 && static_cast<size_t>(length) <= T, "call.lengths[", i,
                          "]: expected an integer in [1, ", T, "] (seqLen), received ", length);
    }
    call.lengths = job->lengths.data();
  }

  // The outputs' sizes; the memory comes later, on the thread that runs the call.
  job->outputLength = Mul(env, {T, N, D, Hout});
  job->stateLength = Mul(env, {L, D, N, Hout});
  job->cellLength = Mul(env, {L, D, N, H});
  Mul(env, {L, job->outputLength});  // checked here: layers must fit size_t too
  job->lstm = g.lstm;
  job->returnOutput = returnOutput;
  job->returnLayers = returnLayers;
  job->layerCount = L;
  return job;
}

// forward()'s calls in one Node environment (the main thread's, or a worker's). Each is a task on
// the kernel's pool (birnn::post), whose thread allocates the outputs and computes; it comes back
// through one thread-safe function, which settles its promise on the environment's thread. No
// other thread waits for a call: a libuv thread in between cost each call two thread wake-ups.
class AsyncCalls {
 public:
  explicit AsyncCalls(Napi::Env env) : env_(env) {
    napi_value name = Napi::String::New(env, "birnn:forward");
    Check(napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr, this, Settle,
                                          &settle_));
    Check(napi_unref_threadsafe_function(env, settle_));  // referenced only while calls are in flight
    // Registered after the thread-safe function, so it runs before the function closes.
    Check(napi_add_env_cleanup_hook(env, Teardown, this));
  }

  Napi::Promise Start(std::unique_ptr<Job> job) {
    auto call = std::make_unique<Pending>(Pending{std::move(job), Napi::Promise::Deferred::New(env_), {}});
    Napi::Promise promise = call->deferred.Promise();
    auto task = std::make_unique<Compute>(this, std::move(call));
    if (inFlight_ == 0) Check(napi_ref_threadsafe_function(env_, settle_));
    ++inFlight_;
    try {
      birnn::post(this, std::move(task));
    } catch (const std::exception& e) {  // the queue could not grow: nothing was posted
      if (--inFlight_ == 0) napi_unref_threadsafe_function(env_, settle_);
      throw Napi::Error::New(env_, KernelError(e));
    }
    return promise;
  }

 private:
  struct Pending {
    std::unique_ptr<Job> job;
    Napi::Promise::Deferred deferred;
    std::string error;  // the kernel's failure, if any
  };

  class Compute final : public birnn::Task {
   public:
    Compute(AsyncCalls* calls, std::unique_ptr<Pending> call) : calls_(calls), call_(std::move(call)) {}
    void run() noexcept override {
      Job& job = *call_->job;
      try {
        job.AllocateOutputs();
        job.network->forward(job.call);
      } catch (const std::exception& e) {
        call_->error = KernelError(e);
      } catch (...) {
        call_->error = Cat(kInternal, "unknown native error in forward");
      }
      // The function is open: the environment's teardown takes back the tasks that have not
      // started and waits for this one before it closes the function (Teardown).
      napi_call_threadsafe_function(calls_->settle_, call_.release(), napi_tsfn_nonblocking);
    }

   private:
    AsyncCalls* calls_;
    std::unique_ptr<Pending> call_;
  };

  void Check(napi_status status) const {
    if (status != napi_ok) throw Napi::Error::New(env_, Cat(kInternal, "async calls: Node-API status ", status));
  }

  // On the environment's thread; env is null when the function closes with calls still queued.
  static void Settle(napi_env env, napi_value, void* context, void* data) {
    std::unique_ptr<Pending> call(static_cast<Pending*>(data));
    if (env == nullptr) return;
    auto* calls = static_cast<AsyncCalls*>(context);
    if (--calls->inFlight_ == 0) napi_unref_threadsafe_function(env, calls->settle_);
    // Nothing may escape a Node-API callback.
    try {
      if (call->error.empty()) {
        try {
          return call->deferred.Resolve(call->job->Result(env));
        } catch (const Napi::Error& error) {  // the result's arrays could not be made
          return call->deferred.Reject(error.Value());
        }
      }
      call->deferred.Reject(Napi::Error::New(env, call->error).Value());
    } catch (...) {
      // Only where this environment can no longer run JavaScript (a worker being torn down).
    }
  }

  // The environment is going away: its calls that have not started are dropped (here, on its
  // thread), and the running ones end before it goes on (they compute into memory of their own).
  static void Teardown(void* arg) { birnn::withdraw(arg); }

  Napi::Env env_;
  napi_threadsafe_function settle_ = nullptr;
  size_t inFlight_ = 0;  // started and not yet settled; on the environment's thread only
};

// ---- Network ---------------------------------------------------------------------------------------

class NetworkWrap : public Napi::ObjectWrap<NetworkWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Network",
                       {
                           InstanceMethod<&NetworkWrap::ForwardSync>("forwardSync"),
                           InstanceMethod<&NetworkWrap::Forward>("forward"),
                           InstanceMethod<&NetworkWrap::Trim>("trim"),
                           InstanceMethod<&NetworkWrap::Dispose>("dispose"),
                       });
  }

  // new Network(config, weights, isa)
  explicit NetworkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetworkWrap>(info) {
    Napi::Env env = info.Env();
    BIRNN_REQUIRE_TYPE(env, info.IsConstructCall(), "Network: must be called with new");
    const birnn::Config config = ReadConfig(info[0]);
    const std::vector<birnn::LayerWeights> weights = ReadWeights(info[1], config);
    const birnn::Isa isa = ReadIsa(info[2]);
    try {
      network_ = std::make_shared<const birnn::Network>(config, weights.data(), isa);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, KernelError(e));
    }
  }

  // The finalizer (also run at environment teardown) drops this wrapper's share of the network;
  // in-flight forward() calls hold their own.
  ~NetworkWrap() override = default;

 private:
  const std::shared_ptr<const birnn::Network>& Live(Napi::Env env) const {
    BIRNN_REQUIRE(env, network_ != nullptr, "network is disposed");
    return network_;
  }

  // The outputs of forwardSync are V8's own arrays: memory handed to an external array is freed
  // only in a later turn of the event loop (Node defers the finalizer), so a loop of forwardSync()
  // calls that never yields would keep every output it made. Zero-filled only where the kernel
  // leaves padding; else a Node Buffer's memory, which V8 does not zero.
  Napi::Value ForwardSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::unique_ptr<Job> job = PrepareJob(info[0], Live(env), staging_, false);
    birnn::Call& call = job->call;
    Napi::Object result = Napi::Object::New(env);
    auto output = [&](const char* name, size_t length, bool zeroed) {
      // Below 16 KiB V8's zero-filled array is the cheaper (0.2 µs less a call for a few floats).
      Napi::Float32Array array;
      if (zeroed || length * sizeof(float) < (size_t(16) << 10)) {
        array = Napi::Float32Array::New(env, length);
      } else {
        const Napi::Buffer<float> memory = Napi::Buffer<float>::New(env, length);
        array = Napi::Float32Array::New(env, length, memory.ArrayBuffer(), memory.ByteOffset());
      }
      result.Set(name, array);
      return array.Data();
    };
    const bool zeroed = birnn::leavesPadding(call);
    if (job->returnOutput) call.output = output("output", job->outputLength, zeroed);
    call.hN = output("hN", job->stateLength, false);
    if (job->lstm) call.cN = output("cN", job->cellLength, false);
    if (job->returnLayers) call.layers = output("layers", job->outputLength * job->layerCount, zeroed);
    try {
      job->network->forward(call);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, KernelError(e));
    }
    return result;
  }

  Napi::Value Forward(const Napi::CallbackInfo& info);  // after BirnnAddon, which holds the AsyncCalls

  // Frees the work buffers and input copies kept between calls, and the process's cache of freed
  // output memory (birnn::trimFloats).
  void Trim(const Napi::CallbackInfo&) {
    staging_->clear();
    if (network_) network_->trim();
    birnn::trimFloats();
  }

  void Dispose(const Napi::CallbackInfo&) {
    staging_->clear();
    network_.reset();
    birnn::trimFloats();
  }

  std::shared_ptr<const birnn::Network> network_;
  std::shared_ptr<Staging> staging_ = std::make_shared<Staging>();
};

// ---- addon -----------------------------------------------------------------------------------------

class BirnnAddon : public Napi::Addon<BirnnAddon> {
 public:
  BirnnAddon(Napi::Env env, Napi::Object exports) : calls_(env) {
    DefineAddon(exports, {
                             InstanceMethod<&BirnnAddon::IsaInfo>("isa", napi_enumerable),
                             InstanceMethod<&BirnnAddon::Spec>("spec", napi_enumerable),
                             InstanceMethod<&BirnnAddon::ComputeThreads>("computeThreads", napi_enumerable),
                             InstanceValue("Network", NetworkWrap::Define(env), napi_enumerable),
                         });
  }

  AsyncCalls& calls() { return calls_; }

 private:
  // isa() -> { best, supported }, supported ordered best first.
  Napi::Value IsaInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object result = Napi::Object::New(env);
    result.Set("best", birnn::isaName(birnn::detectIsa()));
    Napi::Array supported = Napi::Array::New(env);
    uint32_t count = 0;
    for (birnn::Isa isa : birnn::supportedIsas()) supported.Set(count++, birnn::isaName(isa));
    result.Set("supported", supported);
    return result;
  }

  // computeThreads() -> the worker pool's threads (birnn::computeThreads).
  Napi::Value ComputeThreads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), birnn::computeThreads());
  }

  // spec() -> { modes: [{ name, id, gates }], isas: [{ name, id }], maxThreads }: spec.h as
  // data, in id order, for the test that holds it equal to lib/spec.ts.
  Napi::Value Spec(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array modes = Napi::Array::New(env, birnn::spec::kModeCount);
    for (const birnn::spec::ModeInfo& mode : birnn::spec::kModes) {
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", mode.name);
      entry.Set("id", static_cast<int>(mode.mode));
      entry.Set("gates", mode.gates);
      modes.Set(static_cast<uint32_t>(mode.mode), entry);
    }
    Napi::Array isas = Napi::Array::New(env, birnn::spec::kIsaCount);
    for (const birnn::spec::IsaInfo& isa : birnn::spec::kIsas) {
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", isa.name);
      entry.Set("id", static_cast<int>(isa.isa));
      isas.Set(static_cast<uint32_t>(isa.isa), entry);
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("modes", modes);
    result.Set("isas", isas);
    result.Set("maxThreads", birnn::spec::kMaxThreads);
    return result;
  }

  AsyncCalls calls_;
};

Napi::Value NetworkWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return env.GetInstanceData<BirnnAddon>()->calls().Start(PrepareJob(info[0], Live(env), staging_, true));
}

}  // namespace

NODE_API_ADDON(BirnnAddon)
