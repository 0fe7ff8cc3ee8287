/* Per-genotype-class column sums of packed PLINK .bed bytes: the hard-call kernel of
 * hlmm.engines._kernels_classes (see class_moments_packed there, and docs/performance.rst).
 *
 * Loaded with ctypes (which releases the GIL for the call) and called from Python threads, each
 * on its own range of variants; it holds no state but a constant table, and allocates nothing.
 *
 * Summation order, which fixes every bit of the sums: individual i (its row in the file) is added
 * to lane i % 8 of its class's sum, each lane in increasing i, and the eight lanes are combined as
 * ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). The numba kernels of _kernels_classes add in
 * the same order, so the sums are the same to the last bit with or without this library, and on
 * any instruction set: the vectors below are GCC's generic vectors, the same arithmetic however
 * they are lowered; the class masks are bitwise ANDs (adding a masked row adds +0.0, which leaves
 * a sum unchanged), and there are no multiplications to fuse.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* x86-64 with GCC: one copy of the kernel per instruction set, the machine's picked at load time.
 * The x86-64-v4 and v3 levels (GCC >= 11) measured 0.67-0.74 times the time of plain "avx512f"
 * and "avx2" (GCC 6-10). Built without clones (another architecture or compiler, unless its flags
 * enable AVX2), the vectors are lowered to 128-bit or scalar code, which measured slower than
 * numba's kernel (1.44 times its time): hlmm_classsums_fast() then says so, and hlmm uses numba. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define HAVE_CLONES 1
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define HAVE_CLONES 1
#else
#define CLONES
#define HAVE_CLONES 0
#endif

/* (the vector helpers below return vectors: always inlined, so no calling convention applies) */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));

/* CLASS_MASKS[byte][class]: all-ones in the lanes (individuals 0..3 of the byte) of that class.
 * 2-bit codes: 00 two copies of A1, 01 missing, 10 one copy, 11 no copy. Classes: 0, 1, 2
 * copies, 3 missing. */
static v4l CLASS_MASKS[256][4];

/* 1 if this build runs 256-bit vectors or wider on this machine (AVX2, by a clone or by the
 * compiler's flags), else 0. */
int hlmm_classsums_fast(void)
{
#if HAVE_CLONES
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#elif defined(__AVX2__)
    return 1;
#else
    return 0;
#endif
}

void hlmm_classsums_init(void)
{
    static const int class_of_code[4] = {2, 3, 1, 0};
    for (int v = 0; v < 256; v++)
        for (int k = 0; k < 4; k++)
            for (int p = 0; p < 4; p++)
                CLASS_MASKS[v][k][p] = class_of_code[(v >> (2 * p)) & 3] == k ? -1 : 0;
}

/* Whether any of the bytes holds a missing call (code 01). Padding codes past the last
 * individual are 00 in a .bed. */
static int any_missing(const uint8_t *packed, int64_t nbytes)
{
    uint64_t any = 0;
    int64_t i = 0;
    for (; i + 8 <= nbytes; i += 8) {
        uint64_t w;
        memcpy(&w, packed + i, 8);
        any |= w & ~(w >> 1) & 0x5555555555555555ULL;
    }
    for (; i < nbytes; i++) {
        uint64_t w = packed[i];
        any |= w & ~(w >> 1) & 0x55;
    }
    return any != 0;
}

/* Adds rows 8 * t0 .. 8 * t1 - 1 of NQ columns (y: the first of them, each n8 long) to the sums of
 * NK classes (the first NK of 0, 1, 2, missing) in acc[NK][NQ][2] (lanes 0-3, 4-7). Eight
 * individuals per step: two bytes, two 4-lane halves. The sums are held in registers over the
 * range and stored back at its end. Up to two columns (one phenotype's y and y^2, the counts
 * being counted by hlmm_class_counts) the loop goes class by class, each class's masks loaded once
 * for the columns; with 3 or 4 columns, whose 24-32 running sums do not fit in AVX2's 16
 * registers, column by column (class by class, they took 1.11-1.20 times as long). Either order
 * adds the same rows in the same order to each sum. On a Zen 1 (n = 100,000, one thread, the
 * counts included) the two macros took 0.82 times the time of the one loop before them with a
 * phenotype's 2 columns, 0.85 with 3, and 0.87 with 20 (10 phenotypes); on two threads, 1.01
 * with 20 (docs/performance.rst, "Hard calls on a Zen 1"). */
#define SUMS_HEAD(NK, NQ)                                                                          \
    static inline __attribute__((always_inline)) void sums_##NK##_##NQ(                            \
        const uint8_t *packed, int64_t nbytes, const double *y, int64_t n8, int64_t t0, int64_t t1, \
        v4d *acc)                                                                                  \
    {                                                                                              \
        v4d lo[NK][NQ], hi[NK][NQ];                                                                \
        for (int k = 0; k < NK; k++)                                                               \
            for (int c = 0; c < NQ; c++) {                                                         \
                lo[k][c] = acc[(k * NQ + c) * 2];                                                  \
                hi[k][c] = acc[(k * NQ + c) * 2 + 1];                                              \
            }                                                                                      \
        for (int64_t t = t0; t < t1; t++) {                                                        \
            unsigned b0 = 2 * t < nbytes ? packed[2 * t] : 0;                                      \
            unsigned b1 = 2 * t + 1 < nbytes ? packed[2 * t + 1] : 0;

#define SUMS_TAIL(NK, NQ)                                                                          \
        }                                                                                          \
        for (int k = 0; k < NK; k++)                                                               \
            for (int c = 0; c < NQ; c++) {                                                         \
                acc[(k * NQ + c) * 2] = lo[k][c];                                                  \
                acc[(k * NQ + c) * 2 + 1] = hi[k][c];                                              \
            }                                                                                      \
    }

/* column by column, each class's masks loaded for each column */
#define SUMS(NK, NQ)                                                                               \
    SUMS_HEAD(NK, NQ)                                                                              \
            for (int c = 0; c < NQ; c++) {                                                         \
                v4d y0, y1;                                                                        \
                memcpy(&y0, y + c * n8 + 8 * t, 32);                                               \
                memcpy(&y1, y + c * n8 + 8 * t + 4, 32);                                           \
                for (int k = 0; k < NK; k++) {                                                     \
                    lo[k][c] += (v4d)((v4l)y0 & CLASS_MASKS[b0][k]);                               \
                    hi[k][c] += (v4d)((v4l)y1 & CLASS_MASKS[b1][k]);                               \
                }                                                                                  \
            }                                                                                      \
    SUMS_TAIL(NK, NQ)

/* class by class, each class's masks loaded once for the columns */
#define SUMS_BY_CLASS(NK, NQ)                                                                      \
    SUMS_HEAD(NK, NQ)                                                                              \
            v4d y0[NQ], y1[NQ];                                                                    \
            for (int c = 0; c < NQ; c++) {                                                         \
                memcpy(&y0[c], y + c * n8 + 8 * t, 32);                                            \
                memcpy(&y1[c], y + c * n8 + 8 * t + 4, 32);                                        \
            }                                                                                      \
            for (int k = 0; k < NK; k++) {                                                         \
                v4l m0 = CLASS_MASKS[b0][k], m1 = CLASS_MASKS[b1][k];                              \
                for (int c = 0; c < NQ; c++) {                                                     \
                    lo[k][c] += (v4d)((v4l)y0[c] & m0);                                            \
                    hi[k][c] += (v4d)((v4l)y1[c] & m1);                                            \
                }                                                                                  \
            }                                                                                      \
    SUMS_TAIL(NK, NQ)

SUMS_BY_CLASS(3, 1) SUMS_BY_CLASS(3, 2) SUMS(3, 3) SUMS(3, 4)
SUMS_BY_CLASS(4, 1) SUMS_BY_CLASS(4, 2) SUMS(4, 3) SUMS(4, 4)

#define GROUP 8   /* variants that share each chunk of the columns */
#define CHUNK 128 /* steps of 8 individuals: 1,024 rows, 32 KB of 4 columns */

/* Variants j0 .. j1 - 1 of packed (b, nbytes): each variant's nbytes packed bytes, the columns Yt
 * (q, n8) (row i of the file in column i; n8 a multiple of 8, and zero past the file's last
 * individual), into out (b, 4, q), which must be zero on entry (a variant's missing class is left
 * so when it has no missing call). Columns are taken four at a time, and variants GROUP at a time
 * over chunks of CHUNK * 8 individuals, so that a chunk of four columns is read from memory once
 * per group of variants and stays in cache for the others. */
CLONES
void hlmm_class_sums(const uint8_t *packed_all, int64_t nbytes, const double *Yt, int64_t q, int64_t n8,
                     double *out_all, int64_t j0, int64_t j1)
{
    v4d acc[GROUP][4 * 4 * 2];
    int missing[GROUP];
    int64_t steps = n8 / 8;
    for (int64_t g0 = j0; g0 < j1; g0 += GROUP) {
        int64_t g1 = g0 + GROUP < j1 ? g0 + GROUP : j1;
        for (int64_t j = g0; j < g1; j++)
            missing[j - g0] = any_missing(packed_all + j * nbytes, nbytes);
        for (int64_t col0 = 0; col0 < q; col0 += 4) {
            int64_t w = q - col0 < 4 ? q - col0 : 4;
            const double *y = Yt + col0 * n8;
            memset(acc, 0, sizeof(acc));
            for (int64_t t0 = 0; t0 < steps; t0 += CHUNK) {
                int64_t t1 = t0 + CHUNK < steps ? t0 + CHUNK : steps;
                for (int64_t j = g0; j < g1; j++) {
                    const uint8_t *packed = packed_all + j * nbytes;
                    v4d *a = acc[j - g0];
                    /* a switch, not a table of pointers, so that each is inlined into each clone */
                    switch (missing[j - g0] * 4 + w) {
                    case 1: sums_3_1(packed, nbytes, y, n8, t0, t1, a); break;
                    case 2: sums_3_2(packed, nbytes, y, n8, t0, t1, a); break;
                    case 3: sums_3_3(packed, nbytes, y, n8, t0, t1, a); break;
                    case 4: sums_3_4(packed, nbytes, y, n8, t0, t1, a); break;
                    case 5: sums_4_1(packed, nbytes, y, n8, t0, t1, a); break;
                    case 6: sums_4_2(packed, nbytes, y, n8, t0, t1, a); break;
                    case 7: sums_4_3(packed, nbytes, y, n8, t0, t1, a); break;
                    default: sums_4_4(packed, nbytes, y, n8, t0, t1, a); break;
                    }
                }
            }
            for (int64_t j = g0; j < g1; j++) {
                int nk = missing[j - g0] ? 4 : 3;
                double *out = out_all + j * 4 * q;
                for (int k = 0; k < nk; k++)
                    for (int64_t c = 0; c < w; c++) {
                        v4d lo = acc[j - g0][(k * w + c) * 2], hi = acc[j - g0][(k * w + c) * 2 + 1];
                        out[k * q + col0 + c] = ((lo[0] + lo[1]) + (lo[2] + lo[3])) + ((hi[0] + hi[1]) + (hi[2] + hi[3]));
                    }
            }
        }
    }
}

/* Variants j0 .. j1 - 1 of packed (b, nbytes): per class (0, 1, 2 copies, missing), the number of
 * individuals whose bit in `indicator` is set, as doubles in out_all[j * 4 * q + k * q + col]; the
 * missing class only for a variant with a missing call (else left as it is, zero). indicator has
 * nbytes bytes laid out as packed's: individual 4 b + p's bit at bit 2 p of byte b (the odd bits
 * zero), and zero past the file's last individual. A column of zeros and ones summed over each
 * class by hlmm_class_sums gives these whole numbers to the last bit (any order of adding them is
 * exact below 2^53), in a fraction of its time: a popcount of 32 individuals per class, against
 * eight individuals per vector addition. */
CLONES
void hlmm_class_counts(const uint8_t *packed_all, int64_t nbytes, const uint8_t *indicator, int64_t q,
                       int64_t col, double *out_all, int64_t j0, int64_t j1)
{
    const uint64_t EVEN = 0x5555555555555555ULL;
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *packed = packed_all + j * nbytes;
        int64_t c0 = 0, c1 = 0, c2 = 0, cm = 0;
        for (int64_t i = 0; i < nbytes; i += 8) {
            uint64_t w = 0, m = 0;
            if (i + 8 <= nbytes) {
                memcpy(&w, packed + i, 8);
                memcpy(&m, indicator + i, 8);
            } else {
                memcpy(&w, packed + i, nbytes - i);
                memcpy(&m, indicator + i, nbytes - i);
            }
            uint64_t lo = w & EVEN, hi = (w >> 1) & EVEN;
            c0 += __builtin_popcountll(lo & hi & m);         /* 0b11: no copy */
            c1 += __builtin_popcountll(hi & ~lo & m);        /* 0b10: one copy */
            c2 += __builtin_popcountll(~(lo | hi) & m);      /* 0b00: two copies (m's odd bits are zero) */
            cm += __builtin_popcountll(lo & ~hi & m);        /* 0b01: missing */
        }
        double *out = out_all + j * 4 * q + col;
        out[0] = (double)c0;
        out[q] = (double)c1;
        out[2 * q] = (double)c2;
        if (cm)
            out[3 * q] = (double)cm;
    }
}

/* ---------------------------------------------------------------------------------------------
 * The score test's power sums of dosages (hlmm.engines._kernels_score.centred_power_sums): per
 * variant, the calls (dosage >= 0; NaN is not), their summed dosage s, and sum_i g_i^m B[i, k] for
 * m = 1, 2, 3 with g = dosage - s / calls over the calls (a missing call adds nothing).
 *
 * Order: individual i (its row in B) goes to lane i % 8 of each sum, each lane in increasing i,
 * combined as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); products and sums are rounded
 * one by one (the file is built with -ffp-contract=off: no fused multiply-adds), as numba's
 * fallback rounds them, so the two agree to the last bit on every instruction set.
 * ------------------------------------------------------------------------------------------- */

/* The eight lanes of a sum in one 8-wide vector (lane l: individuals i with i % 8 == l): one
 * 512-bit register with AVX-512 (the x86-64-v4 clone), two 256-bit ones with AVX2, four with SSE2;
 * the same additions, lane by lane, however it is lowered. Against two 4-wide halves, on a 2-core
 * AVX-512 Xeon (256 variants in memory, n = 100,000, medians of 5): 21 columns 0.227 against 0.258
 * ms per variant on two threads (0.46 against 0.51 on one), 3 columns 0.069 against 0.076. */
