// Run-time choice of instruction set. Compiled without ISA flags: it must run on every CPU.
#include <stdexcept>
#include <string>

#include "kernel.h"

#if defined(__x86_64__) || defined(_M_X64)
#define BIRNN_X86 1
#if defined(_MSC_VER)
#include <immintrin.h>
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace birnn {

#if BIRNN_X86
namespace {
struct CpuidRegs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
CpuidRegs cpuid(unsigned leaf, unsigned sub) {
  CpuidRegs r;
#if defined(_MSC_VER)
  int regs[4];
  __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(sub));
  r = {static_cast<unsigned>(regs[0]), static_cast<unsigned>(regs[1]), static_cast<unsigned>(regs[2]),
       static_cast<unsigned>(regs[3])};
#else
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) r = {};
#endif
  return r;
}
// Which register states the OS saves on a context switch (XCR0).
unsigned long long xcr0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
#endif
}
}  // namespace
#endif

bool isaSupported(Isa isa) {
  if (isa == Isa::Generic) return true;
#if BIRNN_X86
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

Isa detectIsa() {
  if (isaSupported(Isa::Avx512)) return Isa::Avx512;
  if (isaSupported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Generic;
}

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Generic: return "generic";
  }
  return "unknown";
}

Isa parseIsa(const std::string& name) {
  if (name == "avx512") return Isa::Avx512;
  if (name == "avx2") return Isa::Avx2;
  if (name == "generic") return Isa::Generic;
  throw std::invalid_argument("isa: expected 'avx512', 'avx2' or 'generic', received '" + name + "'");
}

namespace detail {
const Kernels& kernelsFor(Isa isa) {
  if (!isaSupported(isa)) {
    std::string supported;
    for (Isa each : {Isa::Avx512, Isa::Avx2, Isa::Generic}) {
      if (isaSupported(each)) supported += std::string(supported.empty() ? "" : ", ") + isaName(each);
    }
    throw std::invalid_argument(std::string("isa '") + isaName(isa) + "' is not supported by this CPU (supported: " +
                                supported + ")");
  }
#if BIRNN_X86
  if (isa == Isa::Avx512) return kernelsAvx512();
  if (isa == Isa::Avx2) return kernelsAvx2();
#endif
  return kernelsGeneric();
}
}  // namespace detail

}  // namespace birnn
