/* The OpenCL backend's private state and the helpers its op files share. */
#ifndef SDC_BACKENDS_OPENCL_CL_IMPL_H
#define SDC_BACKENDS_OPENCL_CL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "backends/opencl/cl_loader.h"
#include "backends/opencl/opencl.h"
#include "core/error.h"


#define CLB_MAX_BLOCKS 16   /* activation blocks alive at once */
#define CLB_MAX_PROGS 64    /* (source, options) programs built */
#define CLB_MAX_KERNELS 128
#define CLB_IDS_CAP 4096    /* embed's ids per launch (device int buffer) */
#define CLB_STAGE 65536     /* host staging, elements (fp16 conversion) */
#define CLB_SCRATCH (1u << 22) /* device scratch bytes: overlapping copies */
/* Winograd's V and M, or the partially fused softmax's scores: bytes (at most max_alloc) */
#define CLB_WINO_SCRATCH ((size_t)64 << 20)
#define CLB_WINO_U ((size_t)32 << 20)       /* Winograd's U for a slice of O, bytes (likewise) */

typedef struct clb_block {
    uintptr_t base;   /* the reserved host range [base, base + bytes) */
    size_t bytes;     /* as asked: fp32 slots * 4 */
    cl_mem mem;       /* bytes / 4 elements of esize bytes */
} clb_block;

typedef struct clb_weight {
    const void *key;  /* sdc_weight.data; NULL: empty; CLB_TOMB: deleted */
    cl_mem mem;
    int half;         /* stored as half (else float) */
    int64_t numel;
    size_t bytes;
} clb_weight;

typedef struct clb_prog {
    const char *src;  /* the family's source name */
    char opts[192];
    cl_program prog;
} clb_prog;

typedef struct clb_kernel {
    int prog;
    char name[32];
    cl_kernel k;
} clb_kernel;

typedef struct clb {
    sdc_backend be; /* first: the table; be.impl points here */
    const sdc_cl_api *cl;
    cl_platform_id platform;
    cl_device_id dev;
    cl_context ctx;
    cl_command_queue q;
    sdc_cl_device info;
    char platform_version[128];
    int act_half;     /* activations as half */
    size_t esize;     /* bytes per activation element on the device */
    int verbose;
    char cache_dir[1024]; /* "" : no cache */

    clb_block blocks[CLB_MAX_BLOCKS];
    int nblocks;

    clb_weight *wmap; /* open addressing on key, linear probing */
    size_t wcap, wused; /* slots, slots not empty (tombstones included) */

    clb_prog progs[CLB_MAX_PROGS];
    int nprogs;
    clb_kernel kernels[CLB_MAX_KERNELS];
    int nkernels;

    cl_mem ids;       /* CLB_IDS_CAP ints */
    cl_mem scratch;   /* CLB_SCRATCH bytes */
    cl_mem wscratch;  /* wscratch_bytes: Winograd's V and M, or attention's scores */
    size_t wscratch_bytes;
    cl_mem wscratch_u; /* wscratch_u_bytes: Winograd's U of a slice of output channels */
    size_t wscratch_u_bytes;
    cl_mem dummy;     /* bound where an optional argument is absent */
    void *stage;      /* CLB_STAGE * 4 bytes of host memory */

    size_t mem_now, mem_peak;

    /* the sticky failure: the first since the last sync */
    int failed;
    char msg[1200];
    char what[256];   /* the op running now, for messages */
} clb;

static inline clb *clb_of(sdc_backend *be) { return (clb *)be->impl; }

/* Records a failure (the first one sticks): "<what>: <call>: <CL error>". */
void clb_fail(clb *b, const char *call, cl_int err);
/* Records a failure with a free-form detail: "<what>: <detail>". */
void clb_fail_msg(clb *b, const char *fmt, ...) SDC_PRINTF(2, 3);
/* Starts an op: returns 1 (skip it) if a failure is pending, else sets the
 * op's description for messages and returns 0. */
int clb_begin(clb *b, const char *fmt, ...) SDC_PRINTF(2, 3);

/* The device buffer and element offset of activation address p (a block
 * of this backend); 0 and a recorded failure if p is in none.  p NULL:
 * the dummy buffer, offset 0. */
int clb_addr(clb *b, const float *p, cl_mem *mem, cl_uint *off);
/* The device copy of w (uploaded now if not resident); NULL and a recorded
 * failure if it cannot be made.  *half: stored as half. */
cl_mem clb_weight_get(clb *b, const sdc_weight *w, int *half);
/* w's entry in the weight table (uploaded now if not resident), valid until
 * the next weight is uploaded or released; NULL and a recorded failure if
 * it cannot be made. */
clb_weight *clb_weight_entry(clb *b, const sdc_weight *w);

/* The kernel `name` of source family `src` built with options `opts` (the
 * activation storage option added); built on first use (binary cache);
 * NULL and a recorded failure if it does not build. */
cl_kernel clb_kernel_get(clb *b, const char *src, const char *opts, const char *name);
/* Builds (or loads from the cache) a program; cl_program or NULL with
 * a recorded failure.  In cl_program.c. */
cl_program clb_program_build(clb *b, const char *src, const char *opts);

/* Kernel arguments set in order; the first failure is kept in err. */
typedef struct clb_args {
    clb *b;
    cl_kernel k;
    cl_uint i;
    cl_int err;
    int bad; /* an address or weight failed (already recorded) */
} clb_args;
clb_args clb_args_start(clb *b, cl_kernel k);
void clb_arg(clb_args *a, size_t size, const void *v);
void clb_arg_u32(clb_args *a, cl_uint v);
void clb_arg_i32(clb_args *a, cl_int v);
void clb_arg_f32(clb_args *a, float v);
void clb_arg_mem(clb_args *a, cl_mem m);
/* an activation: (buffer, element offset); p NULL: (dummy, 0) */
void clb_arg_act(clb_args *a, const float *p);
/* a weight: (buffer, is_half, present); w NULL: (dummy, 0, 0) */
void clb_arg_w(clb_args *a, const sdc_weight *w);
/* Enqueues a's kernel over global[dims] (rounded up to local where local
 * is given).  Nothing if any global size is 0 or an argument failed. */
void clb_launch(clb_args *a, cl_uint dims, const size_t *global, const size_t *local);

/* The op table's entries (cl_ops.c) */
void clb_fill_ops(sdc_backend *be);

/* conv2d 3x3, stride 1, pad 1 by Winograd F(4x4, 3x3) (cl_winograd.c).
 * Returns 1 if it took the op (queued, or failed with a recorded failure),
 * 0 if the shape is not one it takes (the caller runs the implicit GEMM). */
int clb_conv_winograd(clb *b, float *y, const float *x, int N, int C, int H, int W,
                      const sdc_weight *w, const sdc_weight *bias, int O, const float *acc);

#endif
