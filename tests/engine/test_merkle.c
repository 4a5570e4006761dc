/* Tests engine/merkle.c: RFC 6962 reference roots and proofs, then the
 * properties of roots, compact trees, inclusion and consistency proofs for
 * every tree size from 1 to 70. */
#include "engine/digest.h"
#include "engine/merkle.h"
#include "engine/status.h"
#include "tests/test.h"

static int hash_eq_hex(const unsigned char h[32], const char *hex)
{
    char s[65];
    oe_hex_encode(h, 32, s);
    if (strcmp(s, hex) != 0) {
        fprintf(stderr, "    got      %s\n    expected %s\n", s, hex);
        return 0;
    }
    return 1;
}

/* The RFC 6962 test data: leaf inputs and the roots of the trees of their
 * first 0 to 8 leaves, as published in github.com/transparency-dev/merkle
 * testonly/constants.go (and repeated in proof/verify_test.go). */
static const char *const ref_leaves[8] = {
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
};

static const char *const ref_roots[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static void ref_leaf_hashes(unsigned char out[8][32])
{
    for (int i = 0; i < 8; i++) {
        unsigned char buf[16];
        size_t n = test_unhex(ref_leaves[i], buf);
        oe_merkle_leaf_hash(buf, n, out[i]);
    }
}

/* Proofs from github.com/transparency-dev/merkle proof/verify_test.go
 * (inclusionProofs and consistencyProofs) over the leaves above. That file
 * numbers leaves from 1; index here is from 0. */
typedef struct {
    uint64_t a, b; /* index and size, or m and n */
    int len;
    const char *proof[3];
} ref_proof;

static const ref_proof ref_inclusion[] = {
    {0,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {5,
     8,
     3,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2, 3, 1, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {1,
     5,
     3,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {0, 1, 0, {NULL}},
};

static const ref_proof ref_consistency[] = {
    {1, 1, 0, {NULL}},
    {1,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2,
     5,
     2,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     7,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

static void test_hashes(void)
{
    unsigned char h[32], l[32], r[32];
    /* SHA-256 of the single byte 0x00: the hash of the empty leaf. */
    oe_merkle_leaf_hash(NULL, 0, h);
    ASSERT_TRUE(hash_eq_hex(h, ref_roots[1]));
    /* A node is SHA-256 over 0x01 || l || r: compare with the digest of
     * the same 65 bytes, also with out aliasing an input. */
    unsigned char buf[65];
    memset(l, 0xaa, 32);
    memset(r, 0x55, 32);
    buf[0] = 0x01;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    unsigned char want[32];
    oe_sha256(buf, sizeof buf, want);
    oe_merkle_node_hash(l, r, h);
    ASSERT_TRUE(memcmp(h, want, 32) == 0);
    oe_merkle_node_hash(l, r, l);
    ASSERT_TRUE(memcmp(l, want, 32) == 0);
}

static void test_reference_roots(void)
{
    unsigned char leaves[8][32], root[32];
    ref_leaf_hashes(leaves);
    oe_merkle_compact c;
    oe_merkle_compact_init(&c);
    for (uint64_t n = 0; n <= 8; n++) {
        ASSERT_EQ(oe_merkle_root((const unsigned char(*)[32])leaves, n, root), OE_OK);
        ASSERT_TRUE(hash_eq_hex(root, ref_roots[n]));
        ASSERT_EQ(oe_merkle_compact_root(&c, root), OE_OK);
        ASSERT_TRUE(hash_eq_hex(root, ref_roots[n]));
        if (n < 8)
            ASSERT_EQ(oe_merkle_compact_append(&c, leaves[n]), OE_OK);
    }
    ASSERT_EQ(oe_merkle_root(NULL, 0, root), OE_OK);
    ASSERT_TRUE(hash_eq_hex(root, ref_roots[0]));
    ASSERT_EQ(oe_merkle_root(NULL, 1, root), OE_EINVAL);
}

static void test_reference_inclusion(void)
{
    unsigned char leaves[8][32], root[32];
    ref_leaf_hashes(leaves);
    for (size_t i = 0; i < sizeof ref_inclusion / sizeof ref_inclusion[0]; i++) {
        const ref_proof *v = &ref_inclusion[i];
        unsigned char proof[OE_MERKLE_MAX_INCLUSION][32], want[3][32];
        size_t len = 99;
        for (int j = 0; j < v->len; j++)
            test_unhex(v->proof[j], want[j]);
        ASSERT_EQ(
            oe_merkle_inclusion_proof((const unsigned char(*)[32])leaves, v->b, v->a, proof, &len),
            OE_OK);
        ASSERT_EQ(len, v->len);
        for (int j = 0; j < v->len && (size_t)j < len; j++)
            ASSERT_TRUE(hash_eq_hex(proof[j], v->proof[j]));
        test_unhex(ref_roots[v->b], root);
        ASSERT_EQ(oe_merkle_verify_inclusion(leaves[v->a], v->a, v->b,
                                             (const unsigned char(*)[32])want, (size_t)v->len,
                                             root),
                  OE_OK);
    }
}

static void test_reference_consistency(void)
{
    unsigned char leaves[8][32], old_root[32], new_root[32];
    ref_leaf_hashes(leaves);
    for (size_t i = 0; i < sizeof ref_consistency / sizeof ref_consistency[0]; i++) {
        const ref_proof *v = &ref_consistency[i];
        unsigned char proof[OE_MERKLE_MAX_CONSISTENCY][32], want[3][32];
        size_t len = 99;
        for (int j = 0; j < v->len; j++)
            test_unhex(v->proof[j], want[j]);
        ASSERT_EQ(oe_merkle_consistency_proof((const unsigned char(*)[32])leaves, v->b, v->a, proof,
                                              &len),
                  OE_OK);
        ASSERT_EQ(len, v->len);
        for (int j = 0; j < v->len && (size_t)j < len; j++)
            ASSERT_TRUE(hash_eq_hex(proof[j], v->proof[j]));
        test_unhex(ref_roots[v->a], old_root);
        test_unhex(ref_roots[v->b], new_root);
        ASSERT_EQ(oe_merkle_verify_consistency(v->a, v->b, old_root, new_root,
                                               (const unsigned char(*)[32])want, (size_t)v->len),
                  OE_OK);
    }
}

#define MAX_N 70

/* Leaf hashes of the 8-byte little-endian numbers 0..count-1. */
static void make_leaves(unsigned char (*leaves)[32], uint64_t count)
{
    for (uint64_t i = 0; i < count; i++) {
        unsigned char b[8];
        for (int j = 0; j < 8; j++)
            b[j] = (unsigned char)(i >> (8 * j));
        oe_merkle_leaf_hash(b, sizeof b, leaves[i]);
    }
}

static void test_compact_matches_root(void)
{
    static unsigned char leaves[MAX_N][32];
    make_leaves(leaves, MAX_N);
    oe_merkle_compact c;
    oe_merkle_compact_init(&c);
    for (uint64_t n = 1; n <= MAX_N; n++) {
        unsigned char a[32], b[32];
        ASSERT_EQ(oe_merkle_compact_append(&c, leaves[n - 1]), OE_OK);
        ASSERT_EQ(c.size, n);
        ASSERT_EQ(oe_merkle_compact_root(&c, a), OE_OK);
        ASSERT_EQ(oe_merkle_root((const unsigned char(*)[32])leaves, n, b), OE_OK);
        ASSERT_TRUE(memcmp(a, b, 32) == 0);
    }
    /* The limit of 2^64 - 1 leaves, with 64 subtrees held. */
    c.size = UINT64_MAX;
    ASSERT_EQ(oe_merkle_compact_append(&c, leaves[0]), OE_ELIMIT);
    ASSERT_EQ(oe_merkle_compact_append(NULL, leaves[0]), OE_EINVAL);
    ASSERT_EQ(oe_merkle_compact_append(&c, NULL), OE_EINVAL);
}

/* The number of levels above leaf index in a tree of size leaves: the
 * length of its inclusion proof, counted without hashing. */
static size_t path_len(uint64_t index, uint64_t size)
{
    size_t len = 0;
    while (size > 1) {
        uint64_t k = 1;
        while (k * 2 < size)
            k *= 2;
        if (index < k) {
            size = k;
        } else {
            index -= k;
            size -= k;
        }
        len++;
    }
    return len;
}

/* Verifies (index, size, leaf, proof, root) and returns whether it held. */
static int incl_ok(const unsigned char leaf[32], uint64_t index, uint64_t size,
                   unsigned char (*proof)[32], size_t len, const unsigned char root[32])
{
    return oe_merkle_verify_inclusion(leaf, index, size, (const unsigned char(*)[32])proof, len,
                                      root) == OE_OK;
}

static void test_inclusion_properties(void)
{
    static unsigned char leaves[2 * MAX_N][32];
    make_leaves(leaves, 2 * MAX_N);
    const unsigned char(*cl)[32] = (const unsigned char(*)[32])leaves;
    for (uint64_t n = 1; n <= MAX_N; n++) {
        unsigned char root[32];
        ASSERT_EQ(oe_merkle_root(cl, n, root), OE_OK);
        for (uint64_t i = 0; i < n; i++) {
            unsigned char proof[OE_MERKLE_MAX_INCLUSION][32], leaf[32], bad[32];
            size_t len = 0;
            ASSERT_EQ(oe_merkle_inclusion_proof(cl, n, i, proof, &len), OE_OK);
            ASSERT_TRUE(incl_ok(leaves[i], i, n, proof, len, root));

            /* One flipped bit anywhere in the proof. */
            for (size_t j = 0; j < len; j++) {
                for (int bit = 0; bit < 256; bit += 37) {
                    proof[j][bit / 8] ^= (unsigned char)(1u << (bit % 8));
                    if (incl_ok(leaves[i], i, n, proof, len, root))
                        OE_FAIL_("n=%" PRIu64 " i=%" PRIu64 ": proof[%zu] bit %d accepted", n, i, j,
                                 bit);
                    proof[j][bit / 8] ^= (unsigned char)(1u << (bit % 8));
                }
            }
            /* A flipped bit in the leaf or the root. */
            memcpy(leaf, leaves[i], 32);
            leaf[i % 32] ^= 0x10;
            ASSERT_TRUE(!incl_ok(leaf, i, n, proof, len, root));
            memcpy(bad, root, 32);
            bad[31 - i % 32] ^= 0x01;
            ASSERT_TRUE(!incl_ok(leaves[i], i, n, proof, len, bad));

            /* Another index: every other index of the same tree. */
            for (uint64_t k = 0; k <= n; k++) {
                if (k != i && incl_ok(leaves[i], k, n, proof, len, root))
                    OE_FAIL_("n=%" PRIu64 " i=%" PRIu64 ": index %" PRIu64 " accepted", n, i, k);
            }
            ASSERT_TRUE(!incl_ok(leaves[i], n, n, proof, len, root));

            /* Another size: refused whenever that size's proofs for this
             * index have another length (a size whose path has the same
             * shape computes the same root; the signed size binds it). */
            ASSERT_TRUE(!incl_ok(leaves[i], i, 2 * n, proof, len, root));
            if (n / 2 > i)
                ASSERT_TRUE(!incl_ok(leaves[i], i, n / 2, proof, len, root));
            ASSERT_EQ(path_len(i, n), len);
            for (uint64_t s = i + 1; s <= 2 * n; s++) {
                if (s != n && path_len(i, s) != len && incl_ok(leaves[i], i, s, proof, len, root))
                    OE_FAIL_("n=%" PRIu64 " i=%" PRIu64 ": size %" PRIu64 " accepted", n, i, s);
            }

            /* A shorter or longer proof. */
            if (len > 0)
                ASSERT_TRUE(!incl_ok(leaves[i], i, n, proof, len - 1, root));
            if (len < OE_MERKLE_MAX_INCLUSION) {
                memcpy(proof[len], root, 32);
                ASSERT_TRUE(!incl_ok(leaves[i], i, n, proof, len + 1, root));
            }
        }
    }
}

static void test_inclusion_arguments(void)
{
    unsigned char leaves[4][32], root[32], proof[OE_MERKLE_MAX_INCLUSION][32];
    const unsigned char(*cl)[32] = (const unsigned char(*)[32])leaves;
    size_t len = 0;
    make_leaves(leaves, 4);
    ASSERT_EQ(oe_merkle_root(cl, 4, root), OE_OK);
    ASSERT_EQ(oe_merkle_inclusion_proof(cl, 4, 4, proof, &len), OE_EINVAL);
    ASSERT_EQ(oe_merkle_inclusion_proof(cl, 0, 0, proof, &len), OE_EINVAL);
    ASSERT_EQ(oe_merkle_inclusion_proof(NULL, 4, 0, proof, &len), OE_EINVAL);
    ASSERT_EQ(oe_merkle_inclusion_proof(cl, 4, 0, proof, NULL), OE_EINVAL);
    ASSERT_EQ(oe_merkle_verify_inclusion(leaves[0], 0, 0, NULL, 0, root), OE_EINVAL);
    ASSERT_EQ(oe_merkle_verify_inclusion(leaves[0], 5, 4, NULL, 0, root), OE_EINVAL);
    /* A one-leaf tree: the root is the leaf hash and the proof is empty. */
    ASSERT_EQ(oe_merkle_verify_inclusion(leaves[0], 0, 1, NULL, 0, leaves[0]), OE_OK);
    ASSERT_EQ(oe_merkle_verify_inclusion(leaves[0], 0, 1, NULL, 0, leaves[1]), OE_EINVAL);
    /* More hashes than any tree has levels. */
    static unsigned char many[OE_MERKLE_MAX_INCLUSION + 1][32];
    ASSERT_EQ(oe_merkle_verify_inclusion(leaves[0], 0, UINT64_MAX, (const unsigned char(*)[32])many,
                                         OE_MERKLE_MAX_INCLUSION + 1, root),
              OE_EINVAL);
}

static int cons_ok(uint64_t m, uint64_t n, const unsigned char old_root[32],
                   const unsigned char new_root[32], unsigned char (*proof)[32], size_t len)
{
    return oe_merkle_verify_consistency(m, n, old_root, new_root, (const unsigned char(*)[32])proof,
                                        len) == OE_OK;
}

static void test_consistency_properties(void)
{
    static unsigned char leaves[MAX_N][32];
    static unsigned char roots[MAX_N + 1][32];
    make_leaves(leaves, MAX_N);
    const unsigned char(*cl)[32] = (const unsigned char(*)[32])leaves;
    for (uint64_t n = 0; n <= MAX_N; n++)
        ASSERT_EQ(oe_merkle_root(cl, n, roots[n]), OE_OK);
    for (uint64_t n = 1; n <= MAX_N; n++) {
        static unsigned char proofs[MAX_N + 1][OE_MERKLE_MAX_CONSISTENCY][32];
        size_t lens[MAX_N + 1];
        for (uint64_t m = 1; m <= n; m++) {
            ASSERT_EQ(oe_merkle_consistency_proof(cl, n, m, proofs[m], &lens[m]), OE_OK);
            ASSERT_TRUE(cons_ok(m, n, roots[m], roots[n], proofs[m], lens[m]));
        }
        ASSERT_EQ(lens[n], 0);
        for (uint64_t m = 1; m <= n; m++) {
            unsigned char(*proof)[32] = proofs[m];
            size_t len = lens[m];
            unsigned char bad[32];

            /* One flipped bit anywhere in the proof. */
            for (size_t j = 0; j < len; j++) {
                for (int bit = 0; bit < 256; bit += 37) {
                    proof[j][bit / 8] ^= (unsigned char)(1u << (bit % 8));
                    if (cons_ok(m, n, roots[m], roots[n], proof, len))
                        OE_FAIL_("m=%" PRIu64 " n=%" PRIu64 ": proof[%zu] bit %d accepted", m, n, j,
                                 bit);
                    proof[j][bit / 8] ^= (unsigned char)(1u << (bit % 8));
                }
            }
            /* A changed old or new root, or the two swapped. */
            memcpy(bad, roots[m], 32);
            bad[m % 32] ^= 0x04;
            ASSERT_TRUE(!cons_ok(m, n, bad, roots[n], proof, len));
            memcpy(bad, roots[n], 32);
            bad[n % 32] ^= 0x80;
            ASSERT_TRUE(!cons_ok(m, n, roots[m], bad, proof, len));
            if (m != n)
                ASSERT_TRUE(!cons_ok(m, n, roots[n], roots[m], proof, len));

            /* A truncated or extended proof. */
            if (len > 0)
                ASSERT_TRUE(!cons_ok(m, n, roots[m], roots[n], proof, len - 1));
            if (len > 1)
                ASSERT_TRUE(!cons_ok(m, n, roots[m], roots[n], proof + 1, len - 1));
            memcpy(proof[len], roots[n], 32);
            ASSERT_TRUE(!cons_ok(m, n, roots[m], roots[n], proof, len + 1));

            /* The proof for another m, with that m or with this one; and
             * this proof and roots with another m or n. */
            for (uint64_t k = 1; k <= n; k++) {
                if (k == m)
                    continue;
                if (cons_ok(k, n, roots[k], roots[n], proof, len))
                    OE_FAIL_("n=%" PRIu64 ": proof of m=%" PRIu64 " accepted for m=%" PRIu64, n, m,
                             k);
                if (cons_ok(k, n, roots[m], roots[n], proof, len))
                    OE_FAIL_("n=%" PRIu64 ": m=%" PRIu64 " accepted as m=%" PRIu64, n, m, k);
            }
            ASSERT_TRUE(!cons_ok(m, 2 * n, roots[m], roots[n], proof, len));
            if (n / 2 >= m && n / 2 != n)
                ASSERT_TRUE(!cons_ok(m, n / 2, roots[m], roots[n], proof, len));
        }
    }
}

static void test_consistency_arguments(void)
{
    unsigned char leaves[4][32], r2[32], r3[32], r4[32];
    unsigned char proof[OE_MERKLE_MAX_CONSISTENCY][32];
    const unsigned char(*cl)[32] = (const unsigned char(*)[32])leaves;
    size_t len = 0;
    make_leaves(leaves, 4);
    ASSERT_EQ(oe_merkle_root(cl, 2, r2), OE_OK);
    ASSERT_EQ(oe_merkle_root(cl, 3, r3), OE_OK);
    ASSERT_EQ(oe_merkle_root(cl, 4, r4), OE_OK);
    ASSERT_EQ(oe_merkle_consistency_proof(cl, 4, 0, proof, &len), OE_EINVAL);
    ASSERT_EQ(oe_merkle_consistency_proof(cl, 4, 5, proof, &len), OE_EINVAL);
    ASSERT_EQ(oe_merkle_consistency_proof(NULL, 4, 2, proof, &len), OE_EINVAL);
    ASSERT_EQ(oe_merkle_consistency_proof(cl, 4, 2, proof, NULL), OE_EINVAL);
    ASSERT_EQ(oe_merkle_consistency_proof(cl, 4, 2, proof, &len), OE_OK);
    ASSERT_EQ(len, 1);
    const unsigned char(*cp)[32] = (const unsigned char(*)[32])proof;
    ASSERT_EQ(oe_merkle_verify_consistency(2, 4, r2, r4, cp, len), OE_OK);
    /* m == 0 and m > n are refused whatever the roots. */
    ASSERT_EQ(oe_merkle_verify_consistency(0, 4, r2, r4, cp, len), OE_EINVAL);
    ASSERT_EQ(oe_merkle_verify_consistency(0, 0, r2, r2, NULL, 0), OE_EINVAL);
    ASSERT_EQ(oe_merkle_verify_consistency(4, 2, r4, r2, cp, len), OE_EINVAL);
    /* m == n: equal roots and an empty proof, nothing else. */
    ASSERT_EQ(oe_merkle_verify_consistency(4, 4, r4, r4, NULL, 0), OE_OK);
    ASSERT_EQ(oe_merkle_verify_consistency(4, 4, r4, r2, NULL, 0), OE_EINVAL);
    ASSERT_EQ(oe_merkle_verify_consistency(4, 4, r4, r4, cp, 1), OE_EINVAL);
    /* m < n with an empty proof, m a power of two or not (then the proof
     * must hold the first hash of the path). */
    ASSERT_EQ(oe_merkle_verify_consistency(2, 4, r2, r4, NULL, 0), OE_EINVAL);
    ASSERT_EQ(oe_merkle_verify_consistency(2, 4, r2, r4, cp, 0), OE_EINVAL);
    ASSERT_EQ(oe_merkle_verify_consistency(3, 4, r3, r4, NULL, 0), OE_EINVAL);
    ASSERT_EQ(oe_merkle_verify_consistency(3, 4, r3, r4, cp, 0), OE_EINVAL);
    static unsigned char many[OE_MERKLE_MAX_CONSISTENCY + 1][32];
    ASSERT_EQ(oe_merkle_verify_consistency(3, UINT64_MAX, r2, r4, (const unsigned char(*)[32])many,
                                           OE_MERKLE_MAX_CONSISTENCY + 1),
              OE_EINVAL);
}

/* A batch appended on top of a tree known only by its compact range gives
 * the same root and, for every new leaf, the same inclusion proof as the
 * whole tree of leaf hashes, with each hash's base64 text beside it; every
 * split of 1..MAX_N leaves into an old tree and a batch. An index outside
 * the batch has no path. */
static void test_batch_matches_whole_tree(void)
{
    static unsigned char leaves[MAX_N][32];
    make_leaves(leaves, MAX_N);
    const unsigned char(*cl)[32] = (const unsigned char(*)[32])leaves;
    for (uint64_t from = 0; from < MAX_N; from++) {
        oe_merkle_compact c;
        oe_merkle_compact_init(&c);
        for (uint64_t i = 0; i < from; i++)
            ASSERT_EQ(oe_merkle_compact_append(&c, leaves[i]), OE_OK);
        for (uint64_t size = from; size <= MAX_N; size++) {
            oe_merkle_batch b;
            ASSERT_EQ(oe_merkle_batch_build(&b, &c, cl + from, size - from), OE_OK);
            unsigned char want[32], got[32];
            ASSERT_EQ(oe_merkle_root(cl, size, want), OE_OK);
            ASSERT_EQ(oe_merkle_batch_root(&b, got), OE_OK);
            ASSERT_TRUE(memcmp(want, got, 32) == 0);
            oe_merkle_compact whole = c, from_batch;
            for (uint64_t i = from; i < size; i++)
                ASSERT_EQ(oe_merkle_compact_append(&whole, leaves[i]), OE_OK);
            oe_merkle_batch_compact(&b, &from_batch);
            ASSERT_EQ(from_batch.size, whole.size);
            ASSERT_TRUE(memcmp(from_batch.hashes, whole.hashes,
                               (size_t)__builtin_popcountll(size) * 32) == 0);
            for (uint64_t i = from; i < size; i++) {
                unsigned char p1[OE_MERKLE_MAX_INCLUSION][32];
                size_t l1 = 99, l2 = 98, p2[OE_MERKLE_MAX_INCLUSION];
                ASSERT_EQ(oe_merkle_inclusion_proof(cl, size, i, p1, &l1), OE_OK);
                ASSERT_EQ(oe_merkle_batch_path(&b, i, p2, &l2), OE_OK);
                ASSERT_EQ(l1, l2);
                for (size_t k = 0; k < l1; k++) {
                    char text[45];
                    ASSERT_TRUE(memcmp(p1[k], b.nodes[p2[k]], 32) == 0);
                    oe_base64_encode(p1[k], 32, text, sizeof text);
                    ASSERT_TRUE(memcmp(text, b.text[p2[k]], 44) == 0);
                }
            }
            size_t p[OE_MERKLE_MAX_INCLUSION], l = 0;
            ASSERT_EQ(oe_merkle_batch_path(&b, size, p, &l), OE_EINVAL);
            if (from > 0)
                ASSERT_EQ(oe_merkle_batch_path(&b, from - 1, p, &l), OE_EINVAL);
            oe_merkle_batch_free(&b);
        }
    }
    oe_merkle_batch b;
    oe_merkle_compact c;
    oe_merkle_compact_init(&c);
    ASSERT_EQ(oe_merkle_batch_build(&b, &c, NULL, 0), OE_OK);
    unsigned char empty[32], want[32];
    ASSERT_EQ(oe_merkle_batch_root(&b, empty), OE_OK);
    ASSERT_EQ(oe_merkle_root(cl, 0, want), OE_OK);
    ASSERT_TRUE(memcmp(empty, want, 32) == 0);
    oe_merkle_batch_free(&b);
    ASSERT_EQ(oe_merkle_batch_build(&b, &c, NULL, 1), OE_EINVAL);
}

int main(void)
{
    RUN_TEST(test_hashes);
    RUN_TEST(test_reference_roots);
    RUN_TEST(test_reference_inclusion);
    RUN_TEST(test_reference_consistency);
    RUN_TEST(test_compact_matches_root);
    RUN_TEST(test_inclusion_properties);
    RUN_TEST(test_inclusion_arguments);
    RUN_TEST(test_consistency_properties);
    RUN_TEST(test_consistency_arguments);
    RUN_TEST(test_batch_matches_whole_tree);
    return TEST_REPORT();
}
