/* Merkle trees as RFC 6962 and RFC 9162 (Certificate Transparency) define
 * them: the building block of signed receipts. A log of receipts is a list
 * of leaves; its root commits to all of them, an inclusion proof shows that
 * one leaf is in a tree of a given size, and a consistency proof shows that
 * a tree of size m is a prefix of a tree of size n.
 *
 * Hashes are SHA-256, 32 bytes. A leaf's hash is SHA-256(0x00 || leaf) and
 * an interior node's is SHA-256(0x01 || left || right); the different first
 * byte keeps a leaf from passing for a node. The empty tree's root is
 * SHA-256 of the empty string.
 *
 * Proofs go into arrays of the stated maximum size that the caller
 * provides, and recursion depth is at most 64; only oe_merkle_batch
 * allocates (its nodes).
 */
#ifndef OE_MERKLE_H
#define OE_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Bytes in one hash. */
#define OE_MERKLE_HASH_LEN 32

/* Most hashes in an inclusion proof: one per level of a tree of up to
 * 2^64 - 1 leaves. */
#define OE_MERKLE_MAX_INCLUSION 64

/* Most hashes in a consistency proof: one per level, plus the hash of the
 * old tree's last subtree when that is not already on the path. */
#define OE_MERKLE_MAX_CONSISTENCY 65

/* SHA-256(0x00 || leaf[0..len)) into out. leaf may be NULL when len is 0. */
void oe_merkle_leaf_hash(const void *leaf, size_t len, unsigned char out[32]);

/* SHA-256(0x01 || l || r) into out. out may be l or r. */
void oe_merkle_node_hash(const unsigned char l[32], const unsigned char r[32],
                         unsigned char out[32]);

/* The Merkle Tree Hash (RFC 6962 §2.1) of the n leaf hashes leaves[0..n)
 * into out; n == 0 gives the empty tree's root. Returns OE_OK, or OE_EINVAL
 * when leaves is NULL and n > 0, or out is NULL. */
oe_rc oe_merkle_root(const unsigned char (*leaves)[32], uint64_t n, unsigned char out[32]);

/* An append-only tree that keeps only the roots of its perfect subtrees,
 * largest (leftmost) first: one per set bit of size, so at most 64. A
 * writer can append and compute roots without keeping the leaves. */
typedef struct oe_merkle_compact {
    uint64_t size;                /* leaves appended */
    unsigned char hashes[64][32]; /* popcount(size) subtree roots, left to right */
} oe_merkle_compact;

/* An empty tree. */
void oe_merkle_compact_init(oe_merkle_compact *c);

/* Appends one leaf hash. Returns OE_OK, OE_EINVAL for NULL arguments, or
 * OE_ELIMIT when the tree already holds 2^64 - 1 leaves. */
oe_rc oe_merkle_compact_append(oe_merkle_compact *c, const unsigned char leaf_hash[32]);

/* The root of the leaves appended so far, equal to oe_merkle_root of the
 * same leaf hashes. Returns OE_OK, or OE_EINVAL for NULL arguments. */
oe_rc oe_merkle_compact_root(const oe_merkle_compact *c, unsigned char out[32]);

/* The inclusion proof (RFC 9162 §2.1.3.1) of leaf index in the tree of the
 * n leaf hashes leaves[0..n): the sibling hashes from the leaf up, at most
 * OE_MERKLE_MAX_INCLUSION, into proof, their number into *len. Returns
 * OE_OK, or OE_EINVAL when index >= n or an argument is NULL. */
oe_rc oe_merkle_inclusion_proof(const unsigned char (*leaves)[32], uint64_t n, uint64_t index,
                                unsigned char proof[OE_MERKLE_MAX_INCLUSION][32], size_t *len);

/* Where the proof generators below read the hash of a subtree: stores the
 * MTH (RFC 6962 §2.1) of leaves [begin, end) into out, begin < end, and
 * returns OE_OK, or a failure that the generator passes on. */
typedef oe_rc (*oe_merkle_subtree_fn)(void *ctx, uint64_t begin, uint64_t end,
                                      unsigned char out[32]);

/* oe_merkle_inclusion_proof over any source of subtree hashes, for a tree
 * whose leaves are not all at hand (oe_merkle_batch). */
oe_rc oe_merkle_inclusion_proof_from(oe_merkle_subtree_fn subtree, void *ctx, uint64_t n,
                                     uint64_t index,
                                     unsigned char proof[OE_MERKLE_MAX_INCLUSION][32], size_t *len);

