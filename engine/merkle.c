/* RFC 6962 / RFC 9162 Merkle trees: see merkle.h. */
#include "merkle.h"

#include <string.h>

#include "digest.h"

void oe_merkle_leaf_hash(const void *leaf, size_t len, unsigned char out[32])
{
    static const unsigned char prefix = 0x00;
    const void *parts[2] = {&prefix, len ? leaf : &prefix};
    size_t lens[2] = {1, len};
    oe_sha256_parts(parts, lens, 2, out);
}

void oe_merkle_node_hash(const unsigned char l[32], const unsigned char r[32],
                         unsigned char out[32])
{
    static const unsigned char prefix = 0x01;
    const void *parts[3] = {&prefix, l, r};
    size_t lens[3] = {1, 32, 32};
    oe_sha256_parts(parts, lens, 3, out);
}

/* The largest power of two smaller than n, for n >= 2: where RFC 6962
 * splits a tree of n leaves. */
static uint64_t split_point(uint64_t n)
{
    return (uint64_t)1 << (63 - __builtin_clzll(n - 1));
}

/* MTH of leaves[0..n), recursing at most 64 levels deep. */
static void mth(const unsigned char (*leaves)[32], uint64_t n, unsigned char out[32])
{
    if (n == 0) {
        oe_sha256("", 0, out);
    } else if (n == 1) {
        memcpy(out, leaves[0], 32);
    } else {
        uint64_t k = split_point(n);
        unsigned char l[32], r[32];
        mth(leaves, k, l);
        mth(leaves + k, n - k, r);
        oe_merkle_node_hash(l, r, out);
    }
}

oe_rc oe_merkle_root(const unsigned char (*leaves)[32], uint64_t n, unsigned char out[32])
{
    if ((!leaves && n > 0) || !out)
        return OE_EINVAL;
    mth(leaves, n, out);
    return OE_OK;
}

void oe_merkle_compact_init(oe_merkle_compact *c)
{
    memset(c, 0, sizeof *c);
}

oe_rc oe_merkle_compact_append(oe_merkle_compact *c, const unsigned char leaf_hash[32])
{
    if (!c || !leaf_hash)
        return OE_EINVAL;
    if (c->size == UINT64_MAX)
        return OE_ELIMIT;
    /* Each trailing one bit of size is a perfect subtree as large as the
     * one being carried: merge them, as when adding one in binary. */
    int k = __builtin_popcountll(c->size);
    unsigned char h[32];
    memcpy(h, leaf_hash, 32);
    for (uint64_t s = c->size; s & 1; s >>= 1) {
        k--;
        oe_merkle_node_hash(c->hashes[k], h, h);
    }
    memcpy(c->hashes[k], h, 32);
    c->size++;
    return OE_OK;
}

oe_rc oe_merkle_compact_root(const oe_merkle_compact *c, unsigned char out[32])
{
    if (!c || !out)
        return OE_EINVAL;
    if (c->size == 0) {
        oe_sha256("", 0, out);
        return OE_OK;
    }
    /* The subtrees are the RFC 6962 splits from the left: fold them from
     * the right. */
    int k = __builtin_popcountll(c->size);
    unsigned char h[32];
    memcpy(h, c->hashes[k - 1], 32);
    for (int i = k - 2; i >= 0; i--)
        oe_merkle_node_hash(c->hashes[i], h, h);
    memcpy(out, h, 32);
    return OE_OK;
}

/* Reverses proof[0..len): the walks below go from the root down, and
 * proofs list hashes from the leaf up. */
static void reverse(unsigned char (*proof)[32], size_t len)
{
    for (size_t i = 0, j = len; i + 1 < j; i++, j--) {
        unsigned char t[32];
        memcpy(t, proof[i], 32);
        memcpy(proof[i], proof[j - 1], 32);
        memcpy(proof[j - 1], t, 32);
    }
}

