/*
 * A plain C reference of Headroom's multi-head attention forward pass (self-attention, batch 1,
 * no mask), used by the benchmarks in bench/ to measure what Java costs: it runs the same
 * algorithm as dev.headroom.attention.MultiHeadAttention with DenseKernel, on the same
 * cblas_sgemm, with the same split of work across threads. See attention_ref.c for the steps.
 *
 *   Q = X W_Qᵀ + b_Q,  K = X W_Kᵀ + b_K,  V = X W_Vᵀ + b_V
 *   O_h = softmax(scale · Q_h K_gᵀ) V_g           g = h / (H / G)
 *   Y = [O_1 … O_H] W_Oᵀ + b_O
 *
 * All matrices are float32, row-major. The caller owns every buffer, the workspace included:
 * size it with headroom_ref_workspace_floats and reuse it across calls.
 *
 * The Java bindings in bench/src/generated/java are generated from this header by
 * bench/generate-ref-bindings.sh; regenerate them after changing it.
 */
#ifndef HEADROOM_ATTENTION_REF_H
#define HEADROOM_ATTENTION_REF_H

#include <stddef.h>

/* Return codes of headroom_ref_forward. */
#define HEADROOM_REF_OK 0
#define HEADROOM_REF_BAD_SHAPE 1             /* a size is < 1, G does not divide H, or scale is 0 or not finite */
#define HEADROOM_REF_NULL_POINTER 2          /* a weight matrix, x, y or the workspace is NULL */
#define HEADROOM_REF_WORKSPACE_TOO_SMALL 3   /* fewer floats than headroom_ref_workspace_floats asks for */

/* The shape of one attention layer and of the sequence it is applied to. */
typedef struct {
    int n;          /* tokens in the sequence (batch 1, self-attention) */
    int d_model;    /* E: width of the input and of the output */
    int heads;      /* H: query heads */
    int kv_heads;   /* G: key/value heads; G divides H, query head h reads key/value head h / (H / G) */
    int head_dim;   /* d: width of one head */
    float scale;    /* the factor on Q·Kᵀ, usually 1/sqrt(d) */
} headroom_ref_config;

/* Borrowed weights in PyTorch's Linear layout (out_features, in_features); the caller owns them.
 * The biases may be NULL (each one independently). */
typedef struct {
    const float *wq;    /* W_Q: (H·d, E) */
    const float *bq;    /* b_Q: (H·d), or NULL */
    const float *wk;    /* W_K: (G·d, E) */
    const float *bk;    /* b_K: (G·d), or NULL */
    const float *wv;    /* W_V: (G·d, E) */
    const float *bv;    /* b_V: (G·d), or NULL */
    const float *wo;    /* W_O: (E, H·d) */
    const float *bo;    /* b_O: (E), or NULL */
} headroom_ref_weights;

/*
 * Floats of workspace one call needs for this shape, `threads` workers and query blocks of
 * `block` rows: the projections (H·d + 2·G·d)·n, the concatenated heads n·H·d, and per worker
 * a score block min(block, n)·n plus min(block, n) row sums. Returns 0 for a bad shape.
 */
size_t headroom_ref_workspace_floats(const headroom_ref_config *config, int threads, int block);

/*
 * y (n, E) = multi-head attention of x (n, E), computed with `threads` OpenMP threads, each
 * sgemm on one OpenBLAS thread (OpenBLAS's thread count is set to 1 for the call and restored
 * after it), attention in tasks of (head, block of `block` query rows).
 * Returns HEADROOM_REF_OK, or one of the HEADROOM_REF_* codes above without touching y.
 */
int headroom_ref_forward(const headroom_ref_config *config, const headroom_ref_weights *weights,
                         const float *x, float *y,
                         float *workspace, size_t workspace_floats,
                         int threads, int block);

/* A short English description of a return code. */
const char *headroom_ref_strerror(int code);

#endif
