/* The OpenCL backend: devices, creation, activation blocks, weights,
 * transfers, the sticky failure, programs and kernel launches.  The ops
 * themselves are in cl_ops.c, their kernels in kernels/ (opencl.h). */
#if SDC_HAVE_OPENCL
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backends/opencl/cl_impl.h"

#define CLB_TOMB ((const void *)&clb_tomb_)
static const char clb_tomb_ = 0;

/* ---- failures ----------------------------------------------------------------- */

void clb_fail(clb *b, const char *call, cl_int err) {
    if (b->failed) return;
    b->failed = 1;
    snprintf(b->msg, sizeof b->msg, "%s: %s: %s", b->what, call, sdc_cl_error_name(err));
}

void clb_fail_msg(clb *b, const char *fmt, ...) {
    if (b->failed) return;
    b->failed = 1;
    char detail[880];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(b->msg, sizeof b->msg, "%s: %s", b->what, detail);
}

int clb_begin(clb *b, const char *fmt, ...) {
    if (b->failed) return 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->what, sizeof b->what, fmt, ap);
    va_end(ap);
    return 0;
}

/* ---- devices ------------------------------------------------------------------ */

static void str_info(const sdc_cl_api *cl, cl_device_id d, cl_device_info what, char *out,
                     size_t cap) {
    out[0] = 0;
    if (cl->clGetDeviceInfo(d, what, cap - 1, out, NULL) != CL_SUCCESS) out[0] = 0;
    out[cap - 1] = 0;
}

static void describe(const sdc_cl_api *cl, cl_platform_id p, cl_device_id d, int index,
                     sdc_cl_device *o) {
    memset(o, 0, sizeof *o);
    o->index = index;
    if (cl->clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof o->platform - 1, o->platform, NULL) !=
        CL_SUCCESS)
        o->platform[0] = 0;
    str_info(cl, d, CL_DEVICE_NAME, o->name, sizeof o->name);
    str_info(cl, d, CL_DEVICE_VERSION, o->version, sizeof o->version);
    str_info(cl, d, CL_DRIVER_VERSION, o->driver, sizeof o->driver);
    cl_device_type t = 0;
    cl_ulong gm = 0, ma = 0;
    cl_uint cu = 0;
    cl->clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    cl->clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof gm, &gm, NULL);
    cl->clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ma, &ma, NULL);
    cl->clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    o->is_gpu = (t & CL_DEVICE_TYPE_GPU) != 0;
    o->is_cpu = (t & CL_DEVICE_TYPE_CPU) != 0;
    o->global_mem = gm;
    o->max_alloc = ma;
    o->compute_units = (int)cu;
    size_t n = 0;
    if (cl->clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &n) == CL_SUCCESS && n > 0) {
        char *ext = malloc(n + 1);
        if (ext && cl->clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, n, ext, NULL) == CL_SUCCESS) {
            ext[n] = 0;
            o->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
        }
        free(ext);
    }
}

/* Calls fn for every device of every platform, in order, until it returns
 * non-zero; the count of devices seen, or -1 (message set) without a
 * library. */
typedef int (*device_fn)(void *ctx, const sdc_cl_api *cl, cl_platform_id p, cl_device_id d,
                         int index);
