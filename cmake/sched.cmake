# src/sched reproduces torch's and diffusers' float arithmetic operation by
# operation: no compiler may fuse a multiply and an add on its own there
# (GCC does in GNU mode, Clang by default, wherever FMA is enabled).
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  set_source_files_properties(${CMAKE_SOURCE_DIR}/src/sched/rng.c ${CMAKE_SOURCE_DIR}/src/sched/sched.c
                              PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
endif()
