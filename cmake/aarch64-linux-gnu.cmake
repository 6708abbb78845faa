# Cross-compiling for linux-arm64 (glibc) with Debian's cross toolchain
# (apt-get install g++-aarch64-linux-gnu; run the results with qemu-user:
# `qemu-aarch64 -L /usr/aarch64-linux-gnu ./birnn_kernel_test`).
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DBIRNN_KERNEL_TESTS=ON
# Used by scripts/test-arm64.mjs (kernel tests) and scripts/prebuild.mjs (the linux-arm64 prebuild).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(BIRNN_CROSS_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${BIRNN_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${BIRNN_CROSS_TRIPLE}-g++)
set(CMAKE_STRIP ${BIRNN_CROSS_TRIPLE}-strip)
# Headers and libraries from the target's sysroot only; programs (cmake, ninja) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${BIRNN_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# ctest runs the test executables through qemu-user (a no-op wrapper on a real arm64 machine is
# not needed: there the native toolchain is used instead of this file).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/${BIRNN_CROSS_TRIPLE})
