/*
 * bench_gemm - sgemm GFLOP/s through hlpt_gemm for the shapes a LLaMA layer runs (prefill,
 * training, decode) at 1 and 2 BLAS threads, and the machine's memory read bandwidth (a streaming
 * sum over 1 GiB, 1 and 2 threads), the ceiling of decode speed.
 *
 *   build/bench/bench_gemm            (OPENBLAS_CORETYPE=Prescott to see the fallback kernels)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "hlpt/blas.h"
#include "hlpt/err.h"

int main(int argc, char **argv) {
    (void)argc;
    int st = hlpt_blas_init(argv);
    printf("OpenBLAS core: %s%s\n", hlpt_blas_corename(), st ? " (could not switch kernels)" : "");
    static const int shapes[][3] = {{512, 2048, 2048}, {2048, 5632, 2048}, {1, 2048, 2048}, {1, 5632, 2048}};
    printf("%-20s %12s %12s\n", "sgemm MxNxK", "1 thread", "2 threads");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        char name[40];
        snprintf(name, sizeof name, "%dx%dx%d", shapes[s][0], shapes[s][1], shapes[s][2]);
        double g[2];
        for (int t = 1; t <= 2; t++) {
            hlpt_blas_set_threads(t);
            g[t - 1] = gemm_gflops(shapes[s][0], shapes[s][1], shapes[s][2]);
        }
        printf("%-20s %8.1f GF/s %8.1f GF/s\n", name, g[0], g[1]);
    }
    size_t n = ((size_t)1 << 30) / sizeof(float);
    float *buf = malloc(n * sizeof(float));
    if (!buf) {
        fprintf(stderr, "bench_gemm: no memory for the 1 GiB bandwidth buffer\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7); /* real pages, faulted in before timing */
    printf("memory read bandwidth (1 GiB streaming sum): %.1f GB/s 1 thread, %.1f GB/s 2 threads\n",
           read_bandwidth(buf, n, 1), read_bandwidth(buf, n, 2));
    free(buf);
    return 0;
}
