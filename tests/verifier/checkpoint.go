package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// A checkpoint is a verified C2SP tlog-checkpoint
// (https://c2sp.org/tlog-checkpoint): the body of a signed note
// (https://c2sp.org/signed-note) that a trusted key signed under the name
// of the log's origin.
type checkpoint struct {
	origin string
	size   uint64
	root   []byte // 32 bytes
	note   string // the whole signed note, as given
}

// trust holds the trusted keys and remembers every note it has opened.
type trust struct {
	keys  []ed25519.PublicKey
	cache map[string]checkpointResult
}

type checkpointResult struct {
	cp  *checkpoint
	err error
}

func newTrust(keys []ed25519.PublicKey) *trust {
	return &trust{keys: keys, cache: make(map[string]checkpointResult)}
}

// open verifies a signed note and parses its text as a checkpoint.
func (t *trust) open(msg string) (*checkpoint, error) {
	if r, ok := t.cache[msg]; ok {
		return r.cp, r.err
	}
	cp, err := t.openUncached(msg)
	t.cache[msg] = checkpointResult{cp, err}
	return cp, err
}

func (t *trust) openUncached(msg string) (*checkpoint, error) {
	// The trusted keys carry no names: the names come from the note's own
	// signature lines, which note.Open lists as unverified signatures when
	// it knows no key at all.
	_, err := note.Open([]byte(msg), note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		if err == nil {
			err = errors.New("opened without any key")
		}
		return nil, fmt.Errorf("checkpoint is not a signed note: %v", err)
	}
	var verifiers []note.Verifier
	seen := make(map[string]bool)
	for _, sig := range unverified.Note.UnverifiedSigs {
		if seen[sig.Name] {
			continue
		}
		seen[sig.Name] = true
		for _, key := range t.keys {
			vkey, err := note.NewEd25519VerifierKey(sig.Name, key)
			if err != nil {
				return nil, fmt.Errorf("verifier key for %q: %v", sig.Name, err)
			}
			v, err := note.NewVerifier(vkey)
			if err != nil {
				return nil, fmt.Errorf("verifier for %q: %v", sig.Name, err)
			}
			verifiers = append(verifiers, v)
		}
	}
	n, err := note.Open([]byte(msg), note.VerifierList(verifiers...))
	if err != nil {
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return nil, errors.New("checkpoint has no signature by a trusted key")
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("checkpoint has a bad signature by a trusted key: %v", err)
		}
		return nil, fmt.Errorf("checkpoint does not open: %v", err)
	}
	cp, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, err
	}
	cp.note = msg
	named := false
	for _, sig := range n.Sigs {
		if sig.Name == cp.origin {
			named = true
			break
		}
	}
	if !named {
		return nil, fmt.Errorf("checkpoint of origin %q has no trusted signature under that name (signed as %q)",
			cp.origin, n.Sigs[0].Name)
	}
	return cp, nil
}

// parseCheckpointText parses a checkpoint body strictly: the origin (not
// empty), the tree size in decimal (no sign, no leading zero), the root
// hash in standard padded base64 (32 bytes), each line ending in a newline,
// then optional extension lines, none empty. A tree of size 0 must have
// the empty tree's root.
func parseCheckpointText(text string) (*checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("checkpoint text does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return nil, fmt.Errorf("checkpoint text has %d lines, want at least 3 (origin, size, root)", len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return nil, fmt.Errorf("checkpoint text line %d is empty", i+1)
		}
	}
	origin, sizeText, rootText := lines[0], lines[1], lines[2]
	if strings.TrimSpace(origin) != origin {
		return nil, fmt.Errorf("checkpoint origin %q has surrounding spaces", origin)
	}
	if !isDecimal(sizeText) {
		return nil, fmt.Errorf("checkpoint size %q is not a decimal number", sizeText)
	}
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("checkpoint size %q: %v", sizeText, err)
	}
	root, err := decodeHash(rootText)
	if err != nil {
		return nil, fmt.Errorf("checkpoint root: %v", err)
	}
	if size == 0 && !bytes.Equal(root, rfc6962.DefaultHasher.EmptyRoot()) {
		return nil, errors.New("checkpoint of size 0 does not have the empty tree's root")
	}
	return &checkpoint{origin: origin, size: size, root: root}, nil
}

// isDecimal: ASCII digits only, and no leading zero unless it is "0".
func isDecimal(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// decodeHash decodes standard base64 (padded, canonical) of exactly 32
// bytes.
func decodeHash(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		// The decoder would skip them.
		return nil, fmt.Errorf("%q is not base64: it holds a line break", s)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not base64: %v", s, err)
	}
	if len(b) != rfc6962.DefaultHasher.Size() {
		return nil, fmt.Errorf("%q is %d bytes, want %d", s, len(b), rfc6962.DefaultHasher.Size())
	}
	return b, nil
}
