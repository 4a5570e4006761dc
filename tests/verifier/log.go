package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// A logView is what the receipts of a run show of one log: the leaves
// their authenticated proofs carry, by index, and the checkpoints they
// hold.
type logView struct {
	origin      string
	leaves      map[uint64]leafSeen
	fork        *forkSeen // the fork of the lowest index
	checkpoints map[string]cpSeen
}

type leafSeen struct {
	leaf []byte
	line int
}

type forkSeen struct {
	index        uint64
	line1, line2 int
}

type cpSeen struct {
	cp   *checkpoint
	line int    // of the receipt that carried it first; 0: published only
	at   string // where it was seen, for messages
}

// collectLogs sorts the checked receipts into logs. A leaf counts only
// when its inclusion proof holds against a trusted checkpoint (checks 1 to
// 3); a checkpoint counts once its signature holds (check 2), whatever the
// rest of the receipt.
func collectLogs(checks []*receiptCheck) map[string]*logView {
	logs := make(map[string]*logView)
	for _, rc := range checks {
		if rc.cp == nil {
			continue
		}
		lv := logs[rc.origin]
		if lv == nil {
			lv = &logView{origin: rc.origin, leaves: make(map[uint64]leafSeen), checkpoints: make(map[string]cpSeen)}
			logs[rc.origin] = lv
		}
		if _, ok := lv.checkpoints[rc.cp.note]; !ok {
			lv.checkpoints[rc.cp.note] = cpSeen{rc.cp, rc.line, fmt.Sprintf("line %d", rc.line)}
		}
		if !rc.included {
			continue
		}
		prev, ok := lv.leaves[rc.index]
		if !ok {
			lv.leaves[rc.index] = leafSeen{rc.leaf, rc.line}
		} else if !bytes.Equal(prev.leaf, rc.leaf) && (lv.fork == nil || rc.index < lv.fork.index) {
			lv.fork = &forkSeen{rc.index, prev.line, rc.line}
		}
	}
	return logs
}

// check verifies one log: no fork, no gap, every checkpoint's root that of
// the leaves, and a consistency proof between consecutive checkpoint
// sizes. It writes one line per failure to stderr (prefixed by src) and
// the summary to stdout; returns whether the log is consistent.
func (lv *logView) check(src string, stdout, stderr io.Writer) bool {
	fail := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s: origin %s: %s\n", src, lv.origin, fmt.Sprintf(format, args...))
	}
	ok := true

	// The leaves 0..need-1 that the leaves and checkpoints call for.
	var need uint64
	for i := range lv.leaves {
		need = max(need, i+1)
	}
	cps := make([]cpSeen, 0, len(lv.checkpoints))
	for _, c := range lv.checkpoints {
		cps = append(cps, c)
		need = max(need, c.cp.size)
	}
	sort.Slice(cps, func(i, j int) bool {
		if cps[i].cp.size != cps[j].cp.size {
			return cps[i].cp.size < cps[j].cp.size
		}
		return cps[i].line < cps[j].line
	})

	// usable: the leading leaves with no gap and no fork among them.
	usable := need
	if lv.fork != nil {
		fail("fork at index %d: lines %d and %d carry different leaves", lv.fork.index, lv.fork.line1, lv.fork.line2)
		usable = lv.fork.index
		ok = false
	}
	for i := uint64(0); i < need; i++ {
		if _, seen := lv.leaves[i]; !seen {
			fail("gap at index %d: no receipt carries that leaf of the %d the log holds", i, need)
			usable = min(usable, i)
			ok = false
			break
		}
	}

	// The tree of the usable leaves, and its root at each checkpoint size.
	t := newTree()
	for _, c := range cps {
		if c.cp.size > usable {
			break // beyond the fork or the gap reported above
		}
		for t.size() < c.cp.size {
			if err := t.appendLeaf(rfc6962.DefaultHasher.HashLeaf(lv.leaves[t.size()].leaf)); err != nil {
				fail("tree: %v", err)
				return false
			}
		}
		root, err := t.root()
		if err != nil {
			fail("tree: %v", err)
			return false
		}
		if !bytes.Equal(root, c.cp.root) {
			fail("checkpoint of size %d (%s) has root %x, but the first %d leaves have root %x",
				c.cp.size, c.at, c.cp.root, c.cp.size, root)
			ok = false
		}
	}

	// One append-only history: each checkpoint size a prefix of the next.
	if ok {
		for i := 1; i < len(cps); i++ {
			a, b := cps[i-1], cps[i]
			if a.cp.size == b.cp.size {
				continue
			}
			p, err := t.consistencyProof(a.cp.size, b.cp.size)
			if err == nil {
				err = proof.VerifyConsistency(rfc6962.DefaultHasher, a.cp.size, b.cp.size, p, a.cp.root, b.cp.root)
			}
			if err != nil {
				fail("checkpoints of sizes %d (%s) and %d (%s) are not consistent: %s",
					a.cp.size, a.at, b.cp.size, b.at, oneLine(err))
				ok = false
			}
		}
	}

	verdict := "consistent"
	if !ok {
		verdict = "NOT consistent"
	}
	fmt.Fprintf(stdout, "origin %s: %d leaves, %d checkpoints, %s\n", lv.origin, len(lv.leaves), len(lv.checkpoints), verdict)
	return ok
}

// addPublished adds the checkpoints of a checkpoints topic (src: JSON
// lines, each a JSON string holding a signed note, in the order they were
// published) to the logs the receipts show, so that check verifies each
// as it verifies theirs. Each must be signed by a trusted key, belong to a
// log of the receipts, and be no smaller than the one published before it
// in that log. Writes one line per failure to stderr; returns whether all
// were accepted.
func addPublished(t *trust, logs map[string]*logView, src string, data []byte, stderr io.Writer) bool {
	ok := true
	fail := func(line int, format string, args ...any) {
		fmt.Fprintf(stderr, "%s:%d: %s\n", src, line, fmt.Sprintf(format, args...))
		ok = false
	}
	last := make(map[string]uint64)
	for _, doc := range splitDocuments(data) {
		var note string
		if doc.err != nil {
			fail(doc.line, "not JSON: %v", doc.err)
			continue
		}
		if err := json.Unmarshal(doc.raw, &note); err != nil {
			fail(doc.line, "not a JSON string holding a note: %v", err)
			continue
		}
		cp, err := t.open(note)
		if err != nil {
			fail(doc.line, "%v", err)
			continue
		}
		lv := logs[cp.origin]
		if lv == nil {
			fail(doc.line, "checkpoint of origin %s, a log no receipt shows", cp.origin)
			continue
		}
		if prev, seen := last[cp.origin]; seen && cp.size < prev {
			fail(doc.line, "checkpoint of size %d published after one of size %d", cp.size, prev)
		}
		last[cp.origin] = cp.size
		if _, seen := lv.checkpoints[note]; !seen {
			lv.checkpoints[note] = cpSeen{cp, 0, fmt.Sprintf("%s:%d", src, doc.line)}
		}
	}
	return ok
}
