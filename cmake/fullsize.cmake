# The full-size spot check (developers; not in CTest): build/fullsize_check DIR
add_executable(fullsize_check ${CMAKE_SOURCE_DIR}/tests/fullsize_check.c ${CMAKE_SOURCE_DIR}/tests/harness.c)
target_compile_definitions(fullsize_check PRIVATE SDC_FIXTURES_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures")
target_include_directories(fullsize_check PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests)
target_link_libraries(fullsize_check PRIVATE sdc_lib)
