# Cross build for 64-bit Arm Linux with Debian's cross compiler, tests run
# under qemu-user (correctness only; speed means nothing there):
#   apt-get install gcc-aarch64-linux-gnu qemu-user
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install libpng-dev:arm64 libcjson-dev:arm64 libpcre2-dev:arm64 zlib1g-dev:arm64
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
#   cmake --build build-arm && ctest --test-dir build-arm
# The arm64 libraries come from Debian multiarch (/usr/lib/aarch64-linux-gnu,
# headers in /usr/include), which the cross gcc searches by default.  At run
# time qemu's -L prefix is / so that the loader and libc are both the
# multiarch libc6:arm64 those libraries pulled in: with -L /usr/aarch64-linux-gnu
# the loader would be the cross package's (another glibc build) while libc.so.6
# still resolves to /lib/aarch64-linux-gnu, and pthread_create hangs.
#
# CMakeLists.txt includes every cmake/*.cmake after project(); this file is a
# toolchain file only, so it does nothing then.
if(CMAKE_C_COMPILER_LOADED)
  return()
endif()

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(SDC_AARCH64_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${SDC_AARCH64_TRIPLE}-gcc)
set(SDC_AARCH64_SYSROOT / CACHE PATH "qemu -L prefix (where the arm64 loader and libc are)")

# pkg-config must see the arm64 .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${SDC_AARCH64_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# ctest runs every test executable through this.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;${SDC_AARCH64_SYSROOT})
