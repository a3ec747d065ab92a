# Cross build for 64-bit Arm Linux with Debian's cross compiler, tests run
# under qemu-user (correctness only; speed means nothing there):
#   apt-get install gcc-aarch64-linux-gnu qemu-user
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install libpng-dev:arm64 libcjson-dev:arm64 libpcre2-dev:arm64 zlib1g-dev:arm64
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
#   cmake --build build-arm && ctest --test-dir build-arm
# The arm64 libraries come from Debian multiarch (/usr/lib/aarch64-linux-gnu,
# headers in /usr/include), which the cross gcc searches by default; libc
# comes from the cross sysroot /usr/aarch64-linux-gnu, which is also qemu's
# -L prefix (its loader and libc; other libraries fall back to the host's
# multiarch folders).
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
set(SDC_AARCH64_SYSROOT /usr/${SDC_AARCH64_TRIPLE} CACHE PATH "qemu -L prefix (cross libc)")

# pkg-config must see the arm64 .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${SDC_AARCH64_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# ctest runs every test executable through this.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;${SDC_AARCH64_SYSROOT})
