/* ASan builds of the OpenCL tests: the vendor libraries' own leaks are not
 * the tests'.  Clover leaks once while the ICD loader first lists the
 * platforms (from a module it unloads again, so no suppression can name
 * it): that first listing runs with leak tracking off (LSAN_OFF/LSAN_ON).
 * rusticl leaks when it compiles: suppressed by library name.  Include in
 * one test file per program (it defines LSan's suppressions hook). */
#ifndef SDC_TESTS_VENDOR_LEAKS_H
#define SDC_TESTS_VENDOR_LEAKS_H

#if defined(__SANITIZE_ADDRESS__)
#define SDC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SDC_TEST_ASAN 1
#endif
#endif
#ifdef SDC_TEST_ASAN
#include <sanitizer/lsan_interface.h>
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libRusticlOpenCL.so\n"; }
#define LSAN_OFF() __lsan_disable()
#define LSAN_ON() __lsan_enable()
#else
#define LSAN_OFF() ((void)0)
#define LSAN_ON() ((void)0)
#endif

#endif