static int walk_devices(device_fn fn, void *ctx) {
    const sdc_cl_api *cl = sdc_cl_load();
    if (!cl) return -1;
    cl_uint np = 0;
    cl_int err = cl->clGetPlatformIDs(0, NULL, &np);
    if (err != CL_SUCCESS || np == 0) return 0; /* CL_PLATFORM_NOT_FOUND_KHR: none */
    cl_platform_id *ps = calloc(np, sizeof *ps);
    if (!ps) return 0;
    if (cl->clGetPlatformIDs(np, ps, NULL) != CL_SUCCESS) np = 0;
    int count = 0, stop = 0;
    for (cl_uint i = 0; i < np && !stop; i++) {
        cl_uint nd = 0;
        /* a platform without devices (clover) answers CL_DEVICE_NOT_FOUND */
        if (cl->clGetDeviceIDs(ps[i], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || !nd)
            continue;
        cl_device_id *ds = calloc(nd, sizeof *ds);
        if (!ds) break;
        if (cl->clGetDeviceIDs(ps[i], CL_DEVICE_TYPE_ALL, nd, ds, NULL) != CL_SUCCESS) nd = 0;
        for (cl_uint j = 0; j < nd && !stop; j++) stop = fn(ctx, cl, ps[i], ds[j], count++);
        free(ds);
    }
    free(ps);
    return count;
}

typedef struct list_ctx {
    sdc_cl_device *out;
    int cap;
} list_ctx;

static int list_one(void *ctx, const sdc_cl_api *cl, cl_platform_id p, cl_device_id d, int i) {
    list_ctx *c = ctx;
    if (i < c->cap) describe(cl, p, d, i, &c->out[i]);
    return 0;
}

int sdc_opencl_devices(sdc_cl_device *out, int cap) {
    list_ctx c = {out, out ? cap : 0};
    return walk_devices(list_one, &c);
}

/* The choice among the devices: by index, by name, or the first GPU. */
typedef struct pick_ctx {
    const char *want; /* "" : the first GPU/accelerator (a CPU if allowed and no other) */
    int index;        /* >= 0: by index */
    int allow_cpu;
    int found, fallback; /* found: a match; fallback: a CPU seen first */
    cl_platform_id p, fp;
    cl_device_id d, fd;
    sdc_cl_device info, finfo;
    int skipped_cpu; /* a match that is a CPU while CPUs are not allowed */
} pick_ctx;

static int icase_contains(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return 1;
    }
    return n == 0;
}

static int pick_one(void *ctx, const sdc_cl_api *cl, cl_platform_id p, cl_device_id d, int i) {
    pick_ctx *c = ctx;
    sdc_cl_device info;
    describe(cl, p, d, i, &info);
    int match = c->index >= 0 ? i == c->index
                              : c->want[0] ? icase_contains(info.name, c->want) : !info.is_cpu;
    if (match && info.is_cpu && !c->allow_cpu) {
        c->skipped_cpu = 1;
        match = 0;
    }
    if (!match && !c->want[0] && c->index < 0 && c->allow_cpu && !c->fallback) {
        c->fallback = 1; /* no GPU yet: the first device will do */
        c->fp = p, c->fd = d, c->finfo = info;
    }
    if (match) {
        c->found = 1;
        c->p = p, c->d = d, c->info = info;
    }
    return match;
}

/* ---- activation blocks -------------------------------------------------------- */

static void mem_add(clb *b, size_t n) {
    b->mem_now += n;
    if (b->mem_now > b->mem_peak) b->mem_peak = b->mem_now;
}


static sdc_status cl_buffer_alloc(sdc_backend *be, size_t bytes, float **base) {
    clb *b = clb_of(be);
    *base = NULL;
    size_t n = bytes / 4, dbytes = n * b->esize;
    if (bytes == 0 || bytes % 64) return sdc_fail(SDC_ERR_INVALID_ARG, "opencl: block of %zu bytes (not a positive multiple of 64)", bytes);
    if (n > 0xffffffffu || dbytes > b->info.max_alloc)
        return sdc_fail(SDC_ERR_NOMEM,
                        "opencl: a block of %zu MiB is more than %s allows in one buffer (%llu MiB)",
                        dbytes >> 20, b->info.name,
                        (unsigned long long)(b->info.max_alloc >> 20));
    if (b->nblocks == CLB_MAX_BLOCKS)
        return sdc_fail(SDC_ERR_NOMEM, "opencl: more than %d activation blocks", CLB_MAX_BLOCKS);
    /* address space only: any dereference faults */
    void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return sdc_fail(SDC_ERR_NOMEM, "opencl: reserving %zu bytes of address space", bytes);
    cl_int err;
    cl_mem m = b->cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE, dbytes, NULL, &err);
    if (!m) {
        munmap(p, bytes);
        return sdc_fail(SDC_ERR_NOMEM, "opencl: a device buffer of %zu MiB on %s: %s",
                        dbytes >> 20, b->info.name, sdc_cl_error_name(err));
    }
    /* zeroed, so that a read before a write is not garbage (and the memory
     * is committed now on drivers that allocate lazily) */
    cl_uchar zero = 0;
    err = b->cl->clEnqueueFillBuffer(b->q, m, &zero, 1, 0, dbytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        b->cl->clReleaseMemObject(m);
        munmap(p, bytes);
        return sdc_fail(SDC_ERR_NOMEM, "opencl: clearing a %zu MiB buffer: %s", dbytes >> 20,
                        sdc_cl_error_name(err));
    }
    b->blocks[b->nblocks++] = (clb_block){(uintptr_t)p, bytes, m};
    mem_add(b, dbytes);
    *base = p;
    return SDC_OK;
}

