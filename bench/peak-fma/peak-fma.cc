// Measured fp32 FMA peak: independent AVX2 FMA chains on 1..N threads.
//
//   g++ -O2 -mavx2 -mfma -pthread peak-fma.cc -o peak-fma && ./peak-fma [threads] [seconds]
//
// Each thread keeps 12 independent 8-lane accumulators (more than FMA latency x FMA ports on any
// current x86 core), so the loop is bound only by FMA throughput. Counts 2 flops per lane per FMA.
// Prints one JSON line: {"threads":T,"seconds":S,"gflops":G,"perThread":[...]}.
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

static constexpr int kAcc = 12;
static constexpr long kBlock = 1 << 20;  // FMA rounds between clock checks

static void spin(double seconds, double* flops_out, float* sink) {
  __m256 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_set1_ps(1.0f + 1e-3f * i);
  const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
  const auto t0 = std::chrono::steady_clock::now();
  long rounds = 0;
  for (;;) {
    for (long r = 0; r < kBlock; ++r) {
#pragma GCC unroll 12
      for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    rounds += kBlock;
    std::chrono::duration<double> el = std::chrono::steady_clock::now() - t0;
    if (el.count() >= seconds) {
      *flops_out = double(rounds) * kAcc * 8 * 2 / el.count();
      break;
    }
  }
  __m256 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm256_add_ps(s, acc[i]);
  float tmp[8];
  _mm256_storeu_ps(tmp, s);
  *sink = tmp[0];
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.5;
  std::vector<double> flops(threads);
  std::vector<float> sink(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(spin, seconds, &flops[t], &sink[t]);
  for (auto& th : pool) th.join();
  double total = 0, s = 0;
  for (int t = 0; t < threads; ++t) total += flops[t], s += sink[t];
  std::printf("{\"threads\":%d,\"seconds\":%g,\"gflops\":%.2f,\"sink\":%g,\"perThread\":[", threads,
              seconds, total / 1e9, s);
  for (int t = 0; t < threads; ++t) std::printf("%s%.2f", t ? "," : "", flops[t] / 1e9);
  std::printf("]}\n");
  return 0;
}
