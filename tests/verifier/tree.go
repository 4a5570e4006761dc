package main

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// rangeFactory makes RFC 6962 compact ranges.
var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// A tree is an in-memory RFC 6962 tree built with transparency-dev's
// compact ranges: it keeps the hash of every perfect subtree (every node
// that the compact range reports on appending), from which the library's
// proof.Consistency node lists are filled.
type tree struct {
	rng   *compact.Range
	nodes map[compact.NodeID][]byte
}

func newTree() *tree {
	return &tree{rng: rangeFactory.NewEmptyRange(0), nodes: make(map[compact.NodeID][]byte)}
}

func (t *tree) size() uint64 { return t.rng.End() }

// appendLeaf appends a leaf hash (RFC 6962 HashLeaf of the leaf).
func (t *tree) appendLeaf(leafHash []byte) error {
	return t.rng.Append(leafHash, func(id compact.NodeID, hash []byte) {
		t.nodes[id] = hash
	})
}

// root is the root of the leaves appended so far.
func (t *tree) root() ([]byte, error) {
	if t.size() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	return t.rng.GetRootHash(nil)
}

// consistencyProof is the RFC 9162 §2.1.4.1 proof that the tree of the
// first size1 leaves is a prefix of the tree of the first size2, 0 <= size1
// <= size2 <= t.size(): the library's list of nodes, their hashes, and its
// rehashing of the ephemeral node.
func (t *tree) consistencyProof(size1, size2 uint64) ([][]byte, error) {
	if size2 > t.size() {
		return nil, fmt.Errorf("size %d is beyond the %d leaves", size2, t.size())
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, ok := t.nodes[id]
		if !ok {
			return nil, fmt.Errorf("no hash for node %+v", id)
		}
		hashes[i] = h
	}
	return nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

// verifyConsistency checks an RFC 9162 consistency proof between two
// checkpoints with the library.
func verifyConsistency(old, cur *checkpoint, hashes [][]byte) error {
	return proof.VerifyConsistency(rfc6962.DefaultHasher, old.size, cur.size, hashes, old.root, cur.root)
}