static void cl_buffer_free(sdc_backend *be, float *base) {
    clb *b = clb_of(be);
    if (!base) return;
    for (int i = 0; i < b->nblocks; i++)
        if (b->blocks[i].base == (uintptr_t)base) {
            /* the queue may still use it: the release waits for that */
            b->cl->clReleaseMemObject(b->blocks[i].mem);
            munmap(base, b->blocks[i].bytes);
            b->mem_now -= b->blocks[i].bytes / 4 * b->esize;
            b->blocks[i] = b->blocks[--b->nblocks];
            return;
        }
}

int clb_addr(clb *b, const float *p, cl_mem *mem, cl_uint *off) {
    if (!p) {
        *mem = b->dummy, *off = 0;
        return 1;
    }
    uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < b->nblocks; i++) {
        const clb_block *k = &b->blocks[i];
        if (a >= k->base && a < k->base + k->bytes) {
            if ((a - k->base) % 4) break;
            *mem = k->mem;
            *off = (cl_uint)((a - k->base) / 4);
            return 1;
        }
    }
    clb_fail_msg(b, "address %p is not in an activation block of this backend", (const void *)p);
    return 0;
}

/* ---- weights ------------------------------------------------------------------ */

static size_t wslot(const clb *b, const void *key) {
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (b->wcap - 1);
}

static clb_weight *wfind(clb *b, const void *key) {
    for (size_t i = wslot(b, key);; i = (i + 1) & (b->wcap - 1)) {
        if (b->wmap[i].key == key) return &b->wmap[i];
        if (!b->wmap[i].key) return NULL;
    }
}

/* Room for one more entry (rehash at half full); 0 if out of memory. */
static int wreserve(clb *b) {
    if ((b->wused + 1) * 2 <= b->wcap) return 1;
    size_t ncap = b->wcap * 2, live = 0;
    for (size_t i = 0; i < b->wcap; i++) live += b->wmap[i].key && b->wmap[i].key != CLB_TOMB;
    if ((live + 1) * 4 <= b->wcap) ncap = b->wcap; /* mostly tombstones: same size */
    clb_weight *nm = calloc(ncap, sizeof *nm), *old = b->wmap;
    if (!nm) return 0;
    size_t ocap = b->wcap;
    b->wmap = nm, b->wcap = ncap, b->wused = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key && old[i].key != CLB_TOMB) {
            size_t j = wslot(b, old[i].key);
            while (nm[j].key) j = (j + 1) & (ncap - 1);
            nm[j] = old[i];
            b->wused++;
        }
    free(old);
    return 1;
}

static void wrelease(clb *b, clb_weight *e) {
    b->cl->clReleaseMemObject(e->mem);
    b->mem_now -= e->bytes;
    memset(e, 0, sizeof *e);
    e->key = CLB_TOMB;
}

/* Uploads w: F32 and F16 as they are, BF16 widened to F32 through the
 * staging buffer. */
static clb_weight *wupload(clb *b, const sdc_weight *w) {
    if (w->dtype != SDC_DT_F32 && w->dtype != SDC_DT_F16 && w->dtype != SDC_DT_BF16) {
        clb_fail_msg(b, "weight %s: dtype %s is not a float type", w->name ? w->name : "?",
                     sdc_dtype_name(w->dtype));
        return NULL;
    }
    if (!wreserve(b)) {
        clb_fail_msg(b, "out of host memory for the weight table");
        return NULL;
    }
    const int half = w->dtype == SDC_DT_F16;
    const size_t esz = half ? 2 : 4, bytes = (size_t)(w->numel > 0 ? w->numel : 1) * esz;
    cl_int err;
    cl_mem m;
    if (w->dtype != SDC_DT_BF16) {
        m = b->cl->clCreateBuffer(b->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes,
                                  (void *)w->data, &err);
    } else {
        m = b->cl->clCreateBuffer(b->ctx, CL_MEM_READ_ONLY, bytes, NULL, &err);
        float *st = b->stage;
        const uint16_t *src = w->data;
        for (int64_t i = 0; m && err == CL_SUCCESS && i < w->numel; i += CLB_STAGE) {
            int64_t n = w->numel - i < CLB_STAGE ? w->numel - i : CLB_STAGE;
            for (int64_t j = 0; j < n; j++) st[j] = sdc_bf16_to_f32(src[i + j]);
            err = b->cl->clEnqueueWriteBuffer(b->q, m, CL_TRUE, (size_t)i * 4, (size_t)n * 4, st,
                                              0, NULL, NULL);
        }
        if (m && err != CL_SUCCESS) {
            b->cl->clReleaseMemObject(m);
            m = NULL;
        }
    }
    if (!m) {
        clb_fail_msg(b, "uploading weight %s (%lld values, %zu bytes): %s",
                     w->name ? w->name : "?", (long long)w->numel, bytes,
                     sdc_cl_error_name(err));
        return NULL;
    }
    size_t i = wslot(b, w->data);
    while (b->wmap[i].key && b->wmap[i].key != CLB_TOMB) i = (i + 1) & (b->wcap - 1);
    if (!b->wmap[i].key) b->wused++;
    b->wmap[i] = (clb_weight){w->data, m, half, w->numel, bytes};
    mem_add(b, bytes);
    /* the host copy is not read again */
    if (b->be.host_pages) b->be.host_pages(b->be.host_pages_ctx, w, SDC_RES_RELEASE);
    return &b->wmap[i];
}

