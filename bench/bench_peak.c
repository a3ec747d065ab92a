/* bench_peak: what this machine can do, the yardstick for every kernel
 * figure (bench/machine.h says how each number is measured).
 *
 *   bench_peak [--threads N (default: all cores)] [--rounds R (default 3)]
 *              [--json FILE]
 *
 * Prints, for one thread and for N threads: fp32 FMA GFLOP/s (AVX2 and
 * AVX-512 where present, portable C otherwise), bf16 dot-product GFLOP/s
 * (AVX512_BF16), AMX-BF16 tile GFLOP/s (where the CPU and OS have it),
 * streaming-read and copy GB/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_features.h"
#include "machine.h"

int main(int argc, char **argv) {
    int threads = bm_ncpus(), rounds = 3;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--rounds R] [--json FILE]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 256) threads = bm_ncpus();
    if (rounds < 1) rounds = 1;
    char model[256];
    bm_cpu_model(model, sizeof model);
    printf("cpu: %s, %d cores online; features: %s\n", model, bm_ncpus(), sdc_cpu_features_str());
    printf("%-36s %12s %14s %9s\n", "", "1 thread", "threads", "scaling");

    const bm_kind kinds[] = {BM_FP32_SCALAR, BM_FP32_AVX2, BM_FP32_AVX512, BM_BF16_AVX512,
                             BM_READ, BM_COPY, BM_AMX_BF16};
    const int nk = (int)(sizeof kinds / sizeof kinds[0]);
    /* Rounds over the whole list, best per cell: a second or two of other
     * load (seen on this shared machine) then spoils one round, not a cell. */
    double one[7] = {0}, all[7] = {0};
    for (int round = 0; round < rounds; round++)
        for (int i = 0; i < nk; i++) {
            bm_kind k = kinds[i];
            int flops = k != BM_READ && k != BM_COPY;
            if (flops && !bm_flops_fn(k)) continue;
            double a = flops ? bm_peak_gflops(k, 1) : bm_bandwidth(k, 1);
            double b = flops ? bm_peak_gflops(k, threads) : bm_bandwidth(k, threads);
            if (a > one[i]) one[i] = a;
            if (b > all[i]) all[i] = b;
        }
    for (int i = 0; i < nk; i++) {
        bm_kind k = kinds[i];
        int flops = k != BM_READ && k != BM_COPY;
        if (flops && !bm_flops_fn(k)) continue;
        char n1[32];
        snprintf(n1, sizeof n1, "%d", threads);
        printf("%-36s %7.1f %-4s %7.1f %-6s %8.2fx  (%s thr)\n", bm_kind_name(k), one[i],
               flops ? "GF/s" : "GB/s", all[i], flops ? "GF/s" : "GB/s",
               one[i] > 0 ? all[i] / one[i] : 0.0, n1);
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f, "{\n  \"cpu\": \"%s\",\n  \"features\": \"%s\",\n  \"threads\": %d,\n", model,
                sdc_cpu_features_str(), threads);
        static const char *keys[] = {"fp32_scalar_gflops", "fp32_avx2_gflops",
                                     "fp32_avx512_gflops", "bf16_avx512_gflops",
                                     "read_gbps", "copy_gbps", "bf16_amx_gflops"};
        for (int i = 0; i < nk; i++)
            fprintf(f, "  \"%s\": {\"one_thread\": %.1f, \"all_threads\": %.1f}%s\n", keys[i],
                    one[i], all[i], i + 1 < nk ? "," : "");
        fprintf(f, "}\n");
        fclose(f);
    }
    return 0;
}
