/*
 * XXH3-128 with a 64-bit seed, in plain scalar C, for `llmcache._speedups.xxh3_128`.
 *
 * Why our own: the `xxhash` package picks AVX-512 code for inputs over 240 bytes on CPUs
 * that have it. In a tight loop that is fast; in a real program, where a cache hit comes
 * after a hundred microseconds of ordinary Python, the vector unit has powered down and the
 * first wide instructions run throttled while it wakes. Measured inside
 * `ChatOpenAI.invoke` on a Sapphire Rapids Xeon: hashing a 1.7 KB request with `xxhash` cost
 * about 9 µs there against 0.4 µs in a loop. Scalar code has no such wake-up: the 64-bit
 * multiplies below run at full speed from the first call.
 *
 * Written from the XXH3 specification (doc/xxhash_spec.md of the xxHash project), and
 * checked bit for bit against the `xxhash` package by tests/test_xxh3.py (every length up
 * to 4 KiB, block boundaries, random seeds, hypothesis), so keys are the same with or
 * without this build.
 */
#ifndef LLMCACHE_XXH3_H
#define LLMCACHE_XXH3_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint64_t low;
    uint64_t high;
} xxh3_u128;

#define XXH3_P32_1 0x9E3779B1U
#define XXH3_P32_2 0x85EBCA77U
#define XXH3_P32_3 0xC2B2AE3DU
#define XXH3_P64_1 0x9E3779B185EBCA87ULL
#define XXH3_P64_2 0xC2B2AE3D27D4EB4FULL
#define XXH3_P64_3 0x165667B19E3779F9ULL
#define XXH3_P64_4 0x85EBCA77C2B2AE63ULL
#define XXH3_P64_5 0x27D4EB2F165667C5ULL
#define XXH3_PMX_1 0x165667919E3779F9ULL
#define XXH3_PMX_2 0x9FB21C651E98DF25ULL

#define XXH3_SECRET_SIZE 192
#define XXH3_STRIPES_PER_BLOCK ((XXH3_SECRET_SIZE - 64) / 8) /* 16 */
#define XXH3_BLOCK_SIZE (64 * XXH3_STRIPES_PER_BLOCK)        /* 1024 */

static const uint8_t xxh3_default_secret[XXH3_SECRET_SIZE] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad,
    0x1c, 0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3,
    0x67, 0x1f, 0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc,
    0xff, 0x72, 0x21, 0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6,
    0x81, 0x3a, 0x26, 0x4c, 0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65,
    0x8b, 0x1b, 0x53, 0x2e, 0xa3, 0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19,
    0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8, 0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9,
    0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d, 0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31,
    0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64, 0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb,
    0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb, 0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0,
    0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e, 0x2b, 0x16, 0xbe, 0x58, 0x7d,
    0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce, 0x45, 0xcb, 0x3a, 0x8f,
    0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

/* Little-endian reads: the specification reads input and secret that way on every host. */
static inline uint64_t
xxh3_read64(const uint8_t *p)
{
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

static inline uint32_t
xxh3_read32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline void
xxh3_write64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline uint32_t
xxh3_swap32(uint32_t x)
{
    return ((x << 24) & 0xff000000U) | ((x << 8) & 0x00ff0000U) | ((x >> 8) & 0x0000ff00U) |
           ((x >> 24) & 0x000000ffU);
}

static inline uint64_t
xxh3_swap64(uint64_t x)
{
    return ((uint64_t)xxh3_swap32((uint32_t)x) << 32) | xxh3_swap32((uint32_t)(x >> 32));
}

static inline uint32_t
xxh3_rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

/* The full 128-bit product of two 64-bit values. */
static inline xxh3_u128
xxh3_mul128(uint64_t a, uint64_t b)
{
    xxh3_u128 r;
#if defined(__SIZEOF_INT128__)
    unsigned __int128 p = (unsigned __int128)a * b;
    r.low = (uint64_t)p;
    r.high = (uint64_t)(p >> 64);
#else
    uint64_t lo_lo = (a & 0xFFFFFFFFULL) * (b & 0xFFFFFFFFULL);
    uint64_t hi_lo = (a >> 32) * (b & 0xFFFFFFFFULL);
    uint64_t lo_hi = (a & 0xFFFFFFFFULL) * (b >> 32);
    uint64_t hi_hi = (a >> 32) * (b >> 32);
    uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFULL) + lo_hi;
    r.high = (hi_lo >> 32) + (cross >> 32) + hi_hi;
    r.low = (cross << 32) | (lo_lo & 0xFFFFFFFFULL);
#endif
    return r;
}

static inline uint64_t
xxh3_fold64(uint64_t a, uint64_t b)
{
    xxh3_u128 p = xxh3_mul128(a, b);
    return p.low ^ p.high;
}

static inline uint64_t
xxh3_avalanche(uint64_t x)
{
    x ^= x >> 37;
    x *= XXH3_PMX_1;
    return x ^ (x >> 32);
}