clb_weight *clb_weight_entry(clb *b, const sdc_weight *w) {
    clb_weight *e = wfind(b, w->data);
    if (e && e->numel != w->numel) { /* the same memory holds another tensor now */
        wrelease(b, e);
        e = NULL;
    }
    return e ? e : wupload(b, w);
}

cl_mem clb_weight_get(clb *b, const sdc_weight *w, int *half) {
    clb_weight *e = clb_weight_entry(b, w);
    if (!e) return NULL;
    *half = e->half;
    return e->mem;
}

static void cl_weights(sdc_backend *be, const sdc_weight *const *w, int n, sdc_residency r) {
    clb *b = clb_of(be);
    for (int i = 0; i < n; i++) {
        if (!w[i] || !w[i]->data) continue;
        if (r == SDC_RES_PREFETCH) {
            int half;
            if (!clb_begin(b, "weights prefetch %s", w[i]->name ? w[i]->name : "?"))
                clb_weight_get(b, w[i], &half);
        } else {
            clb_weight *e = wfind(b, w[i]->data);
            if (e) wrelease(b, e);
        }
    }
}

/* ---- programs and launches ------------------------------------------------------ */

cl_kernel clb_kernel_get(clb *b, const char *src, const char *opts, const char *name) {
    int pi = -1;
    for (int i = 0; i < b->nprogs; i++)
        if (b->progs[i].src == src && strcmp(b->progs[i].opts, opts) == 0) pi = i;
    if (pi >= 0)
        for (int i = 0; i < b->nkernels; i++)
            if (b->kernels[i].prog == pi && strcmp(b->kernels[i].name, name) == 0)
                return b->kernels[i].k;
    if (pi < 0) {
        if (b->nprogs == CLB_MAX_PROGS || strlen(opts) >= sizeof b->progs[0].opts) {
            clb_fail_msg(b, "too many program variants");
            return NULL;
        }
        cl_program p = clb_program_build(b, src, opts);
        if (!p) return NULL;
        pi = b->nprogs++;
        b->progs[pi].src = src;
        snprintf(b->progs[pi].opts, sizeof b->progs[pi].opts, "%s", opts);
        b->progs[pi].prog = p;
    }
    if (b->nkernels == CLB_MAX_KERNELS || strlen(name) >= sizeof b->kernels[0].name) {
        clb_fail_msg(b, "too many kernels");
        return NULL;
    }
    cl_int err;
    cl_kernel k = b->cl->clCreateKernel(b->progs[pi].prog, name, &err);
    if (!k) {
        clb_fail(b, "clCreateKernel", err);
        return NULL;
    }
    clb_kernel *e = &b->kernels[b->nkernels++];
    e->prog = pi;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->k = k;
    return k;
}

clb_args clb_args_start(clb *b, cl_kernel k) {
    clb_args a = {b, k, 0, CL_SUCCESS, k == NULL};
    return a;
}

