/* The Winograd transforms (winograd_tf.h) compiled for AVX2+FMA. */
#define WINO_FN(name) name##_avx2
#include "backends/cpu/winograd_tf.h"
