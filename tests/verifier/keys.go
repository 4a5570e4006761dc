package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// pemPublicKey is the only kind of block a trusted keys file may hold.
const pemPublicKey = "PUBLIC KEY"

// loadTrustedKeys reads the Ed25519 public keys of a trusted keys file: PEM
// blocks "PUBLIC KEY" (PKIX SubjectPublicKeyInfo), separated by nothing but
// white space. Any other content, a key of another algorithm or a file with
// no key at all is an error. A key given twice is kept once (note's
// VerifierList would call the pair ambiguous).
func loadTrustedKeys(path string) ([]ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseTrustedKeys(path, data)
}

func parseTrustedKeys(name string, data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	rest := data
	for n := 1; ; n++ {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		// pem.Decode skips any text before a block: refuse it here.
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("%s: text outside a PEM block (before block %d)", name, n)
		}
		block, after := pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%s: block %d is not a well-formed PEM block", name, n)
		}
		rest = after
		if block.Type != pemPublicKey {
			return nil, fmt.Errorf("%s: block %d is %q, not %q", name, n, block.Type, pemPublicKey)
		}
		if len(block.Headers) != 0 {
			return nil, fmt.Errorf("%s: block %d has PEM headers", name, n)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: block %d: %v", name, n, err)
		}
		key, ok := pub.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: block %d is a %T, not an Ed25519 key", name, n, pub)
		}
		dup := false
		for _, k := range keys {
			if k.Equal(key) {
				dup = true
				break
			}
		}
		if !dup {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no public key", name)
	}
	return keys, nil
}
