/* The Winograd transforms (winograd_tf.h) compiled for AVX-512. */
#define WINO_FN(name) name##_avx512
#include "backends/cpu/winograd_tf.h"