static inline uint64_t
xxh3_avalanche_xxh64(uint64_t x)
{
    x ^= x >> 33;
    x *= XXH3_P64_2;
    x ^= x >> 29;
    x *= XXH3_P64_3;
    return x ^ (x >> 32);
}

/* --- 0 to 16 bytes ------------------------------------------------------------------------ */

static xxh3_u128
xxh3_128_0to16(const uint8_t *in, size_t len, const uint8_t *secret, uint64_t seed)
{
    xxh3_u128 r;
    if (len > 8) {
        uint64_t first = xxh3_read64(in), last = xxh3_read64(in + len - 8);
        uint64_t v1 = ((xxh3_read64(secret + 32) ^ xxh3_read64(secret + 40)) - seed) ^ first ^ last;
        uint64_t v2 = ((xxh3_read64(secret + 48) ^ xxh3_read64(secret + 56)) + seed) ^ last;
        xxh3_u128 m = xxh3_mul128(v1, XXH3_P64_1);
        uint64_t low = m.low + ((uint64_t)(len - 1) << 54);
        uint64_t high = m.high + v2 + (uint64_t)(uint32_t)v2 * (XXH3_P32_2 - 1);
        low ^= xxh3_swap64(high);
        xxh3_u128 m2 = xxh3_mul128(low, XXH3_P64_2);
        r.low = xxh3_avalanche(m2.low);
        r.high = xxh3_avalanche(m2.high + high * XXH3_P64_2);
        return r;
    }
    if (len >= 4) {
        uint32_t first = xxh3_read32(in), last = xxh3_read32(in + len - 4);
        uint64_t modified = seed ^ ((uint64_t)xxh3_swap32((uint32_t)seed) << 32);
        uint64_t combined = (uint64_t)first | ((uint64_t)last << 32);
        uint64_t value =
            ((xxh3_read64(secret + 16) ^ xxh3_read64(secret + 24)) + modified) ^ combined;
        xxh3_u128 m = xxh3_mul128(value, XXH3_P64_1 + ((uint64_t)len << 2));
        uint64_t high = m.high + (m.low << 1);
        uint64_t low = m.low ^ (high >> 3);
        low ^= low >> 35;
        low *= XXH3_PMX_2;
        low ^= low >> 28;
        r.low = low;
        r.high = xxh3_avalanche(high);
        return r;
    }
    if (len > 0) {
        uint32_t combined = (uint32_t)in[len - 1] | ((uint32_t)len << 8) |
                            ((uint32_t)in[0] << 16) | ((uint32_t)in[len >> 1] << 24);
        uint64_t low = ((uint64_t)(xxh3_read32(secret) ^ xxh3_read32(secret + 4)) + seed) ^
                       (uint64_t)combined;
        uint64_t high =
            ((uint64_t)(xxh3_read32(secret + 8) ^ xxh3_read32(secret + 12)) - seed) ^
            (uint64_t)xxh3_rotl32(xxh3_swap32(combined), 13);
        r.low = xxh3_avalanche_xxh64(low);
        r.high = xxh3_avalanche_xxh64(high);
        return r;
    }
    r.low = xxh3_avalanche_xxh64(seed ^ xxh3_read64(secret + 64) ^ xxh3_read64(secret + 72));
    r.high = xxh3_avalanche_xxh64(seed ^ xxh3_read64(secret + 80) ^ xxh3_read64(secret + 88));
    return r;
}

/* --- 17 to 240 bytes ---------------------------------------------------------------------- */

static inline uint64_t
xxh3_mix16(const uint8_t *in, const uint8_t *secret, uint64_t seed)
{
    return xxh3_fold64(xxh3_read64(in) ^ (xxh3_read64(secret) + seed),
                       xxh3_read64(in + 8) ^ (xxh3_read64(secret + 8) - seed));
}

static inline void
xxh3_mix32(uint64_t acc[2], const uint8_t *in1, const uint8_t *in2, const uint8_t *secret,
           uint64_t seed)
{
    acc[0] += xxh3_mix16(in1, secret, seed);
    acc[1] += xxh3_mix16(in2, secret + 16, seed);
    acc[0] ^= xxh3_read64(in2) + xxh3_read64(in2 + 8);
    acc[1] ^= xxh3_read64(in1) + xxh3_read64(in1 + 8);
}