typedef double v8d __attribute__((vector_size(64)));
typedef int64_t v8l __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) double combine8(v8d a)
{
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* N dosages of individuals i .. i + N - 1 (rows[i] .. of row x, or x[i] .. if rows is NULL); past
 * n, NaN (no call): eight for the power sums' 8-wide vectors, four for either half of them. */
typedef float v4f __attribute__((vector_size(16)));
#define LOAD(N, T, VT, VD)                                                                         \
    static inline __attribute__((always_inline)) void load##N##_##T(const T *x, const int64_t *rows, \
                                                                     int64_t i, int64_t n, VD *d)  \
    {                                                                                              \
        if (!rows && i + N <= n) {                                                                 \
            VT a;                                                                                  \
            memcpy(&a, x + i, sizeof(a));                                                          \
            *d = __builtin_convertvector(a, VD);                                                   \
            return;                                                                                \
        }                                                                                          \
        for (int l = 0; l < N; l++)                                                                \
            (*d)[l] = i + l < n ? (double)x[rows ? rows[i + l] : i + l] : __builtin_nan("");       \
    }
LOAD(8, float, v8f, v8d)
LOAD(8, double, v8d, v8d)
LOAD(4, float, v4f, v4d)
LOAD(4, double, v4d, v4d)

/* One step of pass two for the dosages d (vector VT, its comparisons IT) of individuals i ..: for
 * each column c of P[c] > 0, a[m - 1][c] += g^m Bt[col0 + c][i ..] for m = 1 .. P[c], with g the
 * dosage centred at mv, 0 for no call (P, Bt, n8 and col0 the caller's). */
#define POWER_STEP(VT, IT, d, mv, i, a)                                                            \
    do {                                                                                           \
        IT ok_ = (d) >= 0.0;                                                                       \
        VT g_ = (VT)((IT)((d) - (mv)) & ok_);                                                      \
        VT g2_ = g_ * g_;                                                                          \
        VT g3_ = g2_ * g_;                                                                         \
        for (int c_ = 0; c_ < 4; c_++) {                                                           \
            if (P[c_] == 0)                                                                        \
                continue;                                                                          \
            VT v_;                                                                                 \
            memcpy(&v_, Bt + (col0 + c_) * n8 + (i), sizeof(VT));                                  \
            (a)[0][c_] += g_ * v_;                                                                 \
            if (P[c_] >= 2)                                                                        \
                (a)[1][c_] += g2_ * v_;                                                            \
            if (P[c_] >= 3)                                                                        \
                (a)[2][c_] += g3_ * v_;                                                            \
        }                                                                                          \
    } while (0)

/* Pass two over individuals i0 .. i1 - 1 (multiples of 8) and the columns col0 .. col0 + 3 of Bt
 * (r, n8) whose powers P[c] (3, 2, 1, or 0 for no column) are given, added to acc[3][4] (held in
 * registers over the range): sum g^m Bt[col0 + c] for m = 1 .. P[c]. Always inlined with P a
 * constant, so that each pattern of P has its own loop, without the products it does not need. */
#define POWERS(T)                                                                                  \
    static inline __attribute__((always_inline)) void powers_##T(                                  \
        const T *x, const int64_t *rows, int64_t n, double mean, const double *Bt, int64_t n8,     \
        int64_t col0, const int P[4], int64_t i0, int64_t i1, v8d acc[3][4])                       \
    {                                                                                              \
        v8d a[3][4];                                                                               \
        memcpy(a, acc, sizeof(a));                                                                 \
        const v8d mv = {mean, mean, mean, mean, mean, mean, mean, mean};                           \
        for (int64_t i = i0; i < i1; i += 8) {                                                     \
            v8d d;                                                                                 \
            load8_##T(x, rows, i, n, &d);                                                          \
            POWER_STEP(v8d, v8l, d, mv, i, a);                                                    \
        }                                                                                          \
        memcpy(acc, a, sizeof(a));                                                                 \
    }

/* powers_T in two 4-wide halves of the eight lanes (hlmm_lanes() 4: no AVX-512), the same additions
 * in the same order: lanes 0-3 (individuals i % 8 < 4) of POWERS4_ROWS rows, then lanes 4-7 of the
 * same rows, whose columns are then in L1 cache. Each half's sums fit in AVX2's 16 registers, where
 * the eight lanes' sums of powers (3, 2, 1) (12 vectors of 256 bits) spilled to the stack. */
#define POWERS4_ROWS 512
#define POWERS4(T)                                                                                 \
    static inline __attribute__((always_inline)) void powers4_##T(                                 \
        const T *x, const int64_t *rows, int64_t n, double mean, const double *Bt, int64_t n8,     \
        int64_t col0, const int P[4], int64_t i0, int64_t i1, v8d acc[3][4])                       \
    {                                                                                              \
        const v4d mv = {mean, mean, mean, mean};                                                   \
        for (int64_t s0 = i0; s0 < i1; s0 += POWERS4_ROWS) {                                       \
            int64_t s1 = s0 + POWERS4_ROWS < i1 ? s0 + POWERS4_ROWS : i1;                          \
            for (int h = 0; h < 2; h++) {                                                          \
                v4d a[3][4];                                                                       \
                for (int c = 0; c < 4; c++)                                                        \
                    for (int m = 0; m < P[c]; m++)                                                 \
                        memcpy(&a[m][c], (char *)&acc[m][c] + 32 * h, 32);                         \
                for (int64_t i = s0 + 4 * h; i < s1; i += 8) {                                     \
                    v4d d;                                                                         \
                    load4_##T(x, rows, i, n, &d);                                                  \
                    POWER_STEP(v4d, v4l, d, mv, i, a);                                            \
                }                                                                                  \
                for (int c = 0; c < 4; c++)                                                        \
                    for (int m = 0; m < P[c]; m++)                                                 \
                        memcpy((char *)&acc[m][c] + 32 * h, &a[m][c], 32);                         \
            }                                                                                      \
        }                                                                                          \
    }

/* The patterns of powers of four columns that have a loop of their own: the non-increasing ones,
 * as the caller orders its columns (a chunk of another pattern takes its highest power for every
 * column, and the extra sums are not written out). */
#define PATTERNS(X, T)                                                                             \
    X(T, 1, 0, 0, 0) X(T, 1, 1, 0, 0) X(T, 1, 1, 1, 0) X(T, 1, 1, 1, 1)                            \
    X(T, 2, 0, 0, 0) X(T, 2, 1, 0, 0) X(T, 2, 1, 1, 0) X(T, 2, 1, 1, 1) X(T, 2, 2, 0, 0)           \
    X(T, 2, 2, 1, 0) X(T, 2, 2, 1, 1) X(T, 2, 2, 2, 0) X(T, 2, 2, 2, 1) X(T, 2, 2, 2, 2)           \
    X(T, 3, 0, 0, 0) X(T, 3, 1, 0, 0) X(T, 3, 1, 1, 0) X(T, 3, 1, 1, 1) X(T, 3, 2, 0, 0)           \
    X(T, 3, 2, 1, 0) X(T, 3, 2, 1, 1) X(T, 3, 2, 2, 0) X(T, 3, 2, 2, 1) X(T, 3, 2, 2, 2)           \
    X(T, 3, 3, 0, 0) X(T, 3, 3, 1, 0) X(T, 3, 3, 1, 1) X(T, 3, 3, 2, 0) X(T, 3, 3, 2, 1)           \
    X(T, 3, 3, 2, 2) X(T, 3, 3, 3, 0) X(T, 3, 3, 3, 1) X(T, 3, 3, 3, 2) X(T, 3, 3, 3, 3)
#define PATTERN_CODE(p0, p1, p2, p3) ((p0) * 64 + (p1) * 16 + (p2) * 4 + (p3))
#define PATTERN_CASE(T, p0, p1, p2, p3)                                                            \
    case PATTERN_CODE(p0, p1, p2, p3): {                                                           \
        static const int P[4] = {p0, p1, p2, p3};                                                  \
        if (lanes == 8)                                                                            \
            powers_##T(x, rows, n, mean, Bt, n8, col0, P, i0, i1, a);                              \
        else                                                                                       \
            powers4_##T(x, rows, n, mean, Bt, n8, col0, P, i0, i1, a);                             \
        break;                                                                                     \
    }

/* Per variant: pass one (calls, summed dosage, mean); then pass two, four columns at a time, with
 * the powers[k] (1 to 3) asked of column k (S[j, m - 1, k] for m > powers[k] is left zero).
 * Skipping the three sums that powers (3, 2, 1) do not ask for: 0.127 against 0.144 ms per variant
 * on one thread, 0.082 against 0.095 on two (41 variants of dos.pgen at a time, n = 100,000).
 *
 * Up to four columns (one phenotype), one variant at a time over all rows: taking 8 variants over
 * chunks of 1,024 individuals, so that a chunk of the columns is read once for 8 variants (three
 * columns are 2.4 MB here, more than a core's L2 cache), measured slower on six parts of 41
 * variants in turn (0.168 and 0.090 ms per variant: the 8 variants' dosages fall out of cache
 * instead), and no faster in whole scans (0.153 against 0.145 ms per variant, medians of 4 A/B
 * pairs). With more columns (10 phenotypes: 21 columns, 16.8 MB, read once per variant), PGROUP
 * variants over chunks of PCHUNK individuals, every chunk of four columns within each: the power
 * sums of 10 traits took 0.26-0.29 against 0.36 ms per variant on two threads (2,000 variants of
 * dos.pgen, whole scans in one process; chunks of 256 and 4,096 rows the same within noise). The
 * sums are added in the same order either way, and are the same to the last bit. The pattern's
 * loops make this library about 3 MB (0.4 MB before them). */