void clb_arg(clb_args *a, size_t size, const void *v) {
    if (a->bad || a->err != CL_SUCCESS) return;
    a->err = a->b->cl->clSetKernelArg(a->k, a->i++, size, v);
}
void clb_arg_u32(clb_args *a, cl_uint v) { clb_arg(a, sizeof v, &v); }
void clb_arg_i32(clb_args *a, cl_int v) { clb_arg(a, sizeof v, &v); }
void clb_arg_f32(clb_args *a, float v) { clb_arg(a, sizeof v, &v); }
void clb_arg_mem(clb_args *a, cl_mem m) { clb_arg(a, sizeof m, &m); }

void clb_arg_act(clb_args *a, const float *p) {
    cl_mem m = NULL;
    cl_uint off = 0;
    if (a->bad) return;
    if (!clb_addr(a->b, p, &m, &off)) {
        a->bad = 1;
        return;
    }
    clb_arg_mem(a, m);
    clb_arg_u32(a, off);
}

void clb_arg_w(clb_args *a, const sdc_weight *w) {
    if (a->bad) return;
    cl_mem m = a->b->dummy;
    int half = 0;
    if (w) {
        m = clb_weight_get(a->b, w, &half);
        if (!m) {
            a->bad = 1;
            return;
        }
    }
    clb_arg_mem(a, m);
    clb_arg_i32(a, half);
    clb_arg_i32(a, w != NULL);
}

void clb_launch(clb_args *a, cl_uint dims, const size_t *global, const size_t *local) {
    clb *b = a->b;
    if (a->bad) return;
    if (a->err != CL_SUCCESS) {
        clb_fail(b, "clSetKernelArg", a->err);
        return;
    }
    size_t g[3];
    for (cl_uint i = 0; i < dims; i++) {
        if (global[i] == 0) return;
        g[i] = local ? (global[i] + local[i] - 1) / local[i] * local[i] : global[i];
    }
    cl_int err = b->cl->clEnqueueNDRangeKernel(b->q, a->k, dims, NULL, g, local, 0, NULL, NULL);
    if (err != CL_SUCCESS) clb_fail(b, "clEnqueueNDRangeKernel", err);
}

/* ---- transfers, completion, memory ------------------------------------------------ */

static void cl_copy_in(sdc_backend *be, float *dev, const float *host, int64_t n) {
    clb *b = clb_of(be);
    cl_mem m;
    cl_uint off;
    if (n <= 0 || clb_begin(b, "copy_in [%lld]", (long long)n) || !clb_addr(b, dev, &m, &off))
        return;
    cl_int err = CL_SUCCESS;
    if (!b->act_half) {
        err = b->cl->clEnqueueWriteBuffer(b->q, m, CL_TRUE, (size_t)off * 4, (size_t)n * 4, host,
                                          0, NULL, NULL);
    } else {
        uint16_t *st = b->stage;
        for (int64_t i = 0; err == CL_SUCCESS && i < n; i += 2 * CLB_STAGE) {
            int64_t c = n - i < 2 * CLB_STAGE ? n - i : 2 * CLB_STAGE;
            for (int64_t j = 0; j < c; j++) st[j] = sdc_f32_to_f16(host[i + j]);
            err = b->cl->clEnqueueWriteBuffer(b->q, m, CL_TRUE, ((size_t)off + (size_t)i) * 2,
                                              (size_t)c * 2, st, 0, NULL, NULL);
        }
    }
    if (err != CL_SUCCESS) clb_fail(b, "clEnqueueWriteBuffer", err);
}

static void cl_copy_out(sdc_backend *be, float *host, const float *dev, int64_t n) {
    clb *b = clb_of(be);
    cl_mem m;
    cl_uint off;
    if (n <= 0 || clb_begin(b, "copy_out [%lld]", (long long)n) || !clb_addr(b, dev, &m, &off))
        return;
    cl_int err = CL_SUCCESS;
    if (!b->act_half) {
        err = b->cl->clEnqueueReadBuffer(b->q, m, CL_TRUE, (size_t)off * 4, (size_t)n * 4, host,
                                         0, NULL, NULL);
    } else {
        uint16_t *st = b->stage;
        for (int64_t i = 0; err == CL_SUCCESS && i < n; i += 2 * CLB_STAGE) {
            int64_t c = n - i < 2 * CLB_STAGE ? n - i : 2 * CLB_STAGE;
            err = b->cl->clEnqueueReadBuffer(b->q, m, CL_TRUE, ((size_t)off + (size_t)i) * 2,
                                             (size_t)c * 2, st, 0, NULL, NULL);
            for (int64_t j = 0; err == CL_SUCCESS && j < c; j++) host[i + j] = sdc_f16_to_f32(st[j]);
        }
    }
    if (err != CL_SUCCESS) clb_fail(b, "clEnqueueReadBuffer", err);
}

