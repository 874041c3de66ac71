/*
 * The header jextract reads for Headroom's BLAS bindings (see jextract/README.md).
 *
 * It includes the system's CBLAS header as installed by Debian's libopenblas-dev
 * (/usr/include/x86_64-linux-gnu/cblas.h -> openblas-pthread/cblas.h, OpenBLAS 0.3.21),
 * which also declares OpenBLAS's own extensions (openblas_set_num_threads, ...).
 * Nothing is declared for Headroom here: the symbols kept are listed in jextract/includes.txt.
 *
 * Why bfloat16 is defined first: OpenBLAS's openblas_config.h does
 *   #ifndef BFLOAT16 / #include <stdint.h> / typedef uint16_t bfloat16;
 * jextract puts its bundled clang headers on the include path in front of Debian
 * libclang's own resource directory, so clang's stdint.h is met twice: the second copy
 * is skipped by its include guard and glibc's <stdint.h> is never reached, leaving
 * uint16_t undeclared. Defining BFLOAT16 and its typedef (the same 16-bit type) here
 * skips that include. bfloat16 appears only in sbgemm-family functions, which the
 * bindings do not keep.
 */
#define BFLOAT16
typedef unsigned short bfloat16;
#include <cblas.h>
