# Turns a file into a C source defining `const unsigned char SYMBOL[]` (the bytes plus a NUL) and
# `const size_t SYMBOL_len` (the byte count without the NUL), so a program carries a default copy
# of a data file (e.g. shared/data/prices.yaml) and needs no file at run time.
#   cmake -DINPUT=file -DOUTPUT=file.c -DSYMBOL=name -P EmbedFile.cmake
foreach(var INPUT OUTPUT SYMBOL)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "EmbedFile.cmake: ${var} is not set")
    endif()
endforeach()

file(READ "${INPUT}" hex HEX)
file(SIZE "${INPUT}" size)
# Sixteen bytes a line keeps the generated file readable.
string(LENGTH "${hex}" hexlen)
set(bytes "")
set(pos 0)
while(pos LESS hexlen)
    string(SUBSTRING "${hex}" ${pos} 32 chunk)
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," chunk "${chunk}")
    string(APPEND bytes "${chunk}\n    ")
    math(EXPR pos "${pos} + 32")
endwhile()
file(WRITE "${OUTPUT}.tmp"
"/* Generated from ${INPUT} by cmake/EmbedFile.cmake. Do not edit. */
#include <stddef.h>

extern const unsigned char ${SYMBOL}[];
extern const size_t ${SYMBOL}_len;

const unsigned char ${SYMBOL}[] = {
    ${bytes}0x00};
const size_t ${SYMBOL}_len = ${size};
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