/* Checks that leaf_hash is leaf index of the tree of the given size whose
 * root is root, by the algorithm of RFC 9162 §2.1.3.2 over the len hashes
 * of proof. Returns OE_OK when it is, OE_EINVAL when it is not (index >=
 * size, a proof of the wrong length, a root that does not match) or an
 * argument is NULL. */
oe_rc oe_merkle_verify_inclusion(const unsigned char leaf_hash[32], uint64_t index, uint64_t size,
                                 const unsigned char (*proof)[32], size_t len,
                                 const unsigned char root[32]);

/* The consistency proof (RFC 9162 §2.1.4.1) between the first m leaves and
 * all n leaf hashes leaves[0..n), 0 < m <= n: at most
 * OE_MERKLE_MAX_CONSISTENCY hashes into proof, their number into *len
 * (0 when m == n). Returns OE_OK, or OE_EINVAL when m == 0, m > n or an
 * argument is NULL. */
oe_rc oe_merkle_consistency_proof(const unsigned char (*leaves)[32], uint64_t n, uint64_t m,
                                  unsigned char proof[OE_MERKLE_MAX_CONSISTENCY][32], size_t *len);

/* oe_merkle_consistency_proof over any source of subtree hashes. */
oe_rc oe_merkle_consistency_proof_from(oe_merkle_subtree_fn subtree, void *ctx, uint64_t n,
                                       uint64_t m,
                                       unsigned char proof[OE_MERKLE_MAX_CONSISTENCY][32],
                                       size_t *len);

/* Checks that the tree of size m with root old_root is a prefix of the tree
 * of size n with root new_root, by the algorithm of RFC 9162 §2.1.4.2 over
 * the len hashes of proof. m == n holds with an empty proof when the roots
 * are equal. Returns OE_OK when the proof holds, OE_EINVAL when it does not
 * (m == 0, m > n, a proof of the wrong length, a root that does not match)
 * or an argument is NULL. */
oe_rc oe_merkle_verify_consistency(uint64_t m, uint64_t n, const unsigned char old_root[32],
                                   const unsigned char new_root[32],
                                   const unsigned char (*proof)[32], size_t len);

/* The tree right after a writer appended a batch: leaves [from, size)
 * whose hashes it has, on top of leaves [0, from) that it knows only by
 * their compact range (the state before the batch). It keeps every full
 * node that covers a new leaf, about 2 * (size - from) hashes, so that the
 * inclusion proof of each new leaf costs O(log size) look-ups, and no
 * earlier leaf has to be read. */
typedef struct oe_merkle_batch {
    oe_merkle_compact base; /* the tree of leaves [0, from) */
    uint64_t size;
    /* level[L][j - (from >> L)]: the full node j of height L (leaves
     * [j << L, (j + 1) << L)), for from >> L <= j < size >> L. */
    unsigned char (*level[64])[32];
    /* One block: every level's nodes (full of them), then base's subtree
     * roots (64 places), then the right edge's subtrees [edge[t], size)
     * (nedge of them, t from the root down): every hash an inclusion
     * path of a new leaf holds. */
    unsigned char (*nodes)[32];
    size_t full;
    uint64_t edge[64];
    int nedge;
    /* The base64 of each hash of nodes (a proof's wire form: 44
     * characters, no terminator), made once per batch. */
    char (*text)[44];
} oe_merkle_batch;

/* Builds b from the tree before the batch (base, of size from) and the n
 * leaf hashes appended. Returns OE_OK, OE_EINVAL for NULL arguments or a
 * tree that would pass 2^64 - 1 leaves, or OE_ENOMEM. */
oe_rc oe_merkle_batch_build(oe_merkle_batch *b, const oe_merkle_compact *base,
                            const unsigned char (*leaves)[32], uint64_t n);

/* The root of the whole tree (of b->size leaves). */
oe_rc oe_merkle_batch_root(const oe_merkle_batch *b, unsigned char out[32]);

/* The compact range of b's whole tree (as oe_merkle_compact_append of
 * every leaf would leave it), from its nodes: no hash is computed. */
void oe_merkle_batch_compact(const oe_merkle_batch *b, oe_merkle_compact *out);

/* The inclusion proof of new leaf index (from <= index < size) in the
 * whole tree, as oe_merkle_inclusion_proof orders it, by places in
 * b->nodes and b->text: no hash is computed. Returns OE_OK, or OE_EINVAL
 * for an index outside the batch. */
oe_rc oe_merkle_batch_path(const oe_merkle_batch *b, uint64_t index,
                           size_t path[OE_MERKLE_MAX_INCLUSION], size_t *len);

/* Releases b's nodes (b may be zeroed or built). */
void oe_merkle_batch_free(oe_merkle_batch *b);

#endif
