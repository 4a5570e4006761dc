/* RFC 6962 / RFC 9162 Merkle trees: see merkle.h. */
#include "merkle.h"

#include <stdlib.h>
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

/* A source over an array of leaf hashes. */
static oe_rc array_subtree(void *ctx, uint64_t begin, uint64_t end, unsigned char out[32])
{
    const unsigned char(*leaves)[32] = ctx;
    mth(leaves + begin, end - begin, out);
    return OE_OK;
}

oe_rc oe_merkle_inclusion_proof(const unsigned char (*leaves)[32], uint64_t n, uint64_t index,
                                unsigned char proof[OE_MERKLE_MAX_INCLUSION][32], size_t *len)
{
    if (!leaves)
        return OE_EINVAL;
    return oe_merkle_inclusion_proof_from(array_subtree, (void *)leaves, n, index, proof, len);
}

oe_rc oe_merkle_inclusion_proof_from(oe_merkle_subtree_fn subtree, void *ctx, uint64_t n,
                                     uint64_t index,
                                     unsigned char proof[OE_MERKLE_MAX_INCLUSION][32], size_t *len)
{
    if (!subtree || !proof || !len || index >= n)
        return OE_EINVAL;
    /* PATH(m, D[lo:hi]) of RFC 9162 §2.1.3.1, unrolled: descend towards
     * the leaf, taking the other side's hash at each level. */
    uint64_t lo = 0, size = n;
    size_t count = 0;
    oe_rc rc = OE_OK;
    while (size > 1 && rc == OE_OK) {
        uint64_t k = split_point(size);
        if (index - lo < k) {
            rc = subtree(ctx, lo + k, lo + size, proof[count++]);
            size = k;
        } else {
            rc = subtree(ctx, lo, lo + k, proof[count++]);
            lo += k;
            size -= k;
        }
    }
    if (rc != OE_OK)
        return rc;
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
    if (!leaves)
        return OE_EINVAL;
    return oe_merkle_consistency_proof_from(array_subtree, (void *)leaves, n, m, proof, len);
}

