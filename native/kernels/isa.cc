// Run-time choice of instruction set and of the kernel that goes with it. Compiled without ISA
// flags: it must run on every CPU. ISA names come from spec.h. Which ISAs an architecture has:
//   x86-64   avx512, avx2 (cpuid and the OS's register state), generic (SSE2, the baseline)
//   AArch64  neon (Advanced SIMD, the baseline: every arm64 CPU has it), generic
//   other    generic
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel.h"

#if defined(__x86_64__)
#define BIRNN_X86 1
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#define BIRNN_AARCH64 1
#endif

namespace birnn {

#if BIRNN_X86
namespace {
struct CpuidRegs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
CpuidRegs cpuid(unsigned leaf, unsigned sub) {
  CpuidRegs r;
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) r = {};
  return r;
}
// Which register states the OS saves on a context switch (XCR0).
unsigned long long xcr0() {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
}  // namespace
#endif

bool isaSupported(Isa isa) {
  if (isa == Isa::Generic) return true;
#if BIRNN_AARCH64
  return isa == Isa::Neon;
#elif BIRNN_X86
  if (isa != Isa::Avx2 && isa != Isa::Avx512) return false;
  const CpuidRegs l1 = cpuid(1, 0);
  const bool osxsave = l1.c & (1u << 27);
  if (!osxsave || !(l1.c & (1u << 28)) || !(l1.c & (1u << 12))) return false;  // AVX, FMA
  const unsigned long long xcr = xcr0();
  if ((xcr & 0x6) != 0x6) return false;  // XMM and YMM state
  const CpuidRegs l7 = cpuid(7, 0);
  const bool avx2 = l7.b & (1u << 5);
  if (isa == Isa::Avx2) return avx2;
  const unsigned avx512 = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);  // F, DQ, BW, VL
  return avx2 && (l7.b & avx512) == avx512 && (xcr & 0xe6) == 0xe6;  // opmask, ZMM state
#else
  return false;
#endif
}

std::vector<Isa> supportedIsas() {
  std::vector<Isa> list;
  for (int id = spec::kIsaCount - 1; id >= 0; --id) {
    if (isaSupported(spec::kIsas[id].isa)) list.push_back(spec::kIsas[id].isa);
  }
  return list;
}

Isa detectIsa() { return supportedIsas().front(); }

const char* isaName(Isa isa) {
  const int id = static_cast<int>(isa);
  return id >= 0 && id < spec::kIsaCount ? spec::name(isa) : "unknown";
}

Isa parseIsa(const std::string& name) {
  std::string expected;
  for (const spec::IsaInfo& each : spec::kIsas) {
    if (name == each.name) return each.isa;
    expected += std::string(expected.empty() ? "'" : ", '") + each.name + "'";
  }
  throw std::invalid_argument("isa: expected one of " + expected + ", received '" + name + "'");
}

namespace detail {
const Kernels& kernelsFor(Isa isa) {
  if (!isaSupported(isa)) {
    std::string supported;
    for (Isa each : supportedIsas()) supported += std::string(supported.empty() ? "" : ", ") + isaName(each);
    throw std::invalid_argument(std::string("isa '") + isaName(isa) + "' is not supported by this CPU (supported: " +
                                supported + ")");
  }
#if BIRNN_X86
  if (isa == Isa::Avx512) return kernelsAvx512();
  if (isa == Isa::Avx2) return kernelsAvx2();
#endif
#if BIRNN_AARCH64
  if (isa == Isa::Neon) return kernelsNeon();
#endif
  return kernelsGeneric();
}
}  // namespace detail

}  // namespace birnn
