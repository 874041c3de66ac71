/*
 * The C reference of Headroom's attention forward pass; see attention_ref.h for the contract.
 *
 * It follows dev.headroom.attention.MultiHeadAttention (with DenseKernel) step by step, so
 * that timing one against the other measures the cost of Java, not a different algorithm:
 *   1. project: Qᵀ, Kᵀ, Vᵀ = W · Xᵀ + b, into one buffer, the stacked rows [W_Q; W_K; W_V] cut
 *      into about one chunk per thread;
 *   2. attend: for each (head, block of query rows) task, handed out dynamically,
 *      S = scale · Q_blk K_gᵀ (one sgemm), P = exp(S − rowmax) in place with the row sums kept,
 *      O_blk = P V_g (one sgemm) into the concatenated heads, then O_blk /= rowsum;
 *   3. output projection: Y = concat · W_Oᵀ + b_O, rows cut into about one chunk per thread.
 * Every sgemm runs on one OpenBLAS thread; the parallelism is OpenMP's, across tasks.
 *
 * Built by bench/pom.xml with -O3 -march=native -ffast-math -fopenmp, so that the expf loop of
 * the softmax is vectorised through glibc's libmvec. -ffast-math is given to the compile step
 * only: gcc 12 links crtfastmath.o into shared objects linked with it, which would switch the
 * whole JVM to flush-to-zero when the library is loaded.
 */
#include "attention_ref.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* Rows per task so that each of the threads gets about one task, in multiples of 16 (as Java's rowChunk). */
static int row_chunk(int rows, int threads) {
    int per_thread = (rows + threads - 1) / threads;
    int chunk = (per_thread + 15) / 16 * 16;
    return chunk > 16 ? chunk : 16;
}

static int min_int(int a, int b) { return a < b ? a : b; }
static int max_int(int a, int b) { return a > b ? a : b; }

/* Each of `rows` rows of out (leading dimension ldo, `cols` wide) set to bias[r] (a value per row). */
static void fill_rows_with_values(float *out, int rows, int cols, int ldo, const float *bias) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) out[(size_t) r * ldo + j] = bias[r];
}

/* Each of `rows` rows of out (leading dimension ldo) set to the vector bias (cols). */
static void fill_rows_with_vector(float *out, int rows, int cols, int ldo, const float *bias) {
    for (int r = 0; r < rows; r++) memcpy(out + (size_t) r * ldo, bias, (size_t) cols * sizeof(float));
}

/*
 * Step 1 for the stacked rows [r0, r1) of [W_Q; W_K; W_V]: proj rows r0..r1 = W rows · xᵀ + b.
 * A chunk that crosses from one matrix into the next is two sgemm calls.
 */
static void project_rows(const headroom_ref_config *c, const headroom_ref_weights *w, const float *x,
                         float *proj, int r0, int r1) {
    int E = c->d_model, n = c->n;
    int qw = c->heads * c->head_dim, kw = c->kv_heads * c->head_dim;
    const float *weight[3] = {w->wq, w->wk, w->wv};   /* (rows[p], E) each */
    const float *bias[3] = {w->bq, w->bk, w->bv};     /* (rows[p]) each, or NULL */
    int rows[3] = {qw, kw, kw};
    int base = 0;                                     /* first stacked row of matrix p */
    for (int p = 0; p < 3; p++) {
        int lo = max_int(r0, base), hi = min_int(r1, base + rows[p]);
        if (lo < hi) {
            float *out = proj + (size_t) lo * n;      /* (hi − lo, n), ld n */
            if (bias[p]) fill_rows_with_values(out, hi - lo, n, n, bias[p] + (lo - base));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, n, E,
                        1.0f, weight[p] + (size_t) (lo - base) * E, E,
                        x, E,
                        bias[p] ? 1.0f : 0.0f, out, n);
        }
        base += rows[p];
    }
}

/* exp(s − max(s)) in place over a row of len > 0 scores; returns the sum. No mask, so max is finite. */
static float softmax_unnormalised(float *s, int len) {
    float max = s[0];
    for (int j = 1; j < len; j++) max = s[j] > max ? s[j] : max;
    float sum = 0.0f;
    for (int j = 0; j < len; j++) {
        s[j] = expf(s[j] - max);
        sum += s[j];
    }
    return sum;
}

/*
 * Step 2 for query rows [q0, q0 + m) of head h: concat rows q0.., columns h·d.. = softmax(scale · Q Kᵀ) V.
 * scratch holds m·n + m floats.
 */
static void attend_block(const headroom_ref_config *c, const float *proj, float *concat,
                         int h, int q0, int m, float *scratch) {
    int n = c->n, d = c->head_dim;
    int qw = c->heads * d, kw = c->kv_heads * d;
    int g = h / (c->heads / c->kv_heads);
    const float *qT = proj + (size_t) h * d * n + q0;             /* Q_hᵀ for these rows: (d, m), ld n */
    const float *kT = proj + (size_t) qw * n + (size_t) g * d * n; /* K_gᵀ: (d, n), ld n */
    const float *vT = kT + (size_t) kw * n;                        /* V_gᵀ: (d, n), ld n */
    float *out = concat + (size_t) q0 * qw + (size_t) h * d;       /* O_h for these rows: (m, d), ld H·d */
    float *S = scratch;                                            /* scores, then probabilities: (m, n), ld n */
    float *row_sum = scratch + (size_t) m * n;                     /* softmax denominators: (m) */

    // S = scale · Q_h K_gᵀ
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, d,
                c->scale, qT, n, kT, n, 0.0f, S, n);

    // P = exp(S − rowmax), keeping the row sums
    for (int i = 0; i < m; i++) row_sum[i] = softmax_unnormalised(S + (size_t) i * n, n);

    // O_h = P V_g
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, d, n,
                1.0f, S, n, vT, n, 0.0f, out, qw);

    // O_h /= rowsum: the division on the (m, d) output instead of the (m, n) probabilities
    for (int i = 0; i < m; i++) {
        float inv = row_sum[i] > 0.0f ? 1.0f / row_sum[i] : 0.0f;
        float *o = out + (size_t) i * qw;
        for (int j = 0; j < d; j++) o[j] *= inv;
    }
}

