# The OpenCL backend (src/backends/opencl/).  With the Khronos headers
# (CL/cl.h; Debian: opencl-headers) the backend is built and loads the
# OpenCL library at run time (never linked); without them the same API is a
# stub that says so.  The kernels (src/backends/opencl/kernels/*.cl) are
# embedded into the library as C byte arrays, generated in the build folder:
#   const sdc_cl_source sdc_cl_sources[]; const int sdc_cl_nsources;
# Run with -P (DIR=, OUT=), this file writes that generated C file.

if(CMAKE_SCRIPT_MODE_FILE)
  file(GLOB cl_files "${DIR}/*.cl")
  list(SORT cl_files)
  set(body "")
  set(table "")
  foreach(f ${cl_files})
    get_filename_component(name ${f} NAME_WE)
    file(READ "${f}" hex HEX)
    string(LENGTH "${hex}" n)
    math(EXPR size "${n} / 2")
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
    string(REPEAT "0x..," 24 line)
    string(REGEX REPLACE "(${line})" "\\1\n" hex "${hex}")
    string(APPEND body "static const char src_${name}[${size} + 1] = {\n${hex}0x00};\n")
    string(APPEND table "    {\"${name}\", src_${name}, ${size}},\n")
  endforeach()
  list(LENGTH cl_files count)
  file(WRITE "${OUT}.tmp"
       "/* Generated from the .cl files of src/backends/opencl/kernels by cmake/opencl.cmake. */\n"
       "#include \"backends/opencl/cl_sources.h\"\n"
       "${body}"
       "const sdc_cl_source sdc_cl_sources[] = {\n${table}};\n"
       "const int sdc_cl_nsources = ${count};\n")
  file(RENAME "${OUT}.tmp" "${OUT}")
  return()
endif()

include(CheckIncludeFile)
set(CMAKE_REQUIRED_DEFINITIONS -DCL_TARGET_OPENCL_VERSION=120)
check_include_file(CL/cl.h SDC_HAVE_CL_H)
unset(CMAKE_REQUIRED_DEFINITIONS)
if(SDC_HAVE_CL_H)
  set(SDC_CL_DIR ${CMAKE_SOURCE_DIR}/src/backends/opencl/kernels)
  file(GLOB SDC_CL_KERNELS CONFIGURE_DEPENDS ${SDC_CL_DIR}/*.cl)
  set(SDC_CL_C ${CMAKE_BINARY_DIR}/generated/opencl_kernels.c)
  add_custom_command(
    OUTPUT ${SDC_CL_C}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/generated
    COMMAND ${CMAKE_COMMAND} -DDIR=${SDC_CL_DIR} -DOUT=${SDC_CL_C} -P ${CMAKE_CURRENT_LIST_FILE}
    DEPENDS ${SDC_CL_KERNELS} ${CMAKE_CURRENT_LIST_FILE}
    COMMENT "Embedding the OpenCL kernels"
    VERBATIM)
  target_sources(sdc_lib PRIVATE ${SDC_CL_C})
  # only the backend's own files see the switch: turning it on (headers
  # installed later) recompiles them, not the whole library
  file(GLOB SDC_CL_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backends/opencl/*.c)
  set_source_files_properties(${SDC_CL_SOURCES} ${SDC_CL_C} PROPERTIES
    COMPILE_DEFINITIONS "SDC_HAVE_OPENCL=1;CL_TARGET_OPENCL_VERSION=120")
  # test_opencl calls the loader directly (a reproducer below the backend)
  set_source_files_properties(${CMAKE_SOURCE_DIR}/tests/test_opencl.c PROPERTIES
    COMPILE_DEFINITIONS "SDC_HAVE_OPENCL=1;CL_TARGET_OPENCL_VERSION=120")
  message(STATUS "OpenCL backend: on (CL/cl.h found; the library is loaded at run time)")
else()
  message(STATUS "OpenCL backend: stub (no CL/cl.h; install opencl-headers)")
endif()
target_link_libraries(sdc_lib PUBLIC ${CMAKE_DL_LIBS})