oe_rc oe_merkle_inclusion_proof(const unsigned char (*leaves)[32], uint64_t n, uint64_t index,
                                unsigned char proof[OE_MERKLE_MAX_INCLUSION][32], size_t *len)
{
    if (!leaves || !proof || !len || index >= n)
        return OE_EINVAL;
    /* PATH(m, D[lo:hi]) of RFC 9162 §2.1.3.1, unrolled: descend towards
     * the leaf, taking the other side's hash at each level. */
    uint64_t lo = 0, size = n;
    size_t count = 0;
    while (size > 1) {
        uint64_t k = split_point(size);
        if (index - lo < k) {
            mth(leaves + lo + k, size - k, proof[count++]);
            size = k;
        } else {
            mth(leaves + lo, k, proof[count++]);
            lo += k;
            size -= k;
        }
    }
    reverse(proof, count);
    *len = count;
    return OE_OK;
}

oe_rc oe_merkle_verify_inclusion(const unsigned char leaf_hash[32], uint64_t index, uint64_t size,
                                 const unsigned char (*proof)[32], size_t len,
                                 const unsigned char root[32])
{
    if (!leaf_hash || !root || (!proof && len > 0))
        return OE_EINVAL;
    if (index >= size || len > OE_MERKLE_MAX_INCLUSION)
        return OE_EINVAL;
    uint64_t fn = index, sn = size - 1;
    unsigned char r[32];
    memcpy(r, leaf_hash, 32);
    for (size_t i = 0; i < len; i++) {
        if (sn == 0)
            return OE_EINVAL;
        if ((fn & 1) || fn == sn) {
            oe_merkle_node_hash(proof[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            oe_merkle_node_hash(r, proof[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0 || memcmp(r, root, 32) != 0)
        return OE_EINVAL;
    return OE_OK;
}

oe_rc oe_merkle_consistency_proof(const unsigned char (*leaves)[32], uint64_t n, uint64_t m,
                                  unsigned char proof[OE_MERKLE_MAX_CONSISTENCY][32], size_t *len)
{
    if (!leaves || !proof || !len || m == 0 || m > n)
        return OE_EINVAL;
    /* SUBPROOF(m, D[lo:lo+size], b) of RFC 9162 §2.1.4.1, unrolled: b stays
     * true while the old tree's root is itself a node on the path, which
     * the verifier already has. */
    uint64_t lo = 0, size = n;
    int b = 1;
    size_t count = 0;
    while (m != size) {
        uint64_t k = split_point(size);
        if (m <= k) {
            mth(leaves + lo + k, size - k, proof[count++]);
            size = k;
        } else {
            mth(leaves + lo, k, proof[count++]);
            lo += k;
            size -= k;
            m -= k;
            b = 0;
        }
    }
    if (!b)
        mth(leaves + lo, size, proof[count++]);
    reverse(proof, count);
    *len = count;
    return OE_OK;
}

oe_rc oe_merkle_verify_consistency(uint64_t m, uint64_t n, const unsigned char old_root[32],
                                   const unsigned char new_root[32],
                                   const unsigned char (*proof)[32], size_t len)
{
    if (!old_root || !new_root || (!proof && len > 0))
        return OE_EINVAL;
    if (m == 0 || m > n || len > OE_MERKLE_MAX_CONSISTENCY)
        return OE_EINVAL;
    if (m == n)
        return len == 0 && memcmp(old_root, new_root, 32) == 0 ? OE_OK : OE_EINVAL;
    if (len == 0)
        return OE_EINVAL;
    /* When m is a power of two the old root is a node of the new tree and
     * the proof leaves it out: the path starts with it instead. */
    int pow2 = (m & (m - 1)) == 0;
    size_t total = len + (size_t)pow2;
#define PATH(i) (pow2 ? ((i) == 0 ? old_root : proof[(i)-1]) : proof[(i)])
    uint64_t fn = m - 1, sn = n - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    unsigned char fr[32], sr[32];
    memcpy(fr, PATH(0), 32);
    memcpy(sr, PATH(0), 32);
    for (size_t i = 1; i < total; i++) {
        const unsigned char *c = PATH(i);
        if (sn == 0)
            return OE_EINVAL;
        if ((fn & 1) || fn == sn) {
            oe_merkle_node_hash(c, fr, fr);
            oe_merkle_node_hash(c, sr, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            oe_merkle_node_hash(sr, c, sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
#undef PATH
    if (sn != 0 || memcmp(fr, old_root, 32) != 0 || memcmp(sr, new_root, 32) != 0)
        return OE_EINVAL;
    return OE_OK;
}