#define PGROUP 8
#define PCHUNK 1024
#define POWER_SUMS(T)                                                                              \
    POWERS(T)                                                                                      \
    POWERS4(T)                                                                                     \
    CLONES                                                                                         \
    int hlmm_power_sums_##T(const T *dosages, int64_t N, const int64_t *rows, int64_t n,           \
                             const double *Bt, int64_t r, int64_t n8, int64_t r_out,               \
                             const int64_t *powers, int64_t *n_called, double *a1, double *S,      \
                             int64_t lanes, int64_t j0, int64_t j1)                                \
    {                                                                                              \
        double means[PGROUP];                                                                      \
        /* one variant at a time over all rows for four columns or fewer, else PGROUP variants */  \
        int64_t group = r > 4 ? PGROUP : 1, chunk = r > 4 ? PCHUNK : n8, nc = (r + 3) / 4;         \
        v8d(*acc)[3][4] = aligned_alloc(64, (size_t)(PGROUP * nc) * sizeof(*acc));             \
        int *code = malloc((size_t)nc * sizeof(int));                                              \
        if (!acc || !code) {                                                                       \
            free(acc);                                                                             \
            free(code);                                                                            \
            return -1;                                                                             \
        }                                                                                          \
        /* each chunk of four columns runs the loop of its pattern of powers: its own if they do   \
         * not increase, else its highest power for every column (the extra sums are not written) */ \
        for (int64_t cc = 0; cc < nc; cc++) {                                                      \
            int64_t col0 = 4 * cc, w = r - col0 < 4 ? r - col0 : 4;                                \
            int p[4] = {0, 0, 0, 0}, top = 0, sorted = 1;                                          \
            for (int64_t k = 0; k < w; k++) {                                                      \
                p[k] = (int)powers[col0 + k];                                                      \
                top = p[k] > top ? p[k] : top;                                                     \
                sorted &= k == 0 || p[k] <= p[k - 1];                                              \
            }                                                                                      \
            for (int64_t k = 0; k < w; k++)                                                        \
                p[k] = sorted ? p[k] : top;                                                        \
            code[cc] = PATTERN_CODE(p[0], p[1], p[2], p[3]);                                       \
        }                                                                                          \
        for (int64_t g0 = j0; g0 < j1; g0 += group) {                                              \
            int64_t g1 = g0 + group < j1 ? g0 + group : j1;                                        \
            for (int64_t j = g0; j < g1; j++) {                                                    \
                const T *x = dosages + j * N;                                                      \
                v8d s = {0, 0, 0, 0, 0, 0, 0, 0};                                                  \
                v8l c = {0, 0, 0, 0, 0, 0, 0, 0};                                                  \
                if (lanes == 8) {                                                                  \
                    for (int64_t i = 0; i < n8; i += 8) {                                          \
                        v8d d;                                                                     \
                        load8_##T(x, rows, i, n, &d);                                              \
                        v8l ok = d >= 0.0;                                                         \
                        s += (v8d)((v8l)d & ok);                                                   \
                        c -= ok;                                                                   \
                    }                                                                              \
                } else { /* the same lanes in two halves: the 8-wide comparison and counts were \
                            * scalar code on AVX2 (with powers4 too, 3 columns took 0.34-0.45 ms   \
                            * of CPU per variant of dos.pgen with them, 0.18-0.23 without) */      \
                    v4d sh[2] = {{0, 0, 0, 0}, {0, 0, 0, 0}};                                      \
                    v4l ch[2] = {{0, 0, 0, 0}, {0, 0, 0, 0}};                                      \
                    for (int64_t i = 0; i < n8; i += 8)                                            \
                        for (int h = 0; h < 2; h++) {                                              \
                            v4d d;                                                                 \
                            load4_##T(x, rows, i + 4 * h, n, &d);                                  \
                            v4l ok = d >= 0.0;                                                     \
                            sh[h] += (v4d)((v4l)d & ok);                                           \
                            ch[h] -= ok;                                                           \
                        }                                                                          \
                    memcpy(&s, sh, sizeof(s));                                                     \
                    memcpy(&c, ch, sizeof(c));                                                     \
                }                                                                                  \
                int64_t calls = c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7];             \
                double sum = combine8(s);                                                          \
                n_called[j] = calls;                                                               \
                a1[j] = sum;                                                                       \
                means[j - g0] = calls ? sum / (double)calls : 0.0;                                 \
            }                                                                                      \
            memset(acc, 0, group * nc * sizeof(*acc));                                             \
            for (int64_t i0 = 0; i0 < n8; i0 += chunk) {                                           \
                int64_t i1 = i0 + chunk < n8 ? i0 + chunk : n8;                                    \
                for (int64_t j = g0; j < g1; j++) {                                                \
                    if (!n_called[j])                                                              \
                        continue;                                                                  \
                    const T *x = dosages + j * N;                                                  \
                    double mean = means[j - g0];                                                   \
                    for (int64_t cc = 0; cc < nc; cc++) {                                          \
                        int64_t col0 = 4 * cc;                                                     \
                        v8d(*a)[4] = acc[(j - g0) * nc + cc];                                      \
                        switch (code[cc]) {                                                        \
                            PATTERNS(PATTERN_CASE, T)                                              \
                        default:                                                                   \
                            break; /* (powers outside 1 .. 3: refused by the caller) */            \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            for (int64_t j = g0; j < g1; j++) {                                                    \
                if (!n_called[j])                                                                  \
                    continue;                                                                      \
                double *out = S + j * 3 * r_out;                                                   \
                for (int64_t c = 0; c < r; c++)                                                    \
                    for (int m = 0; m < powers[c]; m++)                                            \
                        out[m * r_out + c] = combine8(acc[(j - g0) * nc + c / 4][m][c % 4]);       \
            }                                                                                      \
        }                                                                                          \
        free(acc);                                                                                 \
        free(code);                                                                                \
        return 0;                                                                                  \
    }

POWER_SUMS(float)
POWER_SUMS(double)

/* -------------------------------------------------------------------------------------------
 * Dosage class sums (see _kernels_classes.dosage_classes): per variant whose called dosages all
 * lie on the grid k / den, the column sums of Yc (n, q) over the individuals of each distinct
 * dosage, and over those without a call. numba's _kernels_classes._fill_classes gives the same
 * classes and sums; it handles the variants off the grid, and everything without this library.
 *
 * Summation order, which fixes every bit of the sums: each class's rows are added in increasing
 * individual, one running sum per class and column, starting from +0.0, as numba's kernel adds
 * them.
 *
 * Two phases, so that the sums go straight to their places. hlmm_dosage_keys_* reads each
 * variant's dosages once: each individual's class index and the grid values present go to the
 * range's work area, and the number of classes to the caller, which then knows where every
 * variant's results go. hlmm_dosage_sums adds the sums by the class indices. A pass over Yc adds it for up
 * to DOSAGE_GROUP variants at once, as many as have their class sums within DOSAGE_CACHE bytes,
 * so that Yc (2.4 MB for three columns at n = 100,000, more than a core's L2 cache) is read once
 * for them; a running sum in memory that the next individual adds to again waits for the last
 * addition, and the variants' sums interleaved wait less. Until 2026-12 the two were one pass that
 * wrote each range's results to a buffer of its own, which the caller then copied to their places
 * on one thread: for 10 phenotypes (21 columns) on the 1/16384 grid that copy took as long as the
 * sums (1.20 and 1.17 ms per variant of dos.pgen in the pipeline).
 *
 * DOSAGE_CACHE was 768 KB; with four variants' keys, slots and sums in registers (scatter_group4)
 * 1.5 MB measured faster on the 1/16384 grid, where four variants' sums of 4 columns (about 9,200
 * classes each) then fit: class sums 0.25-0.28 against 0.33-0.34 ms per variant of dos.pgen, in
 * the pipeline, two threads, alternate builds.
 * ------------------------------------------------------------------------------------------- */
#include <math.h>

#define DOSAGE_GROUP 4
#define DOSAGE_CACHE 1572864
/* The bytes of class sums a group of variants is sized for (for the caller, which makes the
 * chunks of wide designs only where a group of four variants' sums would not fit). */
int64_t hlmm_dosage_cache(void)
{
    return DOSAGE_CACHE;
}

/* Columns of Yc in each chunk of a wide design on a fine grid (the caller's Yt). */
#define DOSAGE_CHUNK 8
int64_t hlmm_dosage_chunk(void)
{
    return DOSAGE_CHUNK;
}

/* Columns of a part that hlmm_dosage_sums writes at a time. */
#define DOSAGE_PART 64

/* How far ahead (in individuals) scatter_group4 asks for the running sums it will add to: on fine
 * grids they are spread over more classes than a core's L2 cache holds, and each addition waited
 * on its load. The same additions in the same order. On an AMD EPYC (Zen 3, 512 KB of L2 per
 * core, two threads), the class keys and sums of 256 variants of dos.pgen (process CPU time,
 * medians of 21, three alternate runs): 21 columns 2.34-2.54 against 3.19-3.58 ms per variant
 * without, 3 columns 0.90-1.02 against 1.07-1.27. */
#define SUM_PREFETCH 16

/* How far ahead (in dosages) the key passes ask for their input: the hardware prefetcher alone
 * left them waiting on memory (0.27 ms per variant of 100,000 float32 dosages read from memory,
 * against 0.10 with this in double precision, one thread, the x86-64-v4 clone, a C harness; in
 * the pipeline, where the decoder has just left the dosages in cache, it is worth much less). */
#define KEY_PREFETCH 1024

/* The keys of the dosages x[0 .. m - 1] (m a multiple of 4): k of k / den, or width = 2 den + 1
 * for no call (d >= 0 false, NaN included). Returns nonzero if a called dosage is off the grid
 * (further than 1e-6 of a grid unit from k / den, or k >= width), as numba's kernel decides it.
 * In vectors, without branches, in double precision. */
#define GRID_KEYS(T, VT)                                                                           \
    static inline __attribute__((always_inline)) int64_t grid_keys_##T(const T *x, int64_t m,     \
                                                                       int64_t den, uint16_t *keys) \
    {                                                                                              \
        const double w = (double)(2 * den + 1);                                                    \
        const v4d W = {w, w, w, w}, D = {(double)den, (double)den, (double)den, (double)den};      \
        const v4d HALF = {0.5, 0.5, 0.5, 0.5}, TOL = {1e-6, 1e-6, 1e-6, 1e-6};                     \
        const v4l ABS = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};                              \
        const v4l WL = {2 * den + 1, 2 * den + 1, 2 * den + 1, 2 * den + 1};                       \
        v4l b = {0, 0, 0, 0};                                                                      \
        for (int64_t t = 0; t < m; t += 4) {                                                       \
            if (!(t & 15) && t + KEY_PREFETCH < m)                                                \
                __builtin_prefetch(x + t + KEY_PREFETCH);                                          \
            VT a;                                                                                  \
            memcpy(&a, x + t, sizeof(a));                                                          \
            v4d d = __builtin_convertvector(a, v4d);                                               \
            v4l called = d >= 0.0;                                                                 \
            v4d v = (v4d)((v4l)(d * D) & called);                                                 \
            v4l below = v < W;                                                                     \
            v4d vc = (v4d)(((v4l)v & below) | ((v4l)W & ~below));                                  \
            v4l k = __builtin_convertvector(vc + HALF, v4l);                                       \
            v4d diff = (v4d)((v4l)(vc - __builtin_convertvector(k, v4d)) & ABS);                   \
            b |= (~below | (diff > TOL) | (k >= WL)) & called;                                     \
            v4l key = (k & called) | (WL & ~called);                                               \
            for (int l = 0; l < 4; l++)                                                            \
                keys[t + l] = (uint16_t)key[l];                                                    \
        }                                                                                          \
        return b[0] | b[1] | b[2] | b[3];                                                          \
    }
GRID_KEYS(float, v4f)
GRID_KEYS(double, v4d)

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint16_t v8s __attribute__((vector_size(16)));

/* grid_keys_float's keys and verdict for den a power of two (.pgen's 16384), m a multiple of 8,
 * in single precision, eight at a time: 0.05 against 0.10 ms per variant for the double-precision
 * pass with the same prefetch (1 thread, 100,000 dosages, the same harness). The same to the last
 * bit:
 * - d den is exact in float (a power-of-two scale) as in double, so v and vc are the same;
 * - |vc - k| is exact in both (Sterbenz: k is the integer nearest vc, or vc < 1/2 with k = 0);
 * - for a float y, y > 1e-6 if and only if y > TOL32, the largest float below 1e-6;
 * - vc + 1/2 may round in float, but only where vc is within an ulp of a half-integer, which is
 *   off the grid in both (|vc - k| near 1/2), so k differs only in keys never used. */
static inline __attribute__((always_inline)) int64_t grid_keys_pow2(const float *x, int64_t m, int64_t den,
                                                                    uint16_t *keys)
{
    const float w = (float)(2 * den + 1), fd = (float)den, TOL32 = 0x1.0c6f7ap-20f;
    const v8f W = {w, w, w, w, w, w, w, w}, D = {fd, fd, fd, fd, fd, fd, fd, fd};
    const v8f HALF = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    const v8f TOL = {TOL32, TOL32, TOL32, TOL32, TOL32, TOL32, TOL32, TOL32};
    const int32_t wi = (int32_t)(2 * den + 1);
    const v8i ABS = {INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX};
    const v8i WL = {wi, wi, wi, wi, wi, wi, wi, wi};
    v8i b = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t t = 0; t < m; t += 8) {
        if (!(t & 15) && t + KEY_PREFETCH < m)
            __builtin_prefetch(x + t + KEY_PREFETCH);
        v8f d;
        memcpy(&d, x + t, sizeof(d));
        v8i called = d >= 0.0f;
        v8f v = (v8f)((v8i)(d * D) & called);
        v8i below = v < W;
        v8f vc = (v8f)(((v8i)v & below) | ((v8i)W & ~below));
        v8i k = __builtin_convertvector(vc + HALF, v8i);
        v8f diff = (v8f)((v8i)(vc - __builtin_convertvector(k, v8f)) & ABS);
        b |= (~below | (diff > TOL) | (k >= WL)) & called;
        v8s key = __builtin_convertvector((k & called) | (WL & ~called), v8s);
        memcpy(keys + t, &key, sizeof(key));
    }
    int32_t r = 0;
    for (int l = 0; l < 8; l++)
        r |= b[l];
    return r;
}

/* All n keys of a variant's dosages x (keys has room for n rounded up to 8); nonzero if off the
 * grid. The last n % 8 go through a copy padded with no calls. */
#define VARIANT_KEYS(T)                                                                            \
    static inline __attribute__((always_inline)) int64_t variant_keys_##T(const T *x, int64_t n,  \
                                                                          int64_t den, int pow2,   \
                                                                          uint16_t *keys)          \
    {                                                                                              \
        int64_t L = pow2 ? 8 : 4, whole = n / L * L, bad;                                         \
        T last[8];                                                                                 \
        for (int64_t t = 0; t < L; t++)                                                            \
            last[t] = whole + t < n ? x[whole + t] : (T)__builtin_nan("");                         \
        if (pow2) {                                                                                \
            bad = grid_keys_pow2((const float *)x, whole, den, keys);                              \
            bad |= grid_keys_pow2((const float *)last, L, den, keys + whole);                      \
        } else {                                                                                   \
            bad = grid_keys_##T(x, whole, den, keys);                                              \
            bad |= grid_keys_##T(last, L, den, keys + whole);                                      \
        }                                                                                          \
        return bad;                                                                                \
    }
VARIANT_KEYS(float)
VARIANT_KEYS(double)

/* The class sums of G variants in one pass over the individuals: classes[g stride + i] is
 * individual i's class of variant g, whose running sums (q of them, from acc + base[g]) get the q
 * values of Yc's row i (ystride apart); each class's rows in increasing individual. */
static inline __attribute__((always_inline)) void scatter(const uint16_t *classes, int64_t kstride, double *acc,
                                                          const int64_t *base, int64_t G, const double *Yc,
                                                          int64_t ystride, int64_t q, int64_t n)
{
    int64_t q4 = q / 4;
    for (int64_t i = 0; i < n; i++) {
        const double *yi = Yc + i * ystride;
        for (int64_t g = 0; g < G; g++) {
            double *row = acc + base[g] + q * (int64_t)classes[g * kstride + i];
            for (int64_t c = 0; c < q4; c++) {
                v4d y, t;
                memcpy(&y, yi + 4 * c, 32);
                memcpy(&t, row + 4 * c, 32);
                t += y;
                memcpy(row + 4 * c, &t, 32);
            }
            for (int64_t c = 4 * q4; c < q; c++)
                row[c] += yi[c];
        }
    }
}

/* scatter for G (at most DOSAGE_GROUP) consecutive variants, the same additions in the same order,
 * with each variant's classes and sums held in registers: for four variants 0.13-0.14 against
 * 0.17-0.22 ms per variant of scatter on one thread (64 variants of dos8.pgen, 4 columns, a C
 * harness). Called with G and q constant, which the compiler then unrolls: G = 4 variants of
 * q = 4 columns (one phenotype), or G = 2 (or 1) of a chunk of DOSAGE_CHUNK = 8 columns (wide
 * designs on fine grids), whose rows it adds as 512-bit vectors. */
static inline __attribute__((always_inline)) void scatter_group(const uint16_t *classes, int64_t kstride,
                                                                 double *acc, const int64_t *base, const double *Yc,
                                                                 int64_t ystride, int G, int64_t q, int64_t n)
{
    const uint16_t *k[DOSAGE_GROUP];
    double *a[DOSAGE_GROUP];
    for (int g = 0; g < G; g++) {
        k[g] = classes + g * kstride;
        a[g] = acc + base[g];
    }
    int64_t q8 = q % 8 ? 0 : q / 8, q4 = q8 ? 0 : q / 4;
    for (int64_t i = 0; i < n; i++) {
        const double *yi = Yc + ystride * i;
        if (i + SUM_PREFETCH < n) {
            int64_t f = i + SUM_PREFETCH;
            for (int g = 0; g < G; g++)
                __builtin_prefetch(a[g] + q * (int64_t)k[g][f], 1);
        }
        double *r[DOSAGE_GROUP];
        for (int g = 0; g < G; g++)
            r[g] = a[g] + q * (int64_t)k[g][i];
/* row yi added to each r[g], `count` vectors of type VT (W doubles) */
#define ADD_ROWS(VT, W, count)                                                                     \
    for (int64_t c = 0; c < (count); c++) {                                                        \
        VT y, t;                                                                                   \
        memcpy(&y, yi + W * c, sizeof(VT));                                                        \
        for (int g = 0; g < G; g++) {                                                              \
            memcpy(&t, r[g] + W * c, sizeof(VT));                                                  \
            t += y;                                                                                \
            memcpy(r[g] + W * c, &t, sizeof(VT));                                                  \
        }                                                                                          \
    }
        ADD_ROWS(v8d, 8, q8)
        ADD_ROWS(v4d, 4, q4)
#undef ADD_ROWS
        for (int64_t c = 8 * q8 + 4 * q4; c < q; c++)
            for (int g = 0; g < G; g++)
                r[g][c] += yi[c];
    }
}

/* scatter_group for chunks of DOSAGE_CHUNK = 8 columns whose last four are the squares of the
 * first four (Y's rows are the first four, ystride 4; the caller has checked that each square
 * column is y y of its column to the last bit, as numpy's y ** 2 makes it), the squares made here:
 * the same additions in the same order, with half the bytes of Y read. 10 phenotypes' columns
 * 1, y and y^2 so (three chunks of the ones and the ten y): the class keys and sums of 21 columns
 * 2.37-2.51 against 2.92-3.02 ms of CPU per variant with the chunks of Yc's columns (256 variants
 * of dos.pgen, two threads, an AMD EPYC of Zen 1, alternate runs; docs/performance.rst). */
