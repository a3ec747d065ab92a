# Embeds data/clip/bpe_simple_vocab_16e6.txt.gz into the library as
#   const unsigned char sdc_clip_vocab_gz[]; const size_t sdc_clip_vocab_gz_size;
# (src/text/vocab.h).  Included by CMakeLists.txt, this file adds the
# build step; run with -P (IN=, OUT=), it writes the generated C file.

if(CMAKE_SCRIPT_MODE_FILE)
  file(READ "${IN}" hex HEX)
  string(LENGTH "${hex}" n)
  math(EXPR size "${n} / 2")
  # "1f8b..." -> "0x1f,0x8b,...", 32 bytes a line
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(REPEAT "0x..," 32 line)
  string(REGEX REPLACE "(${line})" "\\1\n" hex "${hex}")
  file(WRITE "${OUT}.tmp"
       "/* Generated from ${IN} by cmake/vocab.cmake. */\n"
       "#include <stddef.h>\n"
       "extern const unsigned char sdc_clip_vocab_gz[];\n"
       "extern const size_t sdc_clip_vocab_gz_size;\n"
       "const unsigned char sdc_clip_vocab_gz[${size}] = {\n${hex}};\n"
       "const size_t sdc_clip_vocab_gz_size = ${size};\n")
  file(RENAME "${OUT}.tmp" "${OUT}")
  return()
endif()

set(SDC_VOCAB_GZ ${CMAKE_SOURCE_DIR}/data/clip/bpe_simple_vocab_16e6.txt.gz)
set(SDC_VOCAB_C ${CMAKE_BINARY_DIR}/generated/clip_vocab_gz.c)
add_custom_command(
  OUTPUT ${SDC_VOCAB_C}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/generated
  COMMAND ${CMAKE_COMMAND} -DIN=${SDC_VOCAB_GZ} -DOUT=${SDC_VOCAB_C} -P ${CMAKE_CURRENT_LIST_FILE}
  DEPENDS ${SDC_VOCAB_GZ} ${CMAKE_CURRENT_LIST_FILE}
  COMMENT "Embedding the CLIP vocabulary"
  VERBATIM)
target_sources(sdc_lib PRIVATE ${SDC_VOCAB_C})