oe_rc oe_merkle_consistency_proof_from(oe_merkle_subtree_fn subtree, void *ctx, uint64_t n,
                                       uint64_t m,
                                       unsigned char proof[OE_MERKLE_MAX_CONSISTENCY][32],
                                       size_t *len)
{
    if (!subtree || !proof || !len || m == 0 || m > n)
        return OE_EINVAL;
    /* SUBPROOF(m, D[lo:lo+size], b) of RFC 9162 §2.1.4.1, unrolled: b stays
     * true while the old tree's root is itself a node on the path, which
     * the verifier already has. */
    uint64_t lo = 0, size = n;
    int b = 1;
    size_t count = 0;
    oe_rc rc = OE_OK;
    while (m != size && rc == OE_OK) {
        uint64_t k = split_point(size);
        if (m <= k) {
            rc = subtree(ctx, lo + k, lo + size, proof[count++]);
            size = k;
        } else {
            rc = subtree(ctx, lo, lo + k, proof[count++]);
            lo += k;
            size -= k;
            m -= k;
            b = 0;
        }
    }
    if (rc == OE_OK && !b)
        rc = subtree(ctx, lo, lo + size, proof[count++]);
    if (rc != OE_OK)
        return rc;
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

/* Where the perfect subtree [begin, begin + 2^l) of b's tree is in
 * b->nodes: a level's node when it holds a new leaf, else one of base's
 * subtree roots; (size_t)-1 for any other (no path of a new leaf has one). */
static size_t perfect_place(const oe_merkle_batch *b, int l, uint64_t begin)
{
    uint64_t from = b->base.size, j = begin >> l;
    if (j >= (from >> l) && j < (b->size >> l))
        return (size_t)(b->level[l] - b->nodes) + (size_t)(j - (from >> l));
    /* base's subtree of height l, if it has one: leaves [from with the
     * bits below l + 1 cleared, + 2^l). */
    if (l < 63 && ((from >> l) & 1) && begin == ((from >> (l + 1)) << (l + 1)))
        return b->full + (size_t)__builtin_popcountll(from >> (l + 1));
    return (size_t)-1;
}

/* Where the subtree [begin, end) of b's tree that a path of a new leaf
 * holds is in b->nodes: perfect, or one of the right edge's. */
static size_t place(const oe_merkle_batch *b, uint64_t begin, uint64_t end)
{
    uint64_t n = end - begin;
    if ((n & (n - 1)) == 0)
        return perfect_place(b, __builtin_ctzll(n), begin);
    for (int t = 0; t < b->nedge && end == b->size; t++)
        if (b->edge[t] == begin)
            return b->full + 64 + (size_t)t;
    return (size_t)-1;
}

oe_rc oe_merkle_batch_build(oe_merkle_batch *b, const oe_merkle_compact *base,
                            const unsigned char (*leaves)[32], uint64_t n)
{
    if (!b || !base || (!leaves && n > 0) || n > UINT64_MAX - base->size)
        return OE_EINVAL;
    memset(b, 0, sizeof *b);
    b->base = *base;
    uint64_t from = base->size;
    b->size = from + n;
    size_t total = 0;
    for (int l = 0; l < 64; l++)
        total += (size_t)((b->size >> l) - (from >> l));
    b->full = total;
    if (!(b->nodes = malloc((total + 128) * sizeof *b->nodes)) ||
        !(b->text = malloc((total + 128) * sizeof *b->text))) {
        oe_merkle_batch_free(b);
        return OE_ENOMEM;
    }
    size_t at = 0;
    for (int l = 0; l < 64; l++) {
        b->level[l] = b->nodes + at;
        at += (size_t)((b->size >> l) - (from >> l));
    }
    int nbase = __builtin_popcountll(from);
    memcpy(b->nodes + total, base->hashes, (size_t)nbase * 32);
    if (n > 0)
        memcpy(b->level[0], leaves, (size_t)n * 32);
    for (int l = 1; l < 64; l++) {
        uint64_t lo = from >> l, hi = b->size >> l, below = from >> (l - 1);
        for (uint64_t j = lo; j < hi; j++) {
            const unsigned char *left, *right = b->level[l - 1][2 * j + 1 - below];
            if (2 * j >= below) {
                left = b->level[l - 1][2 * j - below];
            } else {
                /* Left of the batch: base's subtree of height l - 1 (bit
                 * l - 1 of from is set, or 2j would not be below it). */
                left = base->hashes[__builtin_popcountll(from >> l)];
            }
            oe_merkle_node_hash(left, right, b->level[l][j - lo]);
        }
    }
    /* The right edge: from the root down, the right subtree [edge[t],
     * size) of each subtree that is not perfect; the last one is. Their
     * hashes from the bottom up, each from its perfect left part and the
     * next. */
    if (n > 0) {
        uint64_t lo = 0, m = b->size;
        while (m & (m - 1)) {
            uint64_t k = split_point(m);
            lo += k;
            m -= k;
            b->edge[b->nedge++] = lo;
        }
        for (int t = b->nedge - 1; t >= 0; t--) {
            uint64_t len = b->size - b->edge[t];
            unsigned char *out = b->nodes[total + 64 + (size_t)t];
            if ((len & (len - 1)) == 0) {
                memcpy(out, b->nodes[perfect_place(b, __builtin_ctzll(len), b->edge[t])], 32);
            } else {
                uint64_t k = split_point(len);
                oe_merkle_node_hash(b->nodes[perfect_place(b, __builtin_ctzll(k), b->edge[t])],
                                    b->nodes[total + 64 + (size_t)t + 1], out);
            }
        }
    }
    char text[45];
    for (size_t i = 0; i < total + 128; i++) {
        if (i >= total + (size_t)nbase && i < total + 64)
            continue;
        if (i >= total + 64 + (size_t)b->nedge)
            break;
        oe_base64_encode(b->nodes[i], 32, text, sizeof text);
        memcpy(b->text[i], text, 44);
    }
    return OE_OK;
}

oe_rc oe_merkle_batch_root(const oe_merkle_batch *b, unsigned char out[32])
{
    if (!b || !out)
        return OE_EINVAL;
    if (b->size == b->base.size)
        return oe_merkle_compact_root(&b->base, out);
    uint64_t m = b->size;
    if ((m & (m - 1)) == 0) {
        memcpy(out, b->nodes[perfect_place(b, __builtin_ctzll(m), 0)], 32);
    } else {
        uint64_t k = split_point(m);
        oe_merkle_node_hash(b->nodes[perfect_place(b, __builtin_ctzll(k), 0)],
                            b->nodes[b->full + 64], out);
    }
    return OE_OK;
}

void oe_merkle_batch_compact(const oe_merkle_batch *b, oe_merkle_compact *out)
{
    if (b->size == b->base.size) {
        *out = b->base;
        return;
    }
    /* One perfect subtree per set bit of size, largest first: each holds
     * a new leaf (a level's node) or lies left of the batch (base's). */
    memset(out, 0, sizeof *out);
    out->size = b->size;
    uint64_t lo = 0;
    int k = 0;
    for (int l = 63; l >= 0; l--) {
        if (!((b->size >> l) & 1))
            continue;
        memcpy(out->hashes[k++], b->nodes[perfect_place(b, l, lo)], 32);
        lo += (uint64_t)1 << l;
    }
}

oe_rc oe_merkle_batch_path(const oe_merkle_batch *b, uint64_t index,
                           size_t path[OE_MERKLE_MAX_INCLUSION], size_t *len)
{
    if (!b || !path || !len || index < b->base.size || index >= b->size)
        return OE_EINVAL;
    /* PATH(m, D[lo:lo+n]) of RFC 9162 §2.1.3.1, unrolled, top down. */
    uint64_t lo = 0, n = b->size;
    size_t count = 0;
    while (n > 1) {
        uint64_t k = split_point(n);
        size_t at;
        if (index - lo < k) {
            at = place(b, lo + k, lo + n);
            n = k;
        } else {
            at = place(b, lo, lo + k);
            lo += k;
            n -= k;
        }
        if (at == (size_t)-1)
            return OE_EINVAL;
        path[count++] = at;
    }
    for (size_t i = 0; i < count / 2; i++) {
        size_t x = path[i];
        path[i] = path[count - 1 - i];
        path[count - 1 - i] = x;
    }
    *len = count;
    return OE_OK;
}

void oe_merkle_batch_free(oe_merkle_batch *b)
{
    if (!b)
        return;
    free(b->nodes);
    free(b->text);
    memset(b, 0, sizeof *b);
}