_Static_assert(DOSAGE_CHUNK == 8, "a chunk of squares is four columns and their squares");
static inline __attribute__((always_inline)) void scatter_squares(const uint16_t *classes, int64_t kstride,
                                                                   double *acc, const int64_t *base, const double *Y,
                                                                   int G, int64_t n)
{
    const uint16_t *k[DOSAGE_GROUP];
    double *a[DOSAGE_GROUP];
    for (int g = 0; g < G; g++) {
        k[g] = classes + g * kstride;
        a[g] = acc + base[g];
    }
    for (int64_t i = 0; i < n; i++) {
        if (i + SUM_PREFETCH < n) {
            int64_t f = i + SUM_PREFETCH;
            for (int g = 0; g < G; g++)
                __builtin_prefetch(a[g] + 8 * (int64_t)k[g][f], 1);
        }
        v4d y, y2, t;
        memcpy(&y, Y + 4 * i, sizeof(y));
        y2 = y * y;
        for (int g = 0; g < G; g++) {
            double *r = a[g] + 8 * (int64_t)k[g][i];
            memcpy(&t, r, sizeof(t));
            t += y;
            memcpy(r, &t, sizeof(t));
            memcpy(&t, r + 4, sizeof(t));
            t += y2;
            memcpy(r + 4, &t, sizeof(t));
        }
    }
}

/* The parts' sums written past the caches (non-temporal stores; the same values). Those of a block
 * of dos.pgen's variants are large (41 variants of about 9,000 classes: 8.9 MB a trait), read
 * again only by the fits after the whole block's sums, from memory either way: plain stores first
 * read each line they write. With these (and table_products), the scan of 10 traits took 0.94
 * times the wall, and of 8-bit dosages (330 classes, 3.2 MB a block for 10 traits) the same CPU
 * (docs/performance.rst). */
#if defined(__x86_64__)
#include <emmintrin.h>
static inline __attribute__((always_inline)) void stream_double(double *p, double x)
{
    long long bits;
    memcpy(&bits, &x, sizeof(bits));
    _mm_stream_si64((long long *)p, bits);
}
/* (non-temporal stores are weakly ordered: fenced before the sums are returned) */
static inline __attribute__((always_inline)) void stream_fence(void)
{
    _mm_sfence();
}
#else
static inline __attribute__((always_inline)) void stream_double(double *p, double x)
{
    *p = x;
}
static inline __attribute__((always_inline)) void stream_fence(void)
{
}
#endif

/* At *state (address) of state[1] bytes, a kept work area of at least `bytes` bytes (contents not
 * kept): the same, or a new one in its place. NULL if out of memory. */
static void *kept(int64_t *state, int64_t bytes)
{
    if (state[1] < bytes) {
        free((void *)(intptr_t)state[0]);
        state[0] = (int64_t)(intptr_t)malloc((size_t)bytes);
        state[1] = state[0] ? bytes : 0;
    }
    return (void *)(intptr_t)state[0];
}

/* A range's kept work areas (see kept): state[0 .. 1] its variants' class indices and grid
 * values present (from hlmm_dosage_keys_*, for hlmm_dosage_sums), state[2 .. 3] one variant's
 * grid values present (bytes) and slots, state[4 .. 5] a group's running sums. Kept by the caller for its next blocks and freed with
 * hlmm_free: allocated and freed by each call, they moved the top of the heap up and down (sbrk)
 * once the compiled Newton fits kept their scratch space, and the .pgen decoding, whose blocks then
 * got fresh pages, slowed (docs/performance.rst). */
static inline int64_t keys_stride(int64_t n)
{
    return (n + 8 + 31) / 32 * 32; /* (uint16 keys, then class indices: 64-byte rows) */
}

static inline int64_t values_stride(int64_t den)
{
    return (2 * den + 1 + 31) / 32 * 32; /* (uint16 grid values present: 64-byte rows) */
}

/* Phase 1 of the class sums of variants j0 .. j1 - 1 (rows of dosages, N apart; n individuals; den
 * at most 32767): on_grid[j], and for those on the grid counts[j] (K, distinct called dosages), and
 * in the range's kept area state[0 .. 1], variant j's class of each individual (K for no call) and
 * its grid values present, increasing (k of k / den). The caller then knows every
 * variant's place in the results, which hlmm_dosage_sums writes to directly. Returns 0, or -1 if
 * out of memory. */
#define DOSAGE_KEYS(T)                                                                             \
    CLONES                                                                                         \
    int hlmm_dosage_keys_##T(const T *dosages, int64_t N, int64_t n, int64_t den, uint8_t *on_grid, \
                             int64_t *counts, int64_t *state, int64_t j0, int64_t j1)              \
    {                                                                                              \
        int64_t width = 2 * den + 1, ks = keys_stride(n), vs = values_stride(den);                \
        int pow2 = sizeof(T) == 4 && (den & (den - 1)) == 0;                                       \
        int64_t keys_bytes = (j1 - j0) * ks * 2, present_bytes = (width + 1 + 63) / 64 * 64;       \
        uint16_t *area = kept(state, keys_bytes + (j1 - j0) * vs * 2);                             \
        uint8_t *present = kept(state + 2, present_bytes + (width + 1) * 4);                       \
        if (!area || !present)                                                                     \
            return -1;                                                                             \
        int32_t *sl = (int32_t *)(present + present_bytes);                                        \
        for (int64_t j = j0; j < j1; j++) {                                                        \
            uint16_t *kg = area + (j - j0) * ks;                                                   \
            uint16_t *vg = area + (j1 - j0) * ks + (j - j0) * vs;                                  \
            on_grid[j] = !variant_keys_##T(dosages + j * N, n, den, pow2, kg);                     \
            if (!on_grid[j])                                                                       \
                continue;                                                                          \
            memset(present, 0, width + 1);                                                         \
            for (int64_t i = 0; i < n; i++)                                                        \
                present[kg[i]] = 1;                                                                \
            /* the grid values present (increasing) and their classes (slots), without branches \
             * on the bytes (their pattern is a coin toss on fine grids): a value's slot and entry \
             * are written whether or not it is present, and only those present kept; eight bytes \
             * of 0 or 1 at a time, those all 0 skipped (a few hundred of the 32,769 on .pgen's    \
             * grid are present for 8-bit dosages) */                                              \
            int64_t k = 0;                                                                         \
            for (int64_t v = 0; v < width; v += 8) {                                               \
                int64_t e = v + 8 <= width ? v + 8 : width;                                        \
                if (e == v + 8) {                                                                  \
                    uint64_t word;                                                                 \
                    memcpy(&word, present + v, 8);                                                 \
                    if (!word)                                                                     \
                        continue;                                                                  \
                }                                                                                  \
                for (int64_t u = v; u < e; u++) {                                                  \
                    sl[u] = (int32_t)k;                                                            \
                    vg[k] = (uint16_t)u; /* (k < width <= vs: the one after the last is spare) */  \
                    k += present[u];                                                               \
                }                                                                                  \
            }                                                                                      \
            sl[width] = (int32_t)k; /* no call */                                                  \
            counts[j] = k;                                                                         \
            /* each individual's class in place of its key (at most 2 den + 1 < 65536 of them): a \
             * load fewer per individual for each pass of hlmm_dosage_sums */                      \
            for (int64_t i = 0; i < n; i++)                                                        \
                kg[i] = (uint16_t)sl[kg[i]];                                                       \
        }                                                                                          \
        return 0;                                                                                  \
    }
DOSAGE_KEYS(float)
DOSAGE_KEYS(double)

/* Phase 2, for the same range after hlmm_dosage_keys_* (its class indices and grid values present
 * in state[0 .. 1]): for
 * each variant j on the grid, its values (the grid values present, increasing) from
 * values[offsets[j]], and for each part p (columns cols[starts[p] .. starts[p + 1] - 1] of Yc, r_p
 * of them) its class sums as rows offsets[j] .. of a C-contiguous (K, r_p) array from
 * sums[first[p]], and its sums over no call at missing[b starts[p] + j r_p]. Yc is C-contiguous
 * (n, q), any q. Variants are summed in groups of up to DOSAGE_GROUP, as many as have their sums
 * within DOSAGE_CACHE bytes (at least one). Yt: NULL, or yt_chunks chunks of Yc's columns (below);
 * with place (not NULL) chunks of squares (scatter_squares): (yt_chunks, n, 4) columns of Yc, and
 * column c of Yc at place[c] of the chunks' rows of 8 (chunk place[c] / 8; the squares of a chunk's
 * four columns at 4 to 7). Returns 0, or -1 if out of memory. */
CLONES
int hlmm_dosage_sums(int64_t n, int64_t den, const double *Yc, int64_t q, const double *Yt, const int64_t *place,
                     int64_t yt_chunks, const uint8_t *on_grid,
                     const int64_t *offsets, const int64_t *cols, const int64_t *starts, int64_t P,
                     const int64_t *first, int64_t b, double *values, double *sums, double *missing,
                     int64_t *state, int64_t j0, int64_t j1)
{
    int64_t ks = keys_stride(n), vs = values_stride(den);
    const uint16_t *keys = (const uint16_t *)(intptr_t)state[0];
    const uint16_t *grid_values = keys + (j1 - j0) * ks;
    /* with Yt (NULL, or Yc's columns DOSAGE_CHUNK at a time: (q + 7) / 8, n, 8, zeros past the
     * last; the caller makes it for wide designs on fine grids), a group whose sums of all the
     * columns do not fit is summed DOSAGE_CHUNK columns at a time: a variant's sums of 21 columns on
     * the 1/16384 grid (1.6 MB) left no room for Yc's rows in a core's L2 cache. Chunks of 8
     * columns (three passes for 10 phenotypes, groups of two variants there) against chunks of 4
     * (six passes, groups of four): 0.59-0.62 against 0.68-0.71 ms of wall per variant for the
     * class keys and sums of 10 phenotypes (256 variants of dos.pgen, two threads, an AMD EPYC
     * Zen 5 with AVX-512; the same bits); groups of four of 8 columns (a 2.5 MB cache) 0.63-0.66 */
    int64_t j = j0;
    while (j < j1) {
        int64_t js[DOSAGE_GROUP], rows[DOSAGE_GROUP], base[DOSAGE_GROUP + 1], G = 0, all = 0;
        int64_t wc = q, start = j;
        for (int attempt = 0; attempt < 2; attempt++) {
            int full = 0;
            for (j = start, G = 0, all = 0; j < j1 && G < DOSAGE_GROUP; j++) {
                if (!on_grid[j])
                    continue;
                int64_t r = offsets[j + 1] - offsets[j] + 1;
                if (G > 0 && (all + r) * wc * (int64_t)sizeof(double) > DOSAGE_CACHE) {
                    full = 1;
                    break;
                }
                js[G] = j;
                rows[G] = r;
                all += r;
                G++;
            }
            /* all the columns at once, unless with Yt fewer than DOSAGE_GROUP variants' sums fit
             * (fine grids): then DOSAGE_CHUNK columns at a time. On 8-bit dosages (about 330 classes)
             * four variants of 21 columns fit, and the chunks' six passes over the
             * individuals measured slower than one */
            if (!(Yt && (full || (G == 1 && all * wc * (int64_t)sizeof(double) > DOSAGE_CACHE))) || wc == DOSAGE_CHUNK)
                break;
            wc = DOSAGE_CHUNK;
        }
        if (G == 0)
            continue;
        int squares = wc < q && place; /* (chunks of squares) */
        int64_t chunks = squares ? yt_chunks : (q + wc - 1) / wc, size = all * wc; /* (one chunk's sums) */
        double *acc = kept(state + 4, chunks * size * (int64_t)sizeof(double));
        if (!acc) {
            stream_fence();
            return -1;
        }
        memset(acc, 0, (size_t)(chunks * size) * sizeof(double));
        base[0] = 0;
        for (int64_t g = 0; g < G; g++)
            base[g + 1] = base[g] + rows[g] * wc;
        const uint16_t *kg = keys + (js[0] - j0) * ks;
        int consecutive = js[G - 1] - js[0] == G - 1;
        for (int64_t ch = 0; ch < chunks; ch++) {
            int64_t ystride = squares ? 4 : wc < q ? wc : q;
            const double *Y = wc < q ? Yt + ch * ystride * n : Yc;
            double *a = acc + ch * size;
            if (squares && !consecutive) {
                for (int64_t g = 0; g < G; g++)
                    scatter_squares(keys + (js[g] - j0) * ks, ks, a, base + g, Y, 1, n);
            } else if (squares && G == 2) {
                scatter_squares(kg, ks, a, base, Y, 2, n);
            } else if (squares && G == 1) {
                scatter_squares(kg, ks, a, base, Y, 1, n);
            } else if (squares) {
                scatter_squares(kg, ks, a, base, Y, (int)G, n);
            } else if (!consecutive) { /* a variant off the grid between them: one at a time */
                for (int64_t g = 0; g < G; g++)
                    scatter(keys + (js[g] - j0) * ks, ks, a, base + g, 1, Y, ystride, wc, n);
            } else if (G == DOSAGE_GROUP && wc == 4) {
                scatter_group(kg, ks, a, base, Y, ystride, DOSAGE_GROUP, 4, n);
            } else if (G == DOSAGE_GROUP) {
                scatter_group(kg, ks, a, base, Y, ystride, DOSAGE_GROUP, wc, n);
            } else if (G == 2 && wc == DOSAGE_CHUNK) {
                scatter_group(kg, ks, a, base, Y, ystride, 2, DOSAGE_CHUNK, n);
            } else if (G == 1 && wc == DOSAGE_CHUNK) {
                scatter_group(kg, ks, a, base, Y, ystride, 1, DOSAGE_CHUNK, n);
            } else {
                scatter(kg, ks, a, base, G, Y, ystride, wc, n);
            }
        }
        for (int64_t g = 0; g < G; g++) {
            int64_t jj = js[g], o = offsets[jj], k = rows[g] - 1;
            const uint16_t *vg = grid_values + (jj - j0) * vs;
            for (int64_t r = 0; r < k; r++)
                values[o + r] = (double)vg[r] / (double)den;
            /* each part's rows in order (up to DOSAGE_PART of its columns at a time), each column
             * from its chunk, wc apart: the rows written in order once, where a chunk's columns
             * written to every part in turn took a quarter of the time for 10 phenotypes */
            for (int64_t p = 0; p < P; p++) {
                int64_t r_p = starts[p + 1] - starts[p];
                double *out = sums + first[p] + o * r_p;
                for (int64_t c0 = 0; c0 < r_p; c0 += DOSAGE_PART) {
                    int64_t m = r_p - c0 < DOSAGE_PART ? r_p - c0 : DOSAGE_PART;
                    const double *src[DOSAGE_PART];
                    for (int64_t c = 0; c < m; c++) {
                        int64_t col = cols[starts[p] + c0 + c], at = squares ? place[col] : col;
                        src[c] = acc + (at / wc) * size + base[g] + at % wc;
                    }
                    for (int64_t r = 0; r < k; r++)
                        for (int64_t c = 0; c < m; c++)
                            stream_double(out + r * r_p + c0 + c, src[c][r * wc]);
                    for (int64_t c = 0; c < m; c++)
                        missing[b * starts[p] + jj * r_p + c0 + c] = src[c][k * wc];
                }
            }
        }
    }
    stream_fence();
    return 0;
}