static xxh3_u128
xxh3_128_17to240(const uint8_t *in, size_t len, const uint8_t *secret, uint64_t seed)
{
    uint64_t acc[2] = {(uint64_t)len * XXH3_P64_1, 0};
    if (len <= 128) {
        ptrdiff_t rounds = (ptrdiff_t)((len - 1) >> 5) + 1;
        for (ptrdiff_t i = rounds - 1; i >= 0; i--) {
            xxh3_mix32(acc, in + 16 * i, in + len - 16 * i - 16, secret + 32 * i, seed);
        }
    }
    else {
        size_t chunks = len >> 5;
        for (size_t i = 0; i < 4; i++) {
            xxh3_mix32(acc, in + 32 * i, in + 32 * i + 16, secret + 32 * i, seed);
        }
        acc[0] = xxh3_avalanche(acc[0]);
        acc[1] = xxh3_avalanche(acc[1]);
        for (size_t i = 4; i < chunks; i++) {
            xxh3_mix32(acc, in + 32 * i, in + 32 * i + 16, secret + 32 * (i - 4) + 3, seed);
        }
        xxh3_mix32(acc, in + len - 16, in + len - 32, secret + 103, (uint64_t)0 - seed);
    }
    xxh3_u128 r;
    r.low = xxh3_avalanche(acc[0] + acc[1]);
    r.high = (uint64_t)0 - xxh3_avalanche(acc[0] * XXH3_P64_1 + acc[1] * XXH3_P64_4 +
                                          ((uint64_t)len - seed) * XXH3_P64_2);
    return r;
}

/* --- over 240 bytes ----------------------------------------------------------------------- */

static inline void
xxh3_accumulate(uint64_t acc[8], const uint8_t *stripe, const uint8_t *secret)
{
    for (int i = 0; i < 8; i++) {
        uint64_t data = xxh3_read64(stripe + 8 * i);
        uint64_t value = data ^ xxh3_read64(secret + 8 * i);
        acc[i ^ 1] += data;
        acc[i] += (value & 0xFFFFFFFFULL) * (value >> 32);
    }
}

static inline void
xxh3_scramble(uint64_t acc[8], const uint8_t *secret)
{
    for (int i = 0; i < 8; i++) {
        uint64_t a = acc[i];
        a ^= a >> 47;
        a ^= xxh3_read64(secret + 8 * i);
        acc[i] = a * XXH3_P32_1;
    }
}

static uint64_t
xxh3_merge(const uint64_t acc[8], const uint8_t *secret, uint64_t start)
{
    uint64_t result = start;
    for (int i = 0; i < 4; i++) {
        result += xxh3_fold64(acc[2 * i] ^ xxh3_read64(secret + 16 * i),
                              acc[2 * i + 1] ^ xxh3_read64(secret + 16 * i + 8));
    }
    return xxh3_avalanche(result);
}

static xxh3_u128
xxh3_128_long(const uint8_t *in, size_t len, const uint8_t *secret)
{
    uint64_t acc[8] = {XXH3_P32_3, XXH3_P64_1, XXH3_P64_2, XXH3_P64_3,
                       XXH3_P64_4, XXH3_P32_2, XXH3_P64_5, XXH3_P32_1};
    /* Full blocks, leaving the last block (full or not) to the end. */
    size_t blocks = (len - 1) / XXH3_BLOCK_SIZE;
    for (size_t b = 0; b < blocks; b++) {
        const uint8_t *block = in + b * XXH3_BLOCK_SIZE;
        for (size_t n = 0; n < XXH3_STRIPES_PER_BLOCK; n++) {
            xxh3_accumulate(acc, block + 64 * n, secret + 8 * n);
        }
        xxh3_scramble(acc, secret + XXH3_SECRET_SIZE - 64);
    }
    const uint8_t *last = in + blocks * XXH3_BLOCK_SIZE;
    size_t stripes = (len - blocks * XXH3_BLOCK_SIZE - 1) / 64;
    for (size_t n = 0; n < stripes; n++) {
        xxh3_accumulate(acc, last + 64 * n, secret + 8 * n);
    }
    xxh3_accumulate(acc, in + len - 64, secret + XXH3_SECRET_SIZE - 71);
    xxh3_u128 r;
    r.low = xxh3_merge(acc, secret + 11, (uint64_t)len * XXH3_P64_1);
    r.high = xxh3_merge(acc, secret + XXH3_SECRET_SIZE - 75, ~((uint64_t)len * XXH3_P64_2));
    return r;
}

/* XXH3-128 of `len` bytes at `in` with `seed`, equal to XXH3_128bits_withSeed. */
static xxh3_u128
xxh3_128_seeded(const uint8_t *in, size_t len, uint64_t seed)
{
    if (len <= 16) {
        return xxh3_128_0to16(in, len, xxh3_default_secret, seed);
    }
    if (len <= 240) {
        return xxh3_128_17to240(in, len, xxh3_default_secret, seed);
    }
    if (seed == 0) {
        return xxh3_128_long(in, len, xxh3_default_secret);
    }
    /* A long input with a seed hashes with a secret derived from it. */
    uint8_t secret[XXH3_SECRET_SIZE];
    for (int i = 0; i < XXH3_SECRET_SIZE / 16; i++) {
        xxh3_write64(secret + 16 * i, xxh3_read64(xxh3_default_secret + 16 * i) + seed);
        xxh3_write64(secret + 16 * i + 8, xxh3_read64(xxh3_default_secret + 16 * i + 8) - seed);
    }
    return xxh3_128_long(in, len, secret);
}

#endif /* LLMCACHE_XXH3_H */
