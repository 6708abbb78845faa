// Measured fp32 FMA peak: independent FMA chains on 1..N threads, with the vectors of the SIMD
// path the kernel runs (AVX2: 8 lanes; AVX-512: 16, where the CPU has it).
//
//   g++ -O2 -mavx2 -mfma -pthread peak-fma.cc -o peak-fma && ./peak-fma [threads] [seconds] [avx2|avx512]
//
// Each thread keeps 12 independent accumulators (more than FMA latency x FMA ports on any current
// x86 core), so the loop is bound only by FMA throughput. Counts 2 flops per lane per FMA. A CPU
// whose AVX-512 units are half as wide (Zen 4) reads about the AVX2 figure on both.
// Prints one JSON line: {"isa":"avx2","threads":T,"seconds":S,"gflops":G,"perThread":[...]}.
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

static constexpr int kAcc = 12;
static constexpr long kBlock = 1 << 20;  // FMA rounds between clock checks

// The chains in vectors V of `lanes` floats, until `seconds` have passed; inlined into each
// ISA's function, whose target it then compiles for.
template <typename V, int lanes, typename Set, typename Fma, typename Sum>
__attribute__((always_inline)) inline double chains(double seconds, float* sink, Set set, Fma fma, Sum sum) {
  V acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = set(1.0f + 1e-3f * i);
  const V a = set(0.9999999f), b = set(1e-7f);
  const auto t0 = std::chrono::steady_clock::now();
  long rounds = 0;
  for (;;) {
    for (long r = 0; r < kBlock; ++r) {
#pragma GCC unroll 12
      for (int i = 0; i < kAcc; ++i) acc[i] = fma(acc[i], a, b);
    }
    rounds += kBlock;
    std::chrono::duration<double> el = std::chrono::steady_clock::now() - t0;
    if (el.count() >= seconds) {
      *sink = sum(acc);
      return double(rounds) * kAcc * lanes * 2 / el.count();
    }
  }
}

static double avx2(double seconds, float* sink) {
  return chains<__m256, 8>(
      seconds, sink, [](float x) { return _mm256_set1_ps(x); },
      [](__m256 x, __m256 a, __m256 b) { return _mm256_fmadd_ps(x, a, b); },
      [](const __m256* acc) {
        __m256 s = acc[0];
        for (int i = 1; i < kAcc; ++i) s = _mm256_add_ps(s, acc[i]);
        float tmp[8];
        _mm256_storeu_ps(tmp, s);
        return tmp[0];
      });
}

__attribute__((target("avx512f"))) static double avx512(double seconds, float* sink) {
  return chains<__m512, 16>(
      seconds, sink, [](float x) __attribute__((target("avx512f"))) { return _mm512_set1_ps(x); },
      [](__m512 x, __m512 a, __m512 b) __attribute__((target("avx512f"))) { return _mm512_fmadd_ps(x, a, b); },
      [](const __m512* acc) __attribute__((target("avx512f"))) {
        __m512 s = acc[0];
        for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
        return _mm512_reduce_add_ps(s);
      });
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.5;
  const bool wide = argc > 3 && std::strcmp(argv[3], "avx512") == 0;
  if (wide && !__builtin_cpu_supports("avx512f")) {
    std::fprintf(stderr, "peak-fma: this CPU has no AVX-512\n");
    return 2;
  }
  std::vector<double> flops(threads);
  std::vector<float> sink(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { flops[t] = wide ? avx512(seconds, &sink[t]) : avx2(seconds, &sink[t]); });
  }
  for (auto& th : pool) th.join();
  double total = 0, s = 0;
  for (int t = 0; t < threads; ++t) total += flops[t], s += sink[t];
  std::printf("{\"isa\":\"%s\",\"threads\":%d,\"seconds\":%g,\"gflops\":%.2f,\"sink\":%g,\"perThread\":[",
              wide ? "avx512" : "avx2", threads, seconds, total / 1e9, s);
  for (int t = 0; t < threads; ++t) std::printf("%s%.2f", t ? "," : "", flops[t] / 1e9);
  std::printf("]}\n");
  return 0;
}