/* Frees a kept work area of hlmm_dosage_keys_* and hlmm_dosage_sums (the caller's, when it no
 * longer keeps it). */
void hlmm_free(void *p)
{
    free(p);
}

/* -------------------------------------------------------------------------------------------
 * The HLM y ~ N(a0 + a1 g, exp(b0 + b1 g)) of each variant from its dosage classes: numba's
 * _kernels_hlm.fit_dosage_classes step by step (the same start, Newton steps, line search and
 * stopping rules), with each evaluation of the profile likelihood over eight classes at a time.
 * numba's took about 10 ns per class and evaluation on one thread, with a scalar exp per class;
 * here exp_8 (or exp_4 twice) gives eight exponentials at once.
 *
 * Not the same to the last bit as numba's: the class sums are added in eight lanes (class k to
 * lane k % 8, each lane in increasing k, combined as combine8 does), and exp_8 is within an ulp
 * of libm's exp. The same on every instruction set (generic vectors, no fused multiply-adds).
 * ------------------------------------------------------------------------------------------- */

/* The fits' vectors: eight lanes (class k in lane k % 8) as one 8-wide vector with AVX-512 (W = 8,
 * the x86-64-v4 clone), or as two 4-wide halves (W = 4) elsewhere, the same additions lane by lane
 * in the same order, so the two agree to the last bit (tests/test_engines.py). One 8-wide vector
 * lowered by GCC on AVX2 (16 registers of 256 bits) spilled its halves to the stack: the fits of
 * 256 variants of dos.pgen took 0.61-0.78 against 0.44-0.46 ms of CPU per variant with the halves
 * (AMD EPYC, Zen 3, two threads; docs/performance.rst). hlmm_lanes() says which this machine
 * takes, for the fits and the power sums (powers4); they and hlmm_exp take either, for the tests. */
typedef uint64_t v4u __attribute__((vector_size(32)));
typedef uint64_t v8u __attribute__((vector_size(64)));

/* Classes of a variant's scratch rows: padded with zero classes to a multiple of FIT_PAD, for
 * either width (whose evaluations take 8 FIT_UNROLL_W classes a step). */
#define FIT_PAD 32

/* The tables of table_weights_S: e^(s j), j = 0 .. 127, then e^(128 s i), i = 0 .. 256, padded to a
 * multiple of 8. */
#define TABLE_DOUBLES 392

int hlmm_lanes(void)
{
#if HAVE_CLONES
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
               ? 8
               : 4;
#elif defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
    return 8;
#else
    return 4;
#endif
}

/* The first pass's additions of one vector of classes (weights w, centred dosages G, counts C,
 * sums of y Y1) to the running sums of lanes' half h (profile_S's m00 .. r1). */
#define PASS1_ADD(h, w, G, C, Y1)                                                                  \
    do {                                                                                           \
        __typeof__(w) wc_ = (w) * (C);                                                             \
        m00[h] += wc_;                                                                             \
        m01[h] += wc_ * (G);                                                                       \
        m11[h] += (wc_ * (G)) * (G);                                                               \
        r0[h] += (w) * (Y1);                                                                       \
        r1[h] += ((w) * (Y1)) * (G);                                                               \
    } while (0)

/* The key of a class without individuals (mask 0, and the padding): table_weights_S sets
 * tab[128 + 257], past the 257 powers, to 0.0, so that its weight is (ea 0.0) e^0 = +0.0, as the
 * mask gave it; one load and branch a class fewer. */
#define KEY_NONE (257 << 7)

/* wk[k] = (ea e^(128 s (m >> 7))) e^(s (m & 127)) for m = key[k] (table_weights_S). A function of
 * its own, not inlined: inlined into the fits, its loop reloaded its pointers and bound from the
 * stack, and took 15% of the fits' time; as it is, with KEY_NONE, the fits of 10 phenotypes of
 * dos.pgen took 0.94 of the time (docs/performance.rst). */
static __attribute__((noinline)) void table_products(double ea, const double *tab, const int32_t *key, double *wk,
                                                     int64_t Kp)
{
    const double *hi = tab + 128;
    for (int64_t k = 0; k < Kp; k++) {
        int32_t m = key[k];
        wk[k] = (ea * hi[m >> 7]) * tab[m & 127];
    }
}

/* The fits over dosage classes for lanes W vectors of type VT (integers IT, unsigned UT), with
 * UNROLL steps of eight classes per step of the likelihood's first pass: exp_S, profile_S and
 * fit_S. */
