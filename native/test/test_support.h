// What birnn_kernel_test's files share: the report of each check, and a pool task that runs a
// function.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <utility>

#include "birnn.h"

namespace birnn::checks {

inline int passed = 0, failed = 0;

inline void report(bool ok, const std::string& name, const std::string& detail) {
  if (ok) {
    std::printf("ok   %s\n", name.c_str());
    ++passed;
  } else {
    std::printf("FAIL %s: %s\n", name.c_str(), detail.c_str());
    ++failed;
  }
}

inline std::string format(const char* fmt, double value) {
  char text[64];
  std::snprintf(text, sizeof text, fmt, value);
  return text;
}

// A pool task that runs a function.
class Posted final : public Task {
 public:
  explicit Posted(std::function<void()> fn) : fn_(std::move(fn)) {}
  void run() noexcept override { fn_(); }

 private:
  std::function<void()> fn_;
};

// scheduling_test.cc: the checks of `birnn_kernel_test plan` and `memory`.
void plans();
void gauge();
void geometry();
void barrier();
void posting();
void leasing();
void memory();

}  // namespace birnn::checks
