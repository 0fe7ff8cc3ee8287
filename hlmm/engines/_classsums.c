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
 * range and stored back at its end. */
#define SUMS(NK, NQ)                                                                               \
    static inline __attribute__((always_inline)) void sums_##NK##_##NQ(                           \
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
            unsigned b1 = 2 * t + 1 < nbytes ? packed[2 * t + 1] : 0;                              \
            for (int c = 0; c < NQ; c++) {                                                         \
                v4d y0, y1;                                                                        \
                memcpy(&y0, y + c * n8 + 8 * t, 32);                                               \
                memcpy(&y1, y + c * n8 + 8 * t + 4, 32);                                           \
                for (int k = 0; k < NK; k++) {                                                     \
                    lo[k][c] += (v4d)((v4l)y0 & CLASS_MASKS[b0][k]);                               \
                    hi[k][c] += (v4d)((v4l)y1 & CLASS_MASKS[b1][k]);                               \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int k = 0; k < NK; k++)                                                               \
            for (int c = 0; c < NQ; c++) {                                                         \
                acc[(k * NQ + c) * 2] = lo[k][c];                                                  \
                acc[(k * NQ + c) * 2 + 1] = hi[k][c];                                              \
            }                                                                                      \
    }

SUMS(3, 1) SUMS(3, 2) SUMS(3, 3) SUMS(3, 4)
SUMS(4, 1) SUMS(4, 2) SUMS(4, 3) SUMS(4, 4)

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