#define FIT_KERNELS(S, VT, IT, UT, W, UNROLL)                                                      \
    enum { H_##S = 8 / W };                                                                        \
    _Static_assert(FIT_PAD % (8 * UNROLL) == 0, "a step of the likelihood divides the padding");  \
                                                                                                   \
    static inline __attribute__((always_inline)) VT splat_##S(double x)                           \
    {                                                                                              \
        VT v;                                                                                      \
        for (int l = 0; l < W; l++)                                                                \
            v[l] = x;                                                                              \
        return v;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* The sum of the eight lanes of v[0 .. H - 1], as combine8 adds them. */                      \
    static inline __attribute__((always_inline)) double combine_##S(const VT v[H_##S])            \
    {                                                                                              \
        double a[8];                                                                               \
        for (int l = 0; l < 8; l++)                                                                \
            a[l] = v[l / W][l % W];                                                                \
        return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));                  \
    }                                                                                              \
                                                                                                   \
    /* All-ones in the lanes of v whose sign bit is set (negative, or -0.0), else 0. */            \
    static inline __attribute__((always_inline)) IT sign_mask_##S(VT v)                           \
    {                                                                                              \
        UT zero = {0};                                                                             \
        return (IT)(zero - ((UT)v >> 63));                                                         \
    }                                                                                              \
                                                                                                   \
    /* max(z, 0) lane by lane, exactly: (z + |z|) / 2. */                                          \
    static inline __attribute__((always_inline)) VT relu_##S(VT z)                                \
    {                                                                                              \
        return (z + (VT)((IT)z & INT64_MAX)) * 0.5;                                                \
    }                                                                                              \
                                                                                                   \
    /* e^x lane by lane, for finite x: x = k ln 2 + r with |r| <= ln 2 / 2 (ln 2 in two parts, k r \
     * exact), e^r by its Taylor polynomial of degree 13 (remainder below 1e-17 relative), times  \
     * 2^k. +inf above 709.782712893384 and +0 below -745.1332191019412, as libm's exp. Within an  \
     * ulp of libm's exp (tests/test_engines.py). No comparisons: sign bits and (z + |z|) / 2      \
     * instead, as GCC's target clones made scalar code of some comparisons of these vectors (2.5  \
     * times the time). */                                                                        \
    static inline __attribute__((always_inline)) VT exp_##S(VT x)                                 \
    {                                                                                              \
        const VT SHIFT = splat_##S(0x1.8p52), LOG2E = splat_##S(0x1.71547652b82fep0);              \
        const VT LN2_HI = splat_##S(0x1.62e42fee00000p-1), LN2_LO = splat_##S(0x1.a39ef35793c76p-33); \
        VT xc = (x - relu_##S(x - 710.0)) + relu_##S(-746.0 - x); /* x within [-746, 710] */       \
        VT t = xc * LOG2E + SHIFT;                                                                 \
        VT k = t - SHIFT;                                                                          \
        IT ki = (IT)t - (IT)SHIFT;                                                                 \
        VT r = (xc - k * LN2_HI) - k * LN2_LO;                                                     \
        VT p = splat_##S(1.0 / 6227020800.0);                                                      \
        p = p * r + 1.0 / 479001600.0;                                                             \
        p = p * r + 1.0 / 39916800.0;                                                              \
        p = p * r + 1.0 / 3628800.0;                                                               \
        p = p * r + 1.0 / 362880.0;                                                                \
        p = p * r + 1.0 / 40320.0;                                                                 \
        p = p * r + 1.0 / 5040.0;                                                                  \
        p = p * r + 1.0 / 720.0;                                                                   \
        p = p * r + 1.0 / 120.0;                                                                   \
        p = p * r + 1.0 / 24.0;                                                                    \
        p = p * r + 1.0 / 6.0;                                                                     \
        p = p * r + 0.5;                                                                           \
        p = p * r + 1.0;                                                                           \
        p = p * r + 1.0;                                                                           \
        /* 2^k in two factors, each exact: 2^(k + 64) 2^-64 below 0 (a subnormal e^x rounds once, \
         * in the second product), 2^(k - 1) 2 above (2^1024 is not a double) */                  \
        IT neg = sign_mask_##S(xc);                                                                \
        IT kk = ki + ((neg & 64) | (~neg & -1));                                                   \
        VT y = (p * (VT)((kk + 1023) << 52)) *                                                     \
               (VT)(((IT)splat_##S(0x1p-64) & neg) | ((IT)splat_##S(2.0) & ~neg));                 \
        IT over = sign_mask_##S(709.782712893384 - x), under = sign_mask_##S(x + 745.1332191019412); \
        return (VT)(((IT)y & ~(over | under)) | ((IT)splat_##S(__builtin_inf()) & over));          \
    }                                                                                              \
                                                                                                   \
    /* One evaluation of the profile likelihood at (b0, b1) over K classes (arrays padded with zero \
     * classes to a multiple of FIT_PAD; mask all-ones for the classes of nonzero count, 0 for the \
     * others, which add nothing): F = -2L - n log 2 pi, or inf if infeasible, and in d: grad0,    \
     * grad1, H00, H01, H11, alpha0, alpha1, Minv11 (as numba's _profile_classes with hessian). wk \
     * gets the weights. */                                                                       \
    static inline __attribute__((always_inline)) double profile_##S(double b0, double b1, const double *g, \
                                                                    const double *c, const double *y1, \
                                                                    const double *y2, const int64_t *mask, \
                                                                    double *wk, int have_w, int64_t K, \
                                                                    double d[8])                   \
    {                                                                                              \
        enum { H = H_##S };                                                                        \
        const VT B0 = splat_##S(b0), B1 = splat_##S(b1), ZERO = splat_##S(0.0);                    \
        VT m00[H], m01[H], m11[H], r0[H], r1[H];                                                   \
        for (int h = 0; h < H; h++)                                                                \
            m00[h] = m01[h] = m11[h] = r0[h] = r1[h] = ZERO;                                       \
        /* the weights that table_weights_S left in wk (masked): each half of the lanes in turn,   \
         * as pass 2 below */                                                                      \
        for (int h = 0; h < H && have_w; h++)                                                      \
            for (int64_t k = 0; k < K; k += 8) {                                                   \
                int64_t o = k + W * h;                                                             \
                VT G, C, Y1, w;                                                                    \
                memcpy(&G, g + o, sizeof(VT));                                                     \
                memcpy(&w, wk + o, sizeof(VT));                                                    \
                memcpy(&C, c + o, sizeof(VT));                                                     \
                memcpy(&Y1, y1 + o, sizeof(VT));                                                   \
                PASS1_ADD(h, w, G, C, Y1);                                                         \
            }                                                                                      \
        for (int64_t k = 0; k < K && !have_w; k += 8 * UNROLL) {                                   \
            /* UNROLL H exponentials at once (each is a chain of dependent steps) */               \
            VT G[UNROLL][H], w[UNROLL][H];                                                         \
            for (int u = 0; u < UNROLL; u++)                                                       \
                for (int h = 0; h < H; h++) {                                                      \
                    int64_t o = k + 8 * u + W * h;                                                 \
                    memcpy(&G[u][h], g + o, sizeof(VT));                                           \
                    IT M;                                                                          \
                    memcpy(&M, mask + o, sizeof(IT));                                              \
                    w[u][h] = (VT)((IT)exp_##S(-(B0 + B1 * G[u][h])) & M);                         \
                    memcpy(wk + o, &w[u][h], sizeof(VT));                                          \
                }                                                                                  \
            for (int u = 0; u < UNROLL; u++)                                                       \
                for (int h = 0; h < H; h++) {                                                      \
                    int64_t o = k + 8 * u + W * h;                                                 \
                    VT C, Y1;                                                                      \
                    memcpy(&C, c + o, sizeof(VT));                                                 \
                    memcpy(&Y1, y1 + o, sizeof(VT));                                               \
                    PASS1_ADD(h, w[u][h], G[u][h], C, Y1);                                         \
                }                                                                                  \
        }                                                                                          \
        double M00 = combine_##S(m00), M01 = combine_##S(m01), M11 = combine_##S(m11);             \
        double R0 = combine_##S(r0), R1 = combine_##S(r1);                                         \
        double det = M00 * M11 - M01 * M01;                                                        \
        for (int l = 0; l < 8; l++)                                                                \
            d[l] = 0.0;                                                                            \
        d[7] = __builtin_nan("");                                                                  \
        if (!(det > 0) || !isfinite(det))                                                          \
            return __builtin_inf();                                                                \
        double a0 = (M11 * R0 - M01 * R1) / det, a1 = (M00 * R1 - M01 * R0) / det;                 \
        const VT A0 = splat_##S(a0), A1 = splat_##S(a1);                                           \
        VT F[H], gr0[H], gr1[H], h00[H], h01[H], h11[H], x00[H], x01[H], x11[H];                   \
        for (int h = 0; h < H; h++)                                                                \
            F[h] = gr0[h] = gr1[h] = h00[h] = h01[h] = h11[h] = x00[h] = x01[h] = x11[h] = ZERO;   \
        /* each half of the lanes in turn (with AVX2: lanes 0-3 over all the classes, then 4-7), \
         * each lane's additions in the same order as both at once, so the same bits: the 18      \
         * accumulators of both halves at once did not fit AVX2's 16 registers and went through   \
         * the stack (passes 1 and 2 so, the compiled fits of dos.pgen's 8,860 classes a variant   \
         * took 0.34 against 0.40 ms per variant on one thread, an AMD EPYC of Zen 1) */          \
        for (int h = 0; h < H; h++)                                                                \
            for (int64_t k = 0; k < K; k += 8) {                                                   \
                int64_t o = k + W * h;                                                             \
                VT G, C, Y1, Y2, w;                                                                \
                memcpy(&G, g + o, sizeof(VT));                                                     \
                memcpy(&C, c + o, sizeof(VT));                                                     \
                memcpy(&Y1, y1 + o, sizeof(VT));                                                   \
                memcpy(&Y2, y2 + o, sizeof(VT));                                                   \
                memcpy(&w, wk + o, sizeof(VT));                                                    \
                VT eta = B0 + B1 * G;                                                              \
                /* the class's sum of squared residuals about mu = a0 + a1 g, max(s2 - 2 mu s1 + c \
                 * mu^2, 0) */                                                                    \
                VT mu = A0 + A1 * G;                                                               \
                VT Q = relu_##S((Y2 - (2.0 * mu) * Y1) + (C * mu) * mu);                           \
                VT wQ = w * Q;                                                                     \
                F[h] += C * eta + wQ;                                                              \
                VT dd = C - wQ;                                                                    \
                gr0[h] += dd;                                                                      \
                gr1[h] += dd * G;                                                                  \
                h00[h] += wQ;                                                                      \
                h01[h] += wQ * G;                                                                  \
                h11[h] += (wQ * G) * G;                                                            \
                VT wr = w * (Y1 - C * mu);                                                         \
                x00[h] += wr;                                                                      \
                x01[h] += wr * G;                                                                  \
                x11[h] += (wr * G) * G;                                                            \
            }                                                                                      \
        double f = combine_##S(F);                                                                 \
        d[5] = a0;                                                                                 \
        d[6] = a1;                                                                                 \
        if (!isfinite(f))                                                                          \
            return __builtin_inf();                                                                \
        double H00 = combine_##S(h00), H01 = combine_##S(h01), H11 = combine_##S(h11);             \
        double A00 = combine_##S(x00), A01 = combine_##S(x01), A11 = combine_##S(x11);             \
        /* H = sum wQ v v' - 2 A' M^-1 A, A symmetric [[A00, A01], [A01, A11]] */                  \
        double i00 = M11 / det, i01 = -M01 / det, i11 = M00 / det;                                 \
        double z00 = i00 * A00 + i01 * A01, z01 = i00 * A01 + i01 * A11;                           \
        double z10 = i01 * A00 + i11 * A01, z11 = i01 * A01 + i11 * A11;                           \
        d[0] = combine_##S(gr0);                                                                   \
        d[1] = combine_##S(gr1);                                                                   \
        d[2] = H00 - 2.0 * (A00 * z00 + A01 * z10);                                                \
        d[3] = H01 - 2.0 * (A00 * z01 + A01 * z11);                                                \
        d[4] = H11 - 2.0 * (A01 * z01 + A11 * z11);                                                \
        d[7] = M00 / det;                                                                          \
        return f;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* The weights exp(-(b0 + b1 (v_k - gbar))) of Kp padded classes whose dosages are v_k = m_k /   \
     * 16384 (key[k] = m_k, 0 <= m_k <= 32768; KEY_NONE for a class without individuals, whose weight \
     * is +0.0), into wk: exp(-b0 + b1 gbar) e^(s 128 (m_k >> 7)) e^(s (m_k & 127)), s = -b1 / 16384, \
     * by tables of the 257 and 128 powers (tab: TABLE_DOUBLES), 385 exponentials instead of one a  \
     * class. For |b1| <= 50 and |b0 - b1 gbar| <= 600 only (fit_variant's rule): no factor or      \
     * product then overflows or is subnormal. Each weight is within a few ulps of the direct one   \
     * (three rounded factors). */                                                                 \
    static inline __attribute__((always_inline)) void table_weights_##S(double b0, double b1, double gbar, \
                                                                        const int32_t *key,       \
                                                                        double *tab, double *wk,  \
                                                                        int64_t Kp)               \
    {                                                                                              \
        const double s = -b1 * 0x1p-14, s128 = s * 128.0;                                          \
        for (int64_t i = 0; i < TABLE_DOUBLES; i += W) {                                           \
            VT a;                                                                                  \
            for (int l = 0; l < W; l++) {                                                          \
                int64_t t = i + l;                                                                 \
                a[l] = t < 128 ? s * (double)t : s128 * (double)(t - 128);                         \
            }                                                                                      \
            a = exp_##S(a);                                                                        \
            memcpy(tab + i, &a, sizeof(VT));                                                       \
        }                                                                                          \
        tab[128 + 257] = 0.0;                                                                      \
        const double ea = exp_##S(splat_##S(b1 * gbar - b0))[0];                                   \
        table_products(ea, tab, key, wk, Kp);                                                      \
    }                                                                                              \
                                                                                                   \
    /* The start of a variant's fits over its Kp padded classes, in lanes as the likelihood, the  \
     * part that its phenotypes of the same counts share: g centred (in place). Returns 0 if there \
     * are too few calls (n <= 4); else v = (v00, v01, v11, vdet) and gbar. */                     \
    static inline __attribute__((always_inline)) int start_##S(double *g, const double *c, int64_t Kp, \
                                                               double v[4], double *gbar)          \
    {                                                                                              \
        enum { H = H_##S };                                                                        \
        const VT ZERO = splat_##S(0.0);                                                            \
        VT n8[H], sg8[H];                                                                          \
        for (int h = 0; h < H; h++)                                                                \
            n8[h] = sg8[h] = ZERO;                                                                 \
        for (int64_t k = 0; k < Kp; k += 8)                                                        \
            for (int h = 0; h < H; h++) {                                                          \
                VT G, C;                                                                           \
                memcpy(&G, g + k + W * h, sizeof(VT));                                             \
                memcpy(&C, c + k + W * h, sizeof(VT));                                             \
                n8[h] += C;                                                                        \
                sg8[h] += C * G;                                                                   \
            }                                                                                      \
        double n = combine_##S(n8), sg = combine_##S(sg8);                                         \
        if (n <= 4)                                                                                \
            return 0;                                                                              \
        *gbar = sg / n;                                                                            \
        const VT GBAR = splat_##S(sg / n);                                                         \
        VT v01_8[H], v11_8[H];                                                                     \
        for (int h = 0; h < H; h++)                                                                \
            v01_8[h] = v11_8[h] = ZERO;                                                            \
        for (int64_t k = 0; k < Kp; k += 8)                                                        \
            for (int h = 0; h < H; h++) {                                                          \
                VT G, C;                                                                           \
                memcpy(&G, g + k + W * h, sizeof(VT));                                             \
                memcpy(&C, c + k + W * h, sizeof(VT));                                             \
                G -= GBAR;                                                                         \
                memcpy(g + k + W * h, &G, sizeof(VT));                                             \
                v01_8[h] += C * G;                                                                 \
                v11_8[h] += (C * G) * G;                                                           \
            }                                                                                      \
        double v00 = n, v01 = combine_##S(v01_8), v11 = combine_##S(v11_8);                        \
        v[0] = v00;                                                                                \
        v[1] = v01;                                                                                \
        v[2] = v11;                                                                                \
        v[3] = v00 * v11 - v01 * v01;                                                              \
        return 1;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* The start of one phenotype's fit, after start_S (g centred, v): ordinary least squares      \
     * mean, homoskedastic variance, b0 = log(rss / n). Each running sum adds the same classes in  \
     * the same lanes and order as when start_S's loops also took them. */                        \
    static inline __attribute__((always_inline)) double start_trait_##S(const double *g, const double *c, \
                                                                        const double *y1,          \
                                                                        const double *y2, int64_t Kp, \
                                                                        const double v[4])         \
    {                                                                                              \
        enum { H = H_##S };                                                                        \
        const VT ZERO = splat_##S(0.0);                                                            \
        VT r0_8[H], r1_8[H];                                                                       \
        for (int h = 0; h < H; h++)                                                                \
            r0_8[h] = r1_8[h] = ZERO;                                                              \
        for (int64_t k = 0; k < Kp; k += 8)                                                        \
            for (int h = 0; h < H; h++) {                                                          \
                VT G, Y1;                                                                          \
                memcpy(&G, g + k + W * h, sizeof(VT));                                             \
                memcpy(&Y1, y1 + k + W * h, sizeof(VT));                                           \
                r0_8[h] += Y1;                                                                     \
                r1_8[h] += Y1 * G;                                                                 \
            }                                                                                      \
        double v00 = v[0], v01 = v[1], v11 = v[2], vdet = v[3];                                    \
        double r0 = combine_##S(r0_8), r1 = combine_##S(r1_8);                                     \
        double a0 = (v11 * r0 - v01 * r1) / vdet, a1 = (v00 * r1 - v01 * r0) / vdet;              \
        const VT A0 = splat_##S(a0), A1 = splat_##S(a1);                                           \
        VT rss8[H];                                                                                \
        for (int h = 0; h < H; h++)                                                                \
            rss8[h] = ZERO;                                                                        \
        for (int64_t k = 0; k < Kp; k += 8)                                                        \
            for (int h = 0; h < H; h++) {                                                          \
                int64_t o = k + W * h;                                                             \
                VT G, C, Y1, Y2;                                                                   \
                memcpy(&G, g + o, sizeof(VT));                                                     \
                memcpy(&C, c + o, sizeof(VT));                                                     \
                memcpy(&Y1, y1 + o, sizeof(VT));                                                   \
                memcpy(&Y2, y2 + o, sizeof(VT));                                                   \
                VT mu = A0 + A1 * G;                                                               \
                rss8[h] += relu_##S((Y2 - (2.0 * mu) * Y1) + (C * mu) * mu);                       \
            }                                                                                      \
        double rss = combine_##S(rss8), n = v00;                                                   \
        return log(rss / n > 1e-300 ? rss / n : 1e-300);                                           \
    }

/* Eight lanes of AVX-512 take four steps of eight classes at a time (as before the halves), the
 * halves two: one, two and four measured the same on the Zen 3 (0.44-0.46 ms of CPU per variant). */
FIT_KERNELS(8, v8d, v8l, v8u, 8, 4)
FIT_KERNELS(4, v4d, v4l, v4u, 4, 2)

/* -------------------------------------------------------------------------------------------
 * The fits of a variant of many classes by power sums (moment_profile): the weighted sums of an
 * evaluation, sum_k e^-(b0 + b1 g_k) g_k^q x_k (x the counts, sums of y or of y^2), are
 * e^-b0 sum_m (-b1)^m / m! P_(q + m)(x), P_p(x) = sum_k g_k^p x_k, by the series of e^(-b1 g),
 * whose terms past the m-th are at most (|b1| gmax)^(m + 1) / (m + 1)! e^(|b1| gmax) of the sum of
 * |g^q x| (gmax = max |g_k|): moment_terms takes the fewest m that put them below an ulp of the
 * smallest sum that the weights could give (e^(-|b1| gmax) of it), or -1 past MOMENT_TERMS. The P_p
 * are made once per variant (counts) and phenotype (y, y^2), in one pass of the classes each eight
 * powers: an evaluation then takes O(MOMENT_TERMS) operations instead of a pass of the classes.
 * The sums differ from the direct ones' (a class at a time) in their last digits, as the order of
 * their additions does; an evaluation beyond MOMENT_TERMS is the direct one (evaluate).
 * ------------------------------------------------------------------------------------------- */
#define MOMENT_TERMS 12
#define MOMENT_POWERS (MOMENT_TERMS + 5) /* P_0 .. P_(MOMENT_TERMS + 4), of the counts */

/* The fewest terms m (0 .. MOMENT_TERMS) of the series for x = |b1| gmax, or -1 if none. */
static int moment_terms(double x)
{
    if (!(x < 1.0))
        return -1;
    double term = 1.0, grow = exp(2.0 * x);
    for (int m = 0; m <= MOMENT_TERMS; m++) {
        term *= x / (double)(m + 1); /* x^(m + 1) / (m + 1)! */
        if (term * grow <= 0x1p-54)
            return m;
    }
    return -1;
}

/* acc[i] += X G^(p0 + i), i = 0 .. 7 (p0 a multiple of 8), by products of depth three from
 * X G^p0, not a chain of eight (whose latency had bound the loop: 0.59 of its time). */
static inline __attribute__((always_inline)) void add_powers8(v4d acc[8], v4d X, v4d G, int p0)
{
    v4d G2 = G * G, G4 = G2 * G2;
    for (int s = 0; s < p0; s += 8)
        X *= G4 * G4;
    v4d X1 = X * G, X2 = X * G2, X3 = X1 * G2;
    acc[0] += X;
    acc[1] += X1;
    acc[2] += X2;
    acc[3] += X3;
    acc[4] += X * G4;
    acc[5] += X1 * G4;
    acc[6] += X2 * G4;
    acc[7] += X3 * G4;
}

/* P[p] = sum_k g_k^p x_k, p = 0 .. np - 1, over Kp classes (a multiple of 4; the padding zeros),
 * eight powers a pass of the classes: each power's running sum in four lanes (classes k % 4),
 * combined ((l0 + l1) + (l2 + l3)) (add_powers8). Reading x from the scanner's rows of
 * sums (strided) in every pass took 1.3 times the time of copying it first. Inlined (as is
 * power_sums_pairs) into the target clones of hlmm_fit_dosage_classes: a function of its own is
 * built for the baseline instruction set only, and power_sums_pairs so took 3.6 ms per variant of
 * the 10 traits' scan (docs/performance.rst). */
static inline __attribute__((always_inline)) void power_sums(const double *g, const double *x, int64_t Kp, int np,
                                                              double *P)
{
    for (int p0 = 0; p0 < np; p0 += 8) {
        v4d acc[8];
        for (int i = 0; i < 8; i++)
            acc[i] = (v4d){0.0, 0.0, 0.0, 0.0};
        for (int64_t k = 0; k < Kp; k += 4) {
            v4d G, X;
            memcpy(&G, g + k, sizeof(G));
            memcpy(&X, x + k, sizeof(X));
            add_powers8(acc, X, G, p0);
        }
        for (int i = 0; i < 8 && p0 + i < np; i++)
            P[p0 + i] = (acc[i][0] + acc[i][1]) + (acc[i][2] + acc[i][3]);
    }
}

/* The power sums of one phenotype's sums of y and y^2 at once: P1[p] = sum_k g_k^p y1_k, p = 0 ..
 * MOMENT_POWERS - 2, and P2[p] = sum_k g_k^p y2_k, p = 0 .. MOMENT_POWERS - 3, from the pairs
 * (y1_k, y2_k), two adjacent doubles at yy + k stride (a row of the scanner's sums, or an
 * interleaved copy), two classes a vector (y1, y2 of class k, then of k + 1): the powers of each
 * class made once for both, and the rows read without copying them (power_sums of copies of the
 * two columns measured the same: 0.84 against 0.87 ms of CPU per variant for the fits of 10 traits
 * of dos.pgen; docs/performance.rst). Each sum in two lanes (classes k % 2), added. */
static inline __attribute__((always_inline)) void power_sums_pairs(const double *g, const double *yy, int64_t stride,
                                                                    int64_t K, double *P1, double *P2)
{
    _Static_assert(MOMENT_POWERS - 1 <= 16, "two passes of eight powers");
    for (int p0 = 0; p0 < MOMENT_POWERS - 1; p0 += 8) {
        v4d acc[8];
        for (int i = 0; i < 8; i++)
            acc[i] = (v4d){0.0, 0.0, 0.0, 0.0};
        for (int64_t k = 0; k < K; k += 2) {
            v4d X, G;
            if (k + 1 < K) {
                memcpy(&X, yy + k * stride, 2 * sizeof(double));
                memcpy((double *)&X + 2, yy + (k + 1) * stride, 2 * sizeof(double));
                G = (v4d){g[k], g[k], g[k + 1], g[k + 1]};
            } else {
                X = (v4d){yy[k * stride], yy[k * stride + 1], 0.0, 0.0};
                G = (v4d){g[k], g[k], 0.0, 0.0};
            }
            add_powers8(acc, X, G, p0);
        }
        for (int i = 0; i < 8; i++) {
            if (p0 + i < MOMENT_POWERS - 1)
                P1[p0 + i] = acc[i][0] + acc[i][2];
            if (p0 + i < MOMENT_POWERS - 2)
                P2[p0 + i] = acc[i][1] + acc[i][3];
        }
    }
}

/* W[q] = e^-b0 sum_(m = M .. 0) c_m P[q + m], q = 0 .. nq - 1, c_m = (-b1)^m / m! (the smallest
 * terms first). */
static inline __attribute__((always_inline)) void weighted_sums(const double *coef, double e, int M, const double *P,
                                                                int nq, double *W)
{
    for (int q = 0; q < nq; q++) {
        double s = 0.0;
        for (int m = M; m >= 0; m--)
            s += coef[m] * P[q + m];
        W[q] = e * s;
    }
}

/* sum_k w_k g_k^q (s2_k - 2 mu_k s1_k + c_k mu_k^2), mu = a0 + a1 g, from the weighted sums Wc[q ..
 * q + 2] of the counts, W1[q .. q + 1] of y and W2[q] of y^2 (the power sums themselves at b1 = 0). */
static inline __attribute__((always_inline)) double residual_sum(double a0, double a1, const double *Wc,
                                                                 const double *W1, const double *W2, int q)
{
    return (W2[q] - 2.0 * (a0 * W1[q] + a1 * W1[q + 1])) +
           ((a0 * a0) * Wc[q] + (2.0 * a0 * a1) * Wc[q + 1] + (a1 * a1) * Wc[q + 2]);
}

/* One evaluation of the profile likelihood at (b0, b1) from the power sums of the counts (Pc),
 * sums of y (P1) and of y^2 (P2) by M + 1 terms of the series: what profile_S returns and leaves
 * in d, with the same formulas, each sum over the classes a weighted sum (weighted_sums). */
static double moment_profile(double b0, double b1, const double *Pc, const double *P1, const double *P2, int M,
                             double d[8])
{
    double coef[MOMENT_TERMS + 1], Wc[5], W1[4], W2[3];
    coef[0] = 1.0;
    for (int m = 1; m <= M; m++)
        coef[m] = coef[m - 1] * (-b1) / (double)m;
    double e = exp(-b0);
    weighted_sums(coef, e, M, Pc, 5, Wc);
    weighted_sums(coef, e, M, P1, 4, W1);
    weighted_sums(coef, e, M, P2, 3, W2);
    for (int l = 0; l < 8; l++)
        d[l] = 0.0;
    d[7] = __builtin_nan("");
    double M00 = Wc[0], M01 = Wc[1], M11 = Wc[2], R0 = W1[0], R1 = W1[1];
    double det = M00 * M11 - M01 * M01;
    if (!(det > 0) || !isfinite(det))
        return __builtin_inf();
    double a0 = (M11 * R0 - M01 * R1) / det, a1 = (M00 * R1 - M01 * R0) / det;
    double S[3], X[3];
    for (int q = 0; q < 3; q++) {
        S[q] = residual_sum(a0, a1, Wc, W1, W2, q);
        X[q] = W1[q] - (a0 * Wc[q] + a1 * Wc[q + 1]);
    }
    double f = (b0 * Pc[0] + b1 * Pc[1]) + S[0];
    d[5] = a0;
    d[6] = a1;
    if (!isfinite(f))
        return __builtin_inf();
    double H00 = S[0], H01 = S[1], H11 = S[2], A00 = X[0], A01 = X[1], A11 = X[2];
    double i00 = M11 / det, i01 = -M01 / det, i11 = M00 / det;
    double z00 = i00 * A00 + i01 * A01, z01 = i00 * A01 + i01 * A11;
    double z10 = i01 * A00 + i11 * A01, z11 = i01 * A01 + i11 * A11;
    d[0] = Pc[0] - S[0];
    d[1] = Pc[1] - S[1];
    d[2] = H00 - 2.0 * (A00 * z00 + A01 * z10);
    d[3] = H01 - 2.0 * (A00 * z01 + A01 * z11);
    d[4] = H11 - 2.0 * (A01 * z01 + A11 * z11);
    d[7] = M00 / det;
    return f;
}

/* e^x of n values by the fits' exponential of `lanes` (8 or 4) lanes (for its tests). */
CLONES
void hlmm_exp(const double *x, double *y, int64_t n, int64_t lanes)
{
    for (int64_t i = 0; i < n; i += 8) {
        double a[8], e[8];
        for (int64_t l = 0; l < 8; l++)
            a[l] = i + l < n ? x[i + l] : 0.0;
        if (lanes == 8) {
            v8d v;
            memcpy(&v, a, sizeof(v));
            v = exp_8(v);
            memcpy(e, &v, sizeof(v));
        } else {
            for (int h = 0; h < 2; h++) {
                v4d v;
                memcpy(&v, a + 4 * h, sizeof(v));
                v = exp_4(v);
                memcpy(e + 4 * h, &v, sizeof(v));
            }
        }
        for (int64_t l = 0; l < 8 && i + l < n; l++)
            y[i + l] = e[l];
    }
}

/* The doubles of scratch space that hlmm_fit_dosage_classes needs for variants j0 .. j1 - 1. */
static int64_t fit_padded(const int64_t *offsets, int64_t j0, int64_t j1)
{
    int64_t most = 0;
    for (int64_t j = j0; j < j1; j++)
        most = offsets[j + 1] - offsets[j] > most ? offsets[j + 1] - offsets[j] : most;
    return (most + FIT_PAD - 1) / FIT_PAD * FIT_PAD;
}

int64_t hlmm_fit_scratch_size(const int64_t *offsets, int64_t j0, int64_t j1)
{
    return 7 * fit_padded(offsets, j0, j1) + TABLE_DOUBLES + 8;
}

/* The keys m = 16384 v of K class dosages v, for table_weights_S: 1 if all are whole numbers from
 * 0 to 32768 (the 1/16384 grid of .pgen dosages), else 0. */
static inline __attribute__((always_inline)) int class_keys(const double *v, int64_t K, int32_t *key)
{
    int32_t off = 0;
    for (int64_t k = 0; k < K; k++) {
        double m = v[k] * 16384.0;
        int32_t mk = (int32_t)(m >= 0.0 && m <= 32768.0 ? m : 0.0);
        key[k] = mk;
        off |= (double)mk != m;
    }
    return !off;
}

/* Whether table_weights_S may give the weights at (b0, b1): no factor or product of theirs then
 * overflows or is subnormal. */
static inline __attribute__((always_inline)) int table_rule(double b0, double b1, double gbar)
{
    return fabs(b1) <= 50.0 && fabs(b0 - b1 * gbar) <= 600.0;
}

/* The weights exp(-(b0 + b1 (v_k - gbar))) of K classes (all counted) as the fits take them, by
 * `lanes` (8 or 4) lanes (for their tests): from the tables within table_rule, returning 1, else
 * by exponentials, returning 0; -1 (and w not written) if a v_k is off the 1/16384 grid or out of
 * memory. */
CLONES
int hlmm_fit_weights(double b0, double b1, double gbar, const double *values, int64_t K, int64_t lanes, double *w)
{
    int64_t Kp = (K + FIT_PAD - 1) / FIT_PAD * FIT_PAD;
    double *tab = malloc(sizeof(double) * (TABLE_DOUBLES + Kp)), *wk = tab + TABLE_DOUBLES;
    int32_t *key = malloc(sizeof(int32_t) * Kp);
    int64_t *mask = malloc(sizeof(int64_t) * Kp);
    if (!tab || !key || !mask) {
        free(tab), free(key), free(mask);
        return -1;
    }
    if (!class_keys(values, K, key)) {
        free(tab), free(key), free(mask);
        return -1;
    }
    for (int64_t k = 0; k < Kp; k++) {
        key[k] = k < K ? key[k] : KEY_NONE;
        mask[k] = k < K ? -1 : 0;
    }
    int tables = table_rule(b0, b1, gbar);
    if (tables && lanes == 8)
        table_weights_8(b0, b1, gbar, key, tab, wk, Kp);
    else if (tables)
        table_weights_4(b0, b1, gbar, key, tab, wk, Kp);
    else /* (as profile_S: exp_4 and exp_8 give the same bits) */
        for (int64_t k = 0; k < Kp; k += 4) {
            v4d G = {0};
            for (int l = 0; l < 4; l++)
                G[l] = k + l < K ? values[k + l] - gbar : 0.0;
            v4d e = exp_4(-(b0 + b1 * G));
            memcpy(wk + k, &e, sizeof(e));
        }
    memcpy(w, wk, sizeof(double) * K);
    free(tab), free(key), free(mask);
    return tables;
}

/* One evaluation of the profile likelihood (profile_S) by `lanes` (8 or 4) lanes, with the weights
 * of the tables (table_weights_S) where key is not NULL and (b0, b1) within their rule, else with
 * an exponential a class. */
static inline __attribute__((always_inline)) double evaluate(double b0, double b1, double gbar, const double *g,
                                                             const double *c, const double *y1, const double *y2,
                                                             const int64_t *mask, const int32_t *key, double *tab,
                                                             double *wk, int64_t Kp, int64_t lanes, double d[8])
{
    int have_w = key != NULL && table_rule(b0, b1, gbar);
    if (b1 == 0.0) {
        /* the start's b1: the same weight e^-b0 for every class, what the tables and the
         * exponential a class both give at b1 = 0 (to the last bit: their factors e^0 are 1), without
         * the 385 exponentials and the pass of the tables (0.06 of 2.10 ms of CPU per variant for
         * the fits of 10 phenotypes of dos.pgen; docs/performance.rst) */
        const double e = exp_4(splat_4(-b0))[0];
        for (int64_t k = 0; k < Kp; k++)
            wk[k] = mask[k] ? e : 0.0;
        have_w = 1;
    } else if (have_w) {
        if (lanes == 8)
            table_weights_8(b0, b1, gbar, key, tab, wk, Kp);
        else
            table_weights_4(b0, b1, gbar, key, tab, wk, Kp);
    }
    return lanes == 8 ? profile_8(b0, b1, g, c, y1, y2, mask, wk, have_w, Kp, d)
                      : profile_4(b0, b1, g, c, y1, y2, mask, wk, have_w, Kp, d);
}

/* One phenotype's Newton fit over a variant's Kp padded classes (as hlmm_fit_dosage_classes), after
 * start_S (g centred, v = (v00, v01, v11, vdet), gbar), by the likelihood of `lanes` (8 or 4)
 * lanes, its weights by tables where key is not NULL (evaluate), or, where Pc is not NULL, by the
 * power sums Pc, P1 and P2 of the counts, y and y^2 (moment_profile; gmax = max |g| of the classes
 * with a count) wherever their series reaches (moment_terms): returns 1 and F, a0, a1, b0, b1,
 * Minv11, var(b1) in o[0 .. 6], or 0 if not fitted. */
static inline __attribute__((always_inline)) int fit_variant(const double *g, const double *c, double *y1,
                                                             double *y2, const double *s1t, const double *s2t,
                                                             int64_t stride, int64_t o0, int64_t K,
                                                             const int64_t *mask,
                                                             const int32_t *key, double *tab, double *wk,
                                                             int64_t Kp, int64_t lanes, const double v[4],
                                                             double gbar, int64_t max_iter, double dec_rtol,
                                                             double stall_rtol, double local_rtol, double noise_rtol,
                                                             const double *Pc, const double *P1, const double *P2,
                                                             double gmax, double o[7])
{
    double v00 = v[0], v01 = v[1], v11 = v[2], vdet = v[3], b0, b1 = 0.0;
    int have_y = 0;
    /* the phenotype's sums y1, y2 from its rows (and their padding zeros), once, where an
     * evaluation needs them: with the power sums, only past the series' reach */
#define HAVE_Y()                                                                                   \
    do {                                                                                           \
        if (!have_y) {                                                                             \
            for (int64_t k = 0; k < K; k++) { /* (one loop: neighbours in a row of sums) */        \
                y1[k] = s1t[(o0 + k) * stride];                                                    \
                y2[k] = s2t[(o0 + k) * stride];                                                    \
            }                                                                                      \
            for (int64_t k = K; k < Kp; k++)                                                       \
                y1[k] = y2[k] = 0.0;                                                               \
            have_y = 1;                                                                            \
        }                                                                                          \
    } while (0)
    if (Pc) { /* the start_trait_S's least squares and rss by the power sums */
        double a0 = (v11 * P1[0] - v01 * P1[1]) / vdet, a1 = (v00 * P1[1] - v01 * P1[0]) / vdet;
        double rss = residual_sum(a0, a1, Pc, P1, P2, 0);
        b0 = log(rss / v00 > 1e-300 ? rss / v00 : 1e-300);
    } else {
        HAVE_Y();
        b0 = lanes == 8 ? start_trait_8(g, c, y1, y2, Kp, v) : start_trait_4(g, c, y1, y2, Kp, v);
    }
    int terms;
#define PROFILE(B0, B1, D)                                                                         \
    (Pc && (terms = moment_terms(fabs(B1) * gmax)) >= 0                                           \
         ? moment_profile(B0, B1, Pc, P1, P2, terms, D)                                            \
         : ({                                                                                      \
               HAVE_Y();                                                                           \
               evaluate(B0, B1, gbar, g, c, y1, y2, mask, key, tab, wk, Kp, lanes, D);             \
           }))
    double d[8], dt[8];
    double F = PROFILE(b0, b1, d);
    int ok = 0, stalls = 0;
    double last = __builtin_inf();
    for (int64_t it = 0; it < max_iter; it++) {
        if (!isfinite(F))
            break;
        double gr0 = d[0], gr1 = d[1], h00 = d[2], h01 = d[3], h11 = d[4];
        double hd = h00 * h11 - h01 * h01, st0, st1;
        if (h00 > 0 && hd > 0) {
            st0 = -(h11 * gr0 - h01 * gr1) / hd;
            st1 = -(h00 * gr1 - h01 * gr0) / hd;
        } else {
            st0 = -(v11 * gr0 - v01 * gr1) / vdet;
            st1 = -(v00 * gr1 - v01 * gr0) / vdet;
        }
        double dec = -(gr0 * st0 + gr1 * st1);
        double scale = fabs(F) > 1.0 ? fabs(F) : 1.0;
        if (!isfinite(dec))
            break;
        if (dec <= dec_rtol * scale) {
            ok = 1;
            break;
        }
        stalls = dec > 0.5 * last ? stalls + 1 : 0;
        if (stalls >= 3 && dec <= stall_rtol * scale) {
            ok = 1;
            break;
        }
        last = dec;
        int local = dec <= local_rtol * scale, moved = 0;
        for (double t = 1.0; t >= 1e-14; t *= 0.5) {
            double nb0 = b0 + t * st0, nb1 = b1 + t * st1;
            double Ft = PROFILE(nb0, nb1, dt);
            int accept = Ft <= F - 1e-4 * t * dec || (local && t == 1.0 && Ft <= F + noise_rtol * scale);
            if (isfinite(Ft) && accept) {
                b0 = nb0;
                b1 = nb1;
                F = Ft;
                memcpy(d, dt, sizeof(d));
                moved = 1;
                break;
            }
        }
        if (!moved) {
            ok = dec <= stall_rtol * scale;
            break;
        }
    }
#undef PROFILE
#undef HAVE_Y
    if (!ok)
        return 0;
    double var_b1 = 2.0 * v00 / vdet, minv11 = d[7];
    if (!(isfinite(F) && minv11 > 0 && var_b1 > 0))
        return 0;
    o[0] = F;
    o[1] = d[5];
    o[2] = d[6];
    o[3] = b0;
    o[4] = b1;
    o[5] = minv11;
    o[6] = var_b1;
    return 1;
}

/* Variants j0 .. j1 - 1 of numba's fit_dosage_classes (its arguments; values contiguous; cnt, s1
 * and s2 each a stride apart, the columns of one array of class sums as the scanner has them, so
 * that the caller copies none: the copy of the counts had taken 0.024 ms per variant of dos.pgen
 * on the scan's own thread), for T phenotypes of the same counts cnt: phenotype t's sums of y and
 * y^2 at s1[t] and s2[t] (the same stride), its results at out + 8 (t b + j). By the likelihood of
 * `lanes` (8 or 4, hlmm_lanes(); the two give the same bits): out[8 (t b + j) ..] = F, a0, a1, b0,
 * b1, var(a1), var(b1), success, left as they are (NaN, the caller's) where not fitted but success,
 * which is 0. A variant's classes, their counts, keys and centred dosages are made once for its T
 * fits, each of which adds the same numbers in the same order as a fit alone (copying and keying
 * them for every phenotype took 0.33 of 2.41 ms of CPU per variant for 10 phenotypes of dos.pgen,
 * and the shared half of the start another part of 0.55; docs/performance.rst). A variant of at
 * least table_min classes, all on the 1/16384 grid of .pgen dosages (0 to 2), takes its weights
 * from tables (table_weights_S): 385 exponentials an evaluation instead of one a class. A variant
 * of at least moment_min classes (on the grid or not) is evaluated by power sums (moment_profile)
 * wherever their series reaches, the counts' made once for its T fits, each phenotype's in one
 * pass of its rows (power_sums_pairs); its y1 and y2 are copied only for an evaluation past the
 * series' reach. scratch:
 * room for hlmm_fit_scratch_size(offsets, j0, j1) doubles, the caller's (kept for its next calls:
 * scratch allocated and freed by each call moved the top of the heap up and down, and the .pgen
 * decoding, whose blocks then got fresh pages, slowed: 0.143 against 0.087 ms per variant; see
 * docs/performance.rst). */
CLONES
void hlmm_fit_dosage_classes(const int64_t *offsets, const double *values, const double *cnt,
                             const double *const *s1, const double *const *s2, int64_t T, int64_t stride,
                             int64_t j0, int64_t j1, int64_t b, int64_t lanes, int64_t table_min,
                             int64_t moment_min, int64_t max_iter,
                             double dec_rtol, double stall_rtol, double local_rtol, double noise_rtol, double *out,
                             double *scratch)
{
    int64_t K8 = fit_padded(offsets, j0, j1);
    double *g = scratch, *c = g + K8, *y1 = c + K8, *y2 = y1 + K8, *wk = y2 + K8, *tab = wk + 2 * K8;
    int64_t *mask = (int64_t *)(wk + K8);
    int32_t *key = (int32_t *)(tab + TABLE_DOUBLES);
    for (int64_t j = j0; j < j1; j++) {
        int64_t o0 = offsets[j], K = offsets[j + 1] - o0, Kp = (K + FIT_PAD - 1) / FIT_PAD * FIT_PAD;
        /* (simple loops, each of one or two arrays: one loop of them all, with the keys, left its
         * flags on the stack, and took a quarter of the fits' time) */
        int64_t present = 0, grid = K >= table_min;
        memcpy(g, values + o0, sizeof(double) * K);
        for (int64_t k = 0; k < K; k++) {
            double ck = cnt[(o0 + k) * stride];
            c[k] = ck;
            mask[k] = ck != 0.0 ? -1 : 0;
            present += ck > 0;
        }
        for (int64_t k = K; k < Kp; k++) {
            g[k] = c[k] = 0.0; /* (y1 and y2: HAVE_Y in fit_variant) */
            mask[k] = 0;
            key[k] = KEY_NONE;
        }
        if (grid)
            grid = class_keys(g, K, key);
        for (int64_t k = 0; grid && k < K; k++) /* (classes of no count) */
            key[k] = mask[k] ? key[k] : KEY_NONE;
        for (int64_t t = 0; t < T; t++)
            out[8 * (t * b + j) + 7] = 0.0;
        double v[4], gbar;
        if (present < 2 || !(lanes == 8 ? start_8(g, c, Kp, v, &gbar) : start_4(g, c, Kp, v, &gbar)))
            continue;
        /* the power sums of the counts, and the largest |g| of a class with a count */
        double Pc[MOMENT_POWERS], P1[MOMENT_POWERS - 1], P2[MOMENT_POWERS - 2], gmax = 0.0;
        int moments = K >= moment_min;
        if (moments) {
            power_sums(g, c, Kp, MOMENT_POWERS, Pc);
            for (int64_t k = 0; k < K; k++)
                gmax = c[k] != 0.0 && fabs(g[k]) > gmax ? fabs(g[k]) : gmax;
        }
        for (int64_t t = 0; t < T; t++) {
            const double *s1t = s1[t], *s2t = s2[t];
            if (moments && s2t == s1t + 1) { /* (the scanner's rows: y, y^2 side by side) */
                power_sums_pairs(g, s1t + o0 * stride, stride, K, P1, P2);
            } else if (moments) { /* (an interleaved copy in y1 and y2's room, for the same sums) */
                for (int64_t k = 0; k < K; k++) {
                    y1[2 * k] = s1t[(o0 + k) * stride];
                    y1[2 * k + 1] = s2t[(o0 + k) * stride];
                }
                power_sums_pairs(g, y1, 2, K, P1, P2);
            }
            double o[7];
            double *ot = out + 8 * (t * b + j);
            if (fit_variant(g, c, y1, y2, s1t, s2t, stride, o0, K, mask, grid ? key : NULL, tab, wk, Kp, lanes, v,
                            gbar, max_iter, dec_rtol, stall_rtol, local_rtol, noise_rtol, moments ? Pc : NULL, P1,
                            P2, gmax, o)) {
                memcpy(ot, o, sizeof(o));
                ot[7] = 1.0;
            }
        }
    }
}

/* -------------------------------------------------------------------------------------------
 * The adaptive variance score's centred sums (numba's _kernels_classes.centred_combinations_sums,
 * the same operations in the same order, so the same bits): per variant j and phenotype t, over
 * j's classes k with a nonzero count, g = values[k] - mean,
 *     a[t] += g h_t(k),  h_t(k) = (S_t[k, 0] coef_t[0] + S_t[k, 1] coef_t[1]) + ... (in order),
 *     q2 += (count g) g,  q3 += ((count g) g) g,
 * with mean = ns[j, 1] / ns[j, 0], or NaN for all three where ns[j, 0] is not positive.
 * ------------------------------------------------------------------------------------------- */

/* The sums a[0 .. 3] of four phenotypes side by side over classes k0 .. k1 - 1 (each a chain of
 * dependent additions, which four at once do not wait for), R terms each (a constant where the
 * caller passes one: the terms and pointers then stay in registers). */
static inline __attribute__((always_inline)) void combinations4(const double *counts, int64_t crow,
                                                                const double *values, double mean,
                                                                const double *const *s, const int64_t *row,
                                                                const double *const *c, int64_t R, int64_t k0,
                                                                int64_t k1, double a[4])
{
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    for (int64_t k = k0; k < k1; k++) {
        if (!(counts[k * crow] > 0))
            continue;
        double g = values[k] - mean;
        const double *p0 = s[0] + k * row[0], *p1 = s[1] + k * row[1], *p2 = s[2] + k * row[2],
                     *p3 = s[3] + k * row[3];
        double x0 = p0[0] * c[0][0], x1 = p1[0] * c[1][0], x2 = p2[0] * c[2][0], x3 = p3[0] * c[3][0];
        for (int64_t i = 1; i < R; i++) {
            x0 = x0 + p0[i] * c[0][i];
            x1 = x1 + p1[i] * c[1][i];
            x2 = x2 + p2[i] * c[2][i];
            x3 = x3 + p3[i] * c[3][i];
        }
        a0 += g * x0;
        a1 += g * x1;
        a2 += g * x2;
        a3 += g * x3;
    }
    a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
}

/* combinations4 of one phenotype. */
static inline __attribute__((always_inline)) double combinations1(const double *counts, int64_t crow,
                                                                  const double *values, double mean,
                                                                  const double *s, int64_t row, const double *c,
                                                                  int64_t R, int64_t k0, int64_t k1)
{
    double a = 0.0;
    for (int64_t k = k0; k < k1; k++) {
        if (!(counts[k * crow] > 0))
            continue;
        const double *p = s + k * row;
        double x = p[0] * c[0];
        for (int64_t i = 1; i < R; i++)
            x = x + p[i] * c[i];
        a += (values[k] - mean) * x;
    }
    return a;
}

/* Variants j0 .. j1 - 1 of numba's centred_combinations_sums for T phenotypes: phenotype t's class
 * sums S[t] row major, rows[t] doubles apart, its combination's r[t] terms coef[t]; the counts are
 * column 0 of S[0]; ns (b, 2) the counts' sums and sums of counts times values per variant; out
 * (T, b, 3). Up to four phenotypes of the same number of terms at a time. numba's
 * loop, each phenotype's terms from a tuple of arrays in turn, took 0.59 ms of CPU per variant for
 * 10 phenotypes of dos.pgen's 8,990 classes a variant, this 0.21 (docs/performance.rst). */
CLONES
void hlmm_centred_combinations(const int64_t *offsets, const double *values, const double *const *S,
                               const int64_t *rows, const double *const *coef, const int64_t *r, int64_t T,
                               const double *ns, int64_t j0, int64_t j1, int64_t b, double *out)
{
    const double *counts = S[0];
    const int64_t crow = rows[0];
    for (int64_t j = j0; j < j1; j++) {
        double n = ns[2 * j];
        if (!(n > 0)) {
            for (int64_t t = 0; t < T; t++)
                out[3 * (t * b + j)] = out[3 * (t * b + j) + 1] = out[3 * (t * b + j) + 2] = __builtin_nan("");
            continue;
        }
        const double mean = ns[2 * j + 1] / n;
        const int64_t k0 = offsets[j], k1 = offsets[j + 1];
        double q2 = 0.0, q3 = 0.0;
        for (int64_t k = k0; k < k1; k++) {
            double ck = counts[k * crow];
            if (ck > 0) {
                double g = values[k] - mean, w = ck * g * g;
                q2 += w;
                q3 += w * g;
            }
        }
        for (int64_t t = 0; t < T;) {
            /* up to four phenotypes of as many terms in one pass; two or three fill the four with
             * the last of them again (written once): one pass of four took less time than two
             * passes of one */
            const int64_t R = r[t];
            int m = 1;
            while (m < 4 && t + m < T && r[t + m] == R)
                m++;
            double *o = out + 3 * (t * b + j);
            if (m > 1) {
                const double *s[4], *c[4];
                int64_t row[4];
                for (int u = 0; u < 4; u++) {
                    int64_t tu = t + (u < m ? u : m - 1);
                    s[u] = S[tu], c[u] = coef[tu], row[u] = rows[tu];
                }
                double a[4];
                if (R == 3)
                    combinations4(counts, crow, values, mean, s, row, c, 3, k0, k1, a);
                else if (R == 5)
                    combinations4(counts, crow, values, mean, s, row, c, 5, k0, k1, a);
                else
                    combinations4(counts, crow, values, mean, s, row, c, R, k0, k1, a);
                for (int u = 0; u < m; u++)
                    o[3 * b * u] = a[u];
            } else
                o[0] = R == 3 ? combinations1(counts, crow, values, mean, S[t], rows[t], coef[t], 3, k0, k1)
                              : combinations1(counts, crow, values, mean, S[t], rows[t], coef[t], R, k0, k1);
            t += m;
        }
        for (int64_t t = 0; t < T; t++) {
            out[3 * (t * b + j) + 1] = q2;
            out[3 * (t * b + j) + 2] = q3;
        }
    }
}