static sdc_status cl_sync(sdc_backend *be) {
    clb *b = clb_of(be);
    cl_int err = b->cl->clFinish(b->q);
    if (err != CL_SUCCESS && !b->failed) {
        snprintf(b->what, sizeof b->what, "sync");
        clb_fail(b, "clFinish", err);
    }
    if (!b->failed) return SDC_OK;
    b->failed = 0;
    return sdc_fail(SDC_ERR_DEVICE, "opencl (%s): %s", b->info.name, b->msg);
}

static void cl_memory(sdc_backend *be, size_t *now, size_t *peak) {
    clb *b = clb_of(be);
    if (now) *now = b->mem_now;
    if (peak) *peak = b->mem_peak;
}

static void cl_free(sdc_backend *be) {
    clb *b = clb_of(be);
    const sdc_cl_api *cl = b->cl;
    if (b->q) cl->clFinish(b->q);
    for (int i = 0; i < b->nkernels; i++) cl->clReleaseKernel(b->kernels[i].k);
    for (int i = 0; i < b->nprogs; i++) cl->clReleaseProgram(b->progs[i].prog);
    for (size_t i = 0; i < b->wcap; i++)
        if (b->wmap[i].key && b->wmap[i].key != CLB_TOMB) cl->clReleaseMemObject(b->wmap[i].mem);
    while (b->nblocks) cl_buffer_free(be, (float *)b->blocks[0].base);
    if (b->ids) cl->clReleaseMemObject(b->ids);
    if (b->scratch) cl->clReleaseMemObject(b->scratch);
    if (b->wscratch) cl->clReleaseMemObject(b->wscratch);
    if (b->wscratch_u) cl->clReleaseMemObject(b->wscratch_u);
    if (b->dummy) cl->clReleaseMemObject(b->dummy);
    if (b->q) cl->clReleaseCommandQueue(b->q);
    if (b->ctx) cl->clReleaseContext(b->ctx);
    free(b->wmap);
    free(b->stage);
    free(b);
}

/* ---- creation ------------------------------------------------------------------ */

