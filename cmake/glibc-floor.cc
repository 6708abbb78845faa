// Linked into a prebuild only (CMakeLists.txt, BIRNN_PREBUILD=ON), so that it loads on glibc 2.28
// (the floor of Node 20's own Linux binaries) although built against a newer glibc. Three kinds of
// symbol would otherwise need a newer glibc, from our code and from the static libstdc++:
//  - glibc 2.34 moved libpthread into libc and versioned those functions GLIBC_2.34: each is
//    defined here, hidden (so every reference in the addon binds to it), as a call to the same
//    function's original version (GLIBC_2.2.5 on x86-64, GLIBC_2.17 on arm64), which every
//    glibc since exports (from libpthread before 2.34; Node itself links it);
//  - __libc_single_threaded (2.32), read by libstdc++'s reference counts: defined here as 0, "not
//    known to be single-threaded", so they always use atomic operations (always correct);
//  - arc4random (2.36), which the static libstdc++'s std::random_device needs (birnn never makes
//    one, but the archive member comes with std::string's): defined here over getentropy (2.25).
// scripts/check-prebuild.mjs reads the versions the binary needs and fails above the floor.
// No system header: the declarations must not carry glibc's own attributes.
#if !defined(__linux__)
#error "glibc-floor.cc is for Linux prebuilds"
#endif
#if defined(__x86_64__)
#define BIRNN_OLD "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define BIRNN_OLD "GLIBC_2.17"
#else
#error "glibc-floor.cc: no original glibc version known for this architecture"
#endif

#define BIRNN_HIDDEN __attribute__((visibility("hidden")))
// old_<name> is a reference to <name>@<original version>; <name> itself is defined as a call to it.
#define BIRNN_OLD_FUNCTION(ret, name, params, args) \
  ret old_##name params;                            \
  __asm__(".symver old_" #name "," #name "@" BIRNN_OLD); \
  BIRNN_HIDDEN ret name params { return old_##name args; }

extern "C" {
using Thread = unsigned long;  // pthread_t
using Key = unsigned int;      // pthread_key_t
BIRNN_OLD_FUNCTION(int, pthread_create, (Thread* t, const void* attr, void* (*fn)(void*), void* arg), (t, attr, fn, arg))
BIRNN_OLD_FUNCTION(int, pthread_join, (Thread t, void** result), (t, result))
BIRNN_OLD_FUNCTION(int, pthread_detach, (Thread t), (t))
BIRNN_OLD_FUNCTION(int, pthread_once, (int* once, void (*fn)()), (once, fn))
BIRNN_OLD_FUNCTION(int, pthread_key_create, (Key* key, void (*destroy)(void*)), (key, destroy))
BIRNN_OLD_FUNCTION(int, __pthread_key_create, (Key* key, void (*destroy)(void*)), (key, destroy))
BIRNN_OLD_FUNCTION(int, pthread_key_delete, (Key key), (key))
BIRNN_OLD_FUNCTION(void*, pthread_getspecific, (Key key), (key))
BIRNN_OLD_FUNCTION(int, pthread_setspecific, (Key key, const void* value), (key, value))
BIRNN_HIDDEN char __libc_single_threaded = 0;
int getentropy(void* buffer, unsigned long length);
BIRNN_HIDDEN unsigned int arc4random() {
  unsigned int value;
  if (getentropy(&value, sizeof value) != 0) __builtin_trap();
  return value;
}
}
