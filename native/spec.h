// The contract between the TypeScript layer and the kernel, in one place: the ids, names and
// gate counts of the modes, the ids and names of the instruction sets, and the thread limit.
// lib/spec.ts is its mirror; the addon exports these tables as spec() so a test can hold the two
// together: change both or neither. Everything here is constexpr data, no code to link.
#pragma once

namespace birnn {

// The recurrent cell. The id is what the TypeScript layer passes as config.mode.
enum class Mode : int { RnnTanh = 0, RnnRelu = 1, Gru = 2, Lstm = 3 };

// Instruction sets the kernel is compiled for; all of an architecture's live in one binary and
// one is picked at run time: x86-64 has avx512, avx2 and generic, AArch64 neon and generic.
// Ids are only ever appended; within one architecture a higher id is the better ISA, preferred
// when the CPU has it (supportedIsas() lists them by id, highest first), and generic is last.
enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

namespace spec {

struct ModeInfo {
  Mode mode;
  const char* name;  // PyTorch's name for the mode
  int gates;         // gate rows per hidden unit in weight_ih / weight_hh: [gates * H, ...]
};
struct IsaInfo {
  Isa isa;
  const char* name;
};

// In id order: kModes[id].mode has that id (checked below), likewise kIsas.
inline constexpr ModeInfo kModes[] = {
    {Mode::RnnTanh, "RNN_TANH", 1},
    {Mode::RnnRelu, "RNN_RELU", 1},
    {Mode::Gru, "GRU", 3},
    {Mode::Lstm, "LSTM", 4},
};
inline constexpr IsaInfo kIsas[] = {
    {Isa::Generic, "generic"},
    {Isa::Avx2, "avx2"},
    {Isa::Avx512, "avx512"},
    {Isa::Neon, "neon"},
};
inline constexpr int kModeCount = sizeof kModes / sizeof kModes[0];
inline constexpr int kIsaCount = sizeof kIsas / sizeof kIsas[0];

// Most threads one forward call may ask for.
inline constexpr int kMaxThreads = 4096;

constexpr int gates(Mode mode) { return kModes[static_cast<int>(mode)].gates; }
constexpr const char* name(Mode mode) { return kModes[static_cast<int>(mode)].name; }
constexpr const char* name(Isa isa) { return kIsas[static_cast<int>(isa)].name; }

constexpr bool inIdOrder() {
  for (int i = 0; i < kModeCount; ++i) {
    if (static_cast<int>(kModes[i].mode) != i) return false;
  }
  for (int i = 0; i < kIsaCount; ++i) {
    if (static_cast<int>(kIsas[i].isa) != i) return false;
  }
  return true;
}
// The tables are indexed by id: an entry out of place would give a mode another's gate count.
static_assert(inIdOrder(), "spec: kModes and kIsas must list every enumerator in id order");
static_assert(kModeCount == static_cast<int>(Mode::Lstm) + 1 && kIsaCount == static_cast<int>(Isa::Neon) + 1,
              "spec: every enumerator needs an entry");

}  // namespace spec
}  // namespace birnn