/* The cache folder by the rules of opencl.h; "" for none. */
static void cache_dir(const char *opt, char *out, size_t cap) {
    const char *env = getenv("SDC_CL_CACHE"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    const char *dir = opt ? opt : env;
    out[0] = 0;
    if (dir && (strcmp(dir, "0") == 0 || strcmp(dir, "off") == 0)) return;
    if (dir && dir[0]) snprintf(out, cap, "%s", dir);
    else if (xdg && xdg[0]) snprintf(out, cap, "%s/sdc/cl", xdg);
    else if (home && home[0]) snprintf(out, cap, "%s/.cache/sdc/cl", home);
}

sdc_backend *sdc_backend_opencl_create(const sdc_cl_options *opt) {
    static const sdc_cl_options defaults = {0};
    if (!opt) opt = &defaults;
    pick_ctx pc;
    memset(&pc, 0, sizeof pc);
    pc.want = opt->device ? opt->device : "";
    pc.index = -1;
    pc.allow_cpu = opt->allow_cpu;
    if (pc.want[0]) {
        char *end;
        long v = strtol(pc.want, &end, 10);
        if (*end == 0 && v >= 0) pc.index = (int)v;
    }
    int count = walk_devices(pick_one, &pc);
    if (count < 0) return NULL;
    if (!pc.found && pc.fallback) {
        pc.found = 1;
        pc.p = pc.fp, pc.d = pc.fd, pc.info = pc.finfo;
    }
    if (!pc.found) {
        if (count == 0)
            sdc_fail(SDC_ERR_DEVICE, "opencl: no OpenCL device found (no platform has a device)");
        else if (pc.skipped_cpu)
            sdc_fail(SDC_ERR_DEVICE,
                     "opencl: the device '%s' is a CPU device, and CPU devices are not allowed",
                     pc.want[0] ? pc.want : "(first)");
        else if (pc.want[0])
            sdc_fail(SDC_ERR_DEVICE, "opencl: no OpenCL device %s '%s' among the %d found",
                     pc.index >= 0 ? "with index" : "whose name contains", pc.want, count);
        else
            sdc_fail(SDC_ERR_DEVICE, "opencl: no OpenCL GPU among the %d devices found", count);
        return NULL;
    }

    clb *b = calloc(1, sizeof *b);
    if (!b) {
        sdc_fail(SDC_ERR_NOMEM, "opencl: out of memory");
        return NULL;
    }
    b->cl = sdc_cl_load();
    b->platform = pc.p;
    b->dev = pc.d;
    b->info = pc.info;
    b->act_half = opt->fp16_storage != 0;
    b->esize = b->act_half ? 2 : 4;
    b->verbose = opt->verbose;
    snprintf(b->what, sizeof b->what, "create");
    if (b->cl->clGetPlatformInfo(pc.p, CL_PLATFORM_VERSION, sizeof b->platform_version - 1,
                                 b->platform_version, NULL) != CL_SUCCESS)
        b->platform_version[0] = 0;
    cache_dir(opt->cache_dir, b->cache_dir, sizeof b->cache_dir);
    b->be.impl = b;
    b->be.name = "opencl";
    b->wcap = 1024;
    b->wmap = calloc(b->wcap, sizeof *b->wmap);
    b->stage = malloc((size_t)CLB_STAGE * 4);
    const sdc_cl_api *cl = b->cl;
    cl_int err = CL_SUCCESS;
    const char *step = "clCreateContext";
    if (!b->wmap || !b->stage) {
        free(b->wmap);
        free(b->stage);
        free(b);
        sdc_fail(SDC_ERR_NOMEM, "opencl: out of memory");
        return NULL;
    }
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)pc.p, 0};
    b->ctx = cl->clCreateContext(props, 1, &b->dev, NULL, NULL, &err);
    if (b->ctx) {
        step = "clCreateCommandQueue";
        b->q = cl->clCreateCommandQueue(b->ctx, b->dev, 0, &err);
    }
    if (b->q) {
        step = "clCreateBuffer";
        b->ids = cl->clCreateBuffer(b->ctx, CL_MEM_READ_ONLY, CLB_IDS_CAP * 4, NULL, &err);
        if (b->ids) b->scratch = cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE, CLB_SCRATCH, NULL, &err);
        if (b->scratch) b->dummy = cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE, 64, NULL, &err);
        b->wscratch_bytes = CLB_WINO_SCRATCH < b->info.max_alloc ? CLB_WINO_SCRATCH
                                                                  : (size_t)b->info.max_alloc;
        b->wscratch_u_bytes = CLB_WINO_U < b->info.max_alloc ? CLB_WINO_U
                                                             : (size_t)b->info.max_alloc;
        if (b->dummy) {
            b->wscratch = cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE, b->wscratch_bytes, NULL,
                                             &err);
            if (b->wscratch)
                b->wscratch_u = cl->clCreateBuffer(b->ctx, CL_MEM_READ_WRITE,
                                                   b->wscratch_u_bytes, NULL, &err);
            if (!b->wscratch_u) {
                cl->clReleaseMemObject(b->dummy);
                b->dummy = NULL;
            }
        }
    }
    if (!b->dummy) {
        sdc_status st = err == CL_OUT_OF_HOST_MEMORY ? SDC_ERR_NOMEM : SDC_ERR_DEVICE;
        cl_free(&b->be);
        sdc_fail(st, "opencl: setting up %s: %s: %s", pc.info.name, step, sdc_cl_error_name(err));
        return NULL;
    }
    mem_add(b, CLB_IDS_CAP * 4 + CLB_SCRATCH + 64 + b->wscratch_bytes + b->wscratch_u_bytes);
    b->be.buffer_alloc = cl_buffer_alloc;
    b->be.buffer_free = cl_buffer_free;
    b->be.weights = cl_weights;
    b->be.copy_in = cl_copy_in;
    b->be.copy_out = cl_copy_out;
    b->be.sync = cl_sync;
    b->be.memory = cl_memory;
    b->be.free = cl_free;
    clb_fill_ops(&b->be);
    if (opt->verbose)
        fprintf(stderr, "sdc opencl: device %d: %s (%s; %s; driver %s), %s storage, cache %s\n",
                pc.info.index, pc.info.name, pc.info.platform, pc.info.version, pc.info.driver,
                b->act_half ? "fp16" : "fp32", b->cache_dir[0] ? b->cache_dir : "off");
    return &b->be;
}
#else
typedef int sdc_opencl_unused; /* built without OpenCL: opencl_stub.c */
#endif