/* isfinite on the bits: -ffast-math lets the compiler assume every float is finite and fold isfinite(x) to 1. */
static int finite_bits(float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return (bits & 0x7f800000u) != 0x7f800000u;
}

static int valid_config(const headroom_ref_config *c, int threads, int block) {
    return c && c->n >= 1 && c->d_model >= 1 && c->heads >= 1 && c->kv_heads >= 1 && c->head_dim >= 1
           && c->heads % c->kv_heads == 0 && finite_bits(c->scale) && c->scale != 0.0f
           && threads >= 1 && block >= 1;
}

size_t headroom_ref_workspace_floats(const headroom_ref_config *c, int threads, int block) {
    if (!valid_config(c, threads, block)) return 0;
    size_t n = (size_t) c->n, qw = (size_t) c->heads * c->head_dim, kw = (size_t) c->kv_heads * c->head_dim;
    size_t m = (size_t) min_int(block, c->n);
    return (qw + 2 * kw) * n      /* proj:    (H·d + 2·G·d, n) */
           + n * qw               /* concat:  (n, H·d) */
           + (size_t) threads * (m * n + m);  /* scratch: (threads, m·n + m) */
}

int headroom_ref_forward(const headroom_ref_config *c, const headroom_ref_weights *w,
                         const float *x, float *y,
                         float *workspace, size_t workspace_floats,
                         int threads, int block) {
    if (!valid_config(c, threads, block)) return HEADROOM_REF_BAD_SHAPE;
    if (!w || !w->wq || !w->wk || !w->wv || !w->wo || !x || !y || !workspace) return HEADROOM_REF_NULL_POINTER;
    if (workspace_floats < headroom_ref_workspace_floats(c, threads, block)) return HEADROOM_REF_WORKSPACE_TOO_SMALL;

    int n = c->n, E = c->d_model;
    int qw = c->heads * c->head_dim, kw = c->kv_heads * c->head_dim;
    int m = min_int(block, n);
    float *proj = workspace;                            /* Qᵀ (H·d, n), then Kᵀ (G·d, n), then Vᵀ (G·d, n); row-major */
    float *concat = proj + (size_t) (qw + 2 * kw) * n;  /* (n, H·d) row-major, head h in columns [h·d, (h+1)·d) */
    float *scratch = concat + (size_t) n * qw;          /* (threads, m·n + m): each worker's S and row sums */
    size_t scratch_per_worker = (size_t) m * n + m;

    int blas_threads_before = openblas_get_num_threads();
    openblas_set_num_threads(1);

    // 1. project: Qᵀ = W_Q Xᵀ + b_Q, Kᵀ = W_K Xᵀ + b_K, Vᵀ = W_V Xᵀ + b_V
    int stacked = qw + 2 * kw, chunk = row_chunk(stacked, threads);
    int tasks = (stacked + chunk - 1) / chunk;
    #pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int t = 0; t < tasks; t++) {
        project_rows(c, w, x, proj, t * chunk, min_int(stacked, (t + 1) * chunk));
    }

    // 2. O_h = softmax(scale · Q_h K_gᵀ) V_g, per head and block of query rows
    int blocks = (n + m - 1) / m;
    #pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int t = 0; t < c->heads * blocks; t++) {
        int h = t / blocks, q0 = t % blocks * m;
        float *mine = scratch + (size_t) omp_get_thread_num() * scratch_per_worker;
        attend_block(c, proj, concat, h, q0, min_int(m, n - q0), mine);
    }

    // 3. Y = concat(O_1 … O_H) W_Oᵀ + b_O
    chunk = row_chunk(n, threads);
    tasks = (n + chunk - 1) / chunk;
    #pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int t = 0; t < tasks; t++) {
        int r0 = t * chunk, r1 = min_int(n, r0 + chunk);
        float *y_rows = y + (size_t) r0 * E;   /* (r1 − r0, E), ld E */
        if (w->bo) fill_rows_with_vector(y_rows, r1 - r0, E, E, w->bo);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, E, qw,
                    1.0f, concat + (size_t) r0 * qw, qw,
                    w->wo, qw,
                    w->bo ? 1.0f : 0.0f, y_rows, E);
    }

    openblas_set_num_threads(blas_threads_before);
    return HEADROOM_REF_OK;
}

const char *headroom_ref_strerror(int code) {
    switch (code) {
        case HEADROOM_REF_OK: return "ok";
        case HEADROOM_REF_BAD_SHAPE:
            return "bad shape: every size, threads and block must be >= 1, kv_heads must divide heads, "
                   "scale must be finite and non-zero";
        case HEADROOM_REF_NULL_POINTER: return "a weight matrix, x, y or the workspace is NULL";
        case HEADROOM_REF_WORKSPACE_TOO_SMALL: return "workspace smaller than headroom_ref_workspace_floats";
        default: return "unknown return code";
    }
}
