package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// ---- A reference RFC 6962 tree, straight from the RFC's definitions
// (§2.1 MTH, PATH and SUBPROOF) over crypto/sha256: the fixtures do not
// come from the library that the verifier uses.

func refLeafHash(leaf []byte) []byte {
	h := sha256.Sum256(append([]byte{0}, leaf...))
	return h[:]
}

func refNodeHash(l, r []byte) []byte {
	h := sha256.Sum256(append(append([]byte{1}, l...), r...))
	return h[:]
}

// refSplit is the largest power of two smaller than n (n > 1).
func refSplit(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

func refRoot(d [][]byte) []byte {
	switch len(d) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		return d[0]
	}
	k := refSplit(len(d))
	return refNodeHash(refRoot(d[:k]), refRoot(d[k:]))
}

func refPath(m int, d [][]byte) [][]byte {
	if len(d) <= 1 {
		return nil
	}
	k := refSplit(len(d))
	if m < k {
		return append(refPath(m, d[:k]), refRoot(d[k:]))
	}
	return append(refPath(m-k, d[k:]), refRoot(d[:k]))
}

func refSubproof(m int, d [][]byte, b bool) [][]byte {
	n := len(d)
	if m == n {
		if b {
			return nil
		}
		return [][]byte{refRoot(d)}
	}
	k := refSplit(n)
	if m <= k {
		return append(refSubproof(m, d[:k], b), refRoot(d[k:]))
	}
	return append(refSubproof(m-k, d[k:], false), refRoot(d[:k]))
}

func refConsistency(m int, d [][]byte) [][]byte {
	if m == 0 || m == len(d) {
		return nil
	}
	return refSubproof(m, d, true)
}

// ---- Keys and signed notes.

// testSigner signs notes with a given Ed25519 key (note.GenerateKey would
// make its own). The key hash is note's: the first 4 bytes of
// SHA-256(name || "\n" || 0x01 || public key).
type testSigner struct {
	name string
	key  ed25519.PrivateKey
}

func (s testSigner) Name() string { return s.name }

func (s testSigner) KeyHash() uint32 {
	h := sha256.New()
	h.Write([]byte(s.name + "\n"))
	h.Write(append([]byte{1}, s.key.Public().(ed25519.PublicKey)...))
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func (s testSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

func testKey(label string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("openexec verifier test key " + label))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pemPublic(t *testing.T, keys ...ed25519.PrivateKey) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		pem.Encode(&b, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	return b.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func signText(t *testing.T, text string, signers ...note.Signer) string {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

func checkpointText(origin string, size int, root []byte) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root))
}

// ---- A log and its receipts.

const testOrigin = "openexec/0123456789abcdef"

type fixture struct {
	origin string
	key    ed25519.PrivateKey
	fields []map[string]any // the leaves' fields
	leaves [][]byte         // the leaves, canonical JSON
	hashes [][]byte         // their reference leaf hashes
	sizes  []int            // the sizes of the signed checkpoints
	notes  map[int]string   // checkpoint by size
}

type fixtureOptions struct {
	origin  string
	key     ed25519.PrivateKey
	n       int
	sizes   []int
	fields  func(i int, f map[string]any) // changes the fields of leaf i
	encoded func(i int, leaf []byte) []byte
}

// canonical prints JSON as the leaves are: sorted keys, no spaces.
func canonical(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func receiptHash(id, result string) string {
	h := sha256.Sum256([]byte(id + ":" + result))
	return hex.EncodeToString(h[:])
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	if o.origin == "" {
		o.origin = testOrigin
	}
	if o.key == nil {
		o.key = testKey("log")
	}
	if o.n == 0 {
		o.n = 20
	}
	if o.sizes == nil {
		o.sizes = []int{5, 12, 20}
	}
	f := &fixture{origin: o.origin, key: o.key, sizes: o.sizes, notes: make(map[int]string)}
	for i := 0; i < o.n; i++ {
		id := fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprintf("%s id %d", o.origin, i))))
		fields := map[string]any{
			"action": "add", "approval_id": nil, "approved": false, "detail": nil,
			"error_code": nil, "id": id, "log_index": i, "nonce": fmt.Sprintf("nonce-%d", i),
			"receipt": nil, "recorded_at": fmt.Sprintf("2025-01-02T03:04:%02d.000Z", i),
			"request_hash": fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprintf("request %d", i)))),
			"result":       nil, "status": "executed", "tenant": "default",
		}
		switch {
		case i%5 == 4:
			fields["status"] = "rejected"
			fields["error_code"] = "LIMIT_EXCEEDED"
			fields["detail"] = "amount too large <&>"
		case i%7 == 6:
			fields["approved"] = true
			fields["approval_id"] = fmt.Sprintf("approval-%d", i)
			fallthrough
		default:
			result := fmt.Sprintf(`{"sum":%d,"text":"caf\u00e9 \"%d\""}`, i*3, i)
			fields["result"] = result
			fields["receipt"] = receiptHash(id, result)
			if i%3 == 2 { // an operator's Lua action ran
				fields["action_code_hash"] = fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprintf("code %d", i))))
			}
		}
		if o.fields != nil {
			o.fields(i, fields)
		}
		leaf := canonical(fields)
		if o.encoded != nil {
			leaf = o.encoded(i, leaf)
		}
		f.fields = append(f.fields, fields)
		f.leaves = append(f.leaves, leaf)
		f.hashes = append(f.hashes, refLeafHash(leaf))
	}
	for _, s := range f.sizes {
		f.notes[s] = signText(t, checkpointText(f.origin, s, refRoot(f.hashes[:s])), f.signer())
	}
	return f
}

func (f *fixture) signer() testSigner { return testSigner{f.origin, f.key} }

// receipt is the receipt of leaf i with the proof of the checkpoint of
// the given size, as OpenExec publishes it (JSON numbers become float64
// when it goes through json.Unmarshal; it prints the same).
func (f *fixture) receipt(i, size int) map[string]any {
	r := map[string]any{"created_at": "2025-01-02T03:04:05Z"}
	for _, k := range []string{"id", "nonce", "action", "request_hash", "status", "approved",
		"result", "receipt", "error_code", "detail", "approval_id"} {
		r[k] = f.fields[i][k]
	}
	r["action_code_hash"] = f.fields[i]["action_code_hash"] // nil when the leaf has none
	var incl []string
	for _, h := range refPath(i, f.hashes[:size]) {
		incl = append(incl, base64.StdEncoding.EncodeToString(h))
	}
	if incl == nil {
		incl = []string{}
	}
	r["proof"] = map[string]any{
		"log_origin": f.origin, "log_index": i, "leaf": string(f.leaves[i]),
		"checkpoint": f.notes[size], "inclusion": incl,
	}
	return r
}

// receipts is one receipt per leaf, each with the first checkpoint that
// holds it, and a replay of leaf 3 proved against the last checkpoint.
func (f *fixture) receipts() []map[string]any {
	var rs []map[string]any
	for i := range f.leaves {
		for _, s := range f.sizes {
			if i < s {
				rs = append(rs, f.receipt(i, s))
				break
			}
		}
	}
	replay := f.receipt(min(3, len(f.leaves)-1), f.sizes[len(f.sizes)-1])
	replay["status"] = "replayed"
	return append(rs, replay)
}

func jsonLines(rs []map[string]any) string {
	var b strings.Builder
	for _, r := range rs {
		b.Write(canonical(r))
		b.WriteString("\n")
	}
	return b.String()
}

// deepCopy copies receipts through JSON.
func deepCopy(rs []map[string]any) []map[string]any {
	var out []map[string]any
	if err := json.Unmarshal([]byte(`[`+strings.Join(strings.Split(strings.TrimSpace(jsonLines(rs)), "\n"), ",")+`]`), &out); err != nil {
		panic(err)
	}
	return out
}

func proofOf(r map[string]any) map[string]any { return r["proof"].(map[string]any) }

// ---- Running the command.

type result struct {
	code           int
	stdout, stderr string
}

func runVerifier(stdin string, args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

func trustedKeysFile(t *testing.T, keys ...ed25519.PrivateKey) string {
	t.Helper()
	if len(keys) == 0 {
		keys = []ed25519.PrivateKey{testKey("log")}
	}
	return writeFile(t, "trusted.pem", pemPublic(t, keys...))
}

// ---- Tests.

func TestValidReceipts(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	keys := trustedKeysFile(t)
	in := jsonLines(f.receipts())
	r := runVerifier(in, "receipts", "--trusted-keys", keys)
	if r.code != 0 || r.stdout != "21 receipts valid, 1 logs, largest checkpoint size 20\n" || r.stderr != "" {
		t.Fatalf("valid receipts: %v", r)
	}
	// The same from a file, flags after it.
	p := writeFile(t, "receipts.jsonl", "\n"+in+"\n\n")
	if r := runVerifier("", "receipts", p, "--trusted-keys", keys); r.code != 0 {
		t.Fatalf("valid receipts from a file: %v", r)
	}
}

func TestValidLog(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	r := runVerifier(jsonLines(f.receipts()), "log", "--trusted-keys", trustedKeysFile(t), "-")
	want := "origin " + testOrigin + ": 20 leaves, 3 checkpoints, consistent\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("valid log: %v", r)
	}
}

func TestTwoLogs(t *testing.T) {
	a := newFixture(t, fixtureOptions{})
	b := newFixture(t, fixtureOptions{origin: "openexec/fedcba9876543210", key: testKey("other log"), n: 7, sizes: []int{1, 2, 7}})
	in := jsonLines(a.receipts()) + jsonLines(b.receipts())
	keys := trustedKeysFile(t, testKey("log"), testKey("other log"))
	r := runVerifier(in, "receipts", "--trusted-keys", keys)
	if r.code != 0 || r.stdout != "29 receipts valid, 2 logs, largest checkpoint size 20\n" {
		t.Fatalf("two logs: %v", r)
	}
	r = runVerifier(in, "log", "--trusted-keys", keys)
	want := "origin openexec/0123456789abcdef: 20 leaves, 3 checkpoints, consistent\n" +
		"origin openexec/fedcba9876543210: 7 leaves, 3 checkpoints, consistent\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("two logs: %v", r)
	}
	// Only one log's key trusted: the other's receipts are refused.
	r = runVerifier(in, "receipts", "--trusted-keys", trustedKeysFile(t))
	if r.code != 1 || strings.Count(r.stderr, "no signature by a trusted key") != 8 {
		t.Fatalf("one key of two: %v", r)
	}
}

// HTTP answers of /execute: result is the object, result_json its text;
// a pretty-printed document; null and absent alike.
func TestHTTPAnswers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	keys := trustedKeysFile(t)
	rs := deepCopy(f.receipts())
	var docs []string
	for _, i := range []int{0, 1, 4, 6} {
		r := rs[i]
		if s, ok := r["result"].(string); ok {
			r["result_json"] = s
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				t.Fatal(err)
			}
			r["result"] = v
		} else {
			r["result_json"] = nil
		}
		if r["approval_id"] == nil {
			delete(r, "approval_id") // null in the leaf: absent is the same
		}
		b, _ := json.MarshalIndent(r, "", "  ")
		docs = append(docs, string(b))
	}
	// Without result_json, a result that is the object itself.
	delete(rs[2], "result_json")
	var v any
	json.Unmarshal([]byte(rs[2]["result"].(string)), &v)
	rs[2]["result"] = v
	docs = append(docs, string(canonical(rs[2])))

	r := runVerifier(strings.Join(docs, "\n"), "receipts", "--trusted-keys", keys)
	if r.code != 0 || r.stdout != "5 receipts valid, 1 logs, largest checkpoint size 12\n" {
		t.Fatalf("HTTP answers: %v", r)
	}

	// A result_json that differs from the leaf's result is refused even
	// when result itself is right.
	bad := deepCopy(rs[:1])[0]
	bad["result_json"] = `{"sum":1}`
	r = runVerifier(string(canonical(bad)), "receipts", "--trusted-keys", keys)
	if r.code != 1 || !strings.Contains(r.stderr, "in the receipt's result_json") {
		t.Fatalf("HTTP answer with another result_json: %v", r)
	}
	// And a result that differs while result_json is right (a Kafka
	// receipt carries both as text; an HTTP answer result as a value).
	for _, forged := range []any{`{"sum":1}`, map[string]any{"sum": 1}} {
		bad = deepCopy(rs[:1])[0]
		bad["result_json"] = f.receipts()[0]["result"] // the leaf's text
		bad["result"] = forged
		r = runVerifier(string(canonical(bad)), "receipts", "--trusted-keys", keys)
		if r.code != 1 || !strings.Contains(r.stderr, "leaf: result is") {
			t.Fatalf("receipt with another result beside the right result_json: %v", r)
		}
	}
}

// Each receipt that must be refused, alone, and the reason expected.
func TestRefusedReceipts(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	keys := trustedKeysFile(t)
	stranger := testSigner{testOrigin, testKey("stranger")}
	cases := []struct {
		name   string
		index  int // the receipt of f.receipts() changed
		change func(r map[string]any, all []map[string]any)
		want   string
	}{
		{"changed result", 2, func(r map[string]any, _ []map[string]any) {
			r["result"] = `{"sum":7,"text":"caf\u00e9 \"2\""}`
		}, "leaf: result is"},
		{"changed status executed to rejected", 1, func(r map[string]any, _ []map[string]any) {
			r["status"] = "rejected"
		}, `leaf: status "executed" does not match the receipt's status "rejected"`},
		{"rejected shown as executed", 4, func(r map[string]any, _ []map[string]any) {
			r["status"] = "executed"
		}, `leaf: status "rejected" does not match`},
		{"unknown status", 1, func(r map[string]any, _ []map[string]any) {
			r["status"] = "done"
		}, `does not match the receipt's status "done"`},
		{"changed approved", 0, func(r map[string]any, _ []map[string]any) {
			r["approved"] = true
		}, "leaf: approved is false in the leaf but true"},
		{"changed error code", 4, func(r map[string]any, _ []map[string]any) {
			r["error_code"] = "OTHER"
		}, "leaf: error_code is"},
		{"approval id null in the leaf", 1, func(r map[string]any, _ []map[string]any) {
			r["approval_id"] = "approval-1"
		}, "leaf: approval_id is null in the leaf"},
		{"code hash claimed for a built-in", 0, func(r map[string]any, _ []map[string]any) {
			r["action_code_hash"] = "c0de"
		}, "leaf: action_code_hash is null in the leaf"},
		{"changed code hash", 2, func(r map[string]any, _ []map[string]any) {
			r["action_code_hash"] = "c0de"
		}, "leaf: action_code_hash is"},
		{"code hash left out", 2, func(r map[string]any, _ []map[string]any) {
			r["action_code_hash"] = nil
		}, "leaf: action_code_hash is"},
		{"proof taken from another leaf", 1, func(r map[string]any, all []map[string]any) {
			r["proof"] = all[2]["proof"]
		}, `leaf: nonce is "nonce-2" in the leaf but "nonce-1" in the receipt`},
		{"proof of another leaf, same index", 1, func(r map[string]any, all []map[string]any) {
			// The leaf and inclusion of leaf 2, claimed as index 1.
			p := all[2]["proof"].(map[string]any)
			p["log_index"] = 1
			r["proof"] = p
		}, "inclusion: leaf 1 is not in the tree of size 5"},
		{"inclusion path of another leaf", 1, func(r map[string]any, all []map[string]any) {
			proofOf(r)["inclusion"] = proofOf(all[2])["inclusion"]
		}, "inclusion: leaf 1 is not in the tree of size 5"},
		{"tampered inclusion hash", 7, func(r map[string]any, _ []map[string]any) {
			incl := proofOf(r)["inclusion"].([]any)
			h, _ := base64.StdEncoding.DecodeString(incl[1].(string))
			h[0] ^= 1
			incl[1] = base64.StdEncoding.EncodeToString(h)
		}, "inclusion: leaf 7 is not in the tree of size 12"},
		{"one inclusion hash too many", 7, func(r map[string]any, _ []map[string]any) {
			p := proofOf(r)
			p["inclusion"] = append(p["inclusion"].([]any), p["inclusion"].([]any)[0])
		}, "wrong proof size"},
		{"inclusion hash of 31 bytes", 7, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["inclusion"].([]any)[0] = base64.StdEncoding.EncodeToString(make([]byte, 31))
		}, "proof: inclusion[0]: "},
		{"inclusion hash not base64", 7, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["inclusion"].([]any)[0] = "not base64!"
		}, "proof: inclusion[0]: "},
		{"index at the checkpoint's size", 19, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["log_index"] = 20
		}, "inclusion: proof.log_index 20 is not below the checkpoint's size 20"},
		{"index beyond the checkpoint's size", 3, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["log_index"] = 1000
		}, "is not below the checkpoint's size 5"},
		{"negative index", 3, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["log_index"] = -1
		}, "proof: log_index: -1 is not a non-negative integer"},
		{"checkpoint signed by an untrusted key", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["checkpoint"] = signText(t, checkpointText(testOrigin, 5, refRoot(f.hashes[:5])), stranger)
		}, "checkpoint: checkpoint has no signature by a trusted key"},
		{"trusted key's signature broken", 1, func(r map[string]any, _ []map[string]any) {
			n := proofOf(r)["checkpoint"].(string)
			i := strings.LastIndex(n, " ") + 10
			c := byte('A')
			if n[i] == 'A' {
				c = 'B'
			}
			proofOf(r)["checkpoint"] = n[:i] + string(c) + n[i+1:]
		}, "checkpoint: checkpoint has a bad signature by a trusted key"},
		{"checkpoint text changed after signing", 1, func(r map[string]any, _ []map[string]any) {
			n := proofOf(r)["checkpoint"].(string)
			proofOf(r)["checkpoint"] = strings.Replace(n, "\n5\n", "\n6\n", 1)
		}, "checkpoint: checkpoint has a bad signature by a trusted key"},
		{"trusted key signing under another name", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["checkpoint"] = signText(t, checkpointText(testOrigin, 5, refRoot(f.hashes[:5])),
				testSigner{"someone-else", f.key})
		}, "has no trusted signature under that name"},
		{"checkpoint of another origin", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["checkpoint"] = signText(t, checkpointText("openexec/other", 5, refRoot(f.hashes[:5])),
				testSigner{"openexec/other", f.key})
		}, `checkpoint: origin "openexec/other", but proof.log_origin is "openexec/0123456789abcdef"`},
		{"checkpoint size with a leading zero", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["checkpoint"] = signText(t, fmt.Sprintf("%s\n05\n%s\n", testOrigin,
				base64.StdEncoding.EncodeToString(refRoot(f.hashes[:5]))), f.signer())
		}, `checkpoint size "05" is not a decimal number`},
		{"checkpoint root of 31 bytes", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["checkpoint"] = signText(t, fmt.Sprintf("%s\n5\n%s\n", testOrigin,
				base64.StdEncoding.EncodeToString(refRoot(f.hashes[:5])[:31])), f.signer())
		}, "checkpoint root: "},
		{"checkpoint of two lines", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["checkpoint"] = signText(t, testOrigin+"\n5\n", f.signer())
		}, "checkpoint text has 2 lines"},
		{"checkpoint not a note", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["checkpoint"] = checkpointText(testOrigin, 5, refRoot(f.hashes[:5]))
		}, "checkpoint is not a signed note"},
		{"no proof", 1, func(r map[string]any, _ []map[string]any) {
			delete(r, "proof")
		}, "proof: the receipt has no proof"},
		{"null proof", 1, func(r map[string]any, _ []map[string]any) {
			r["proof"] = nil
		}, "proof: the receipt has no proof"},
		{"proof without its checkpoint", 1, func(r map[string]any, _ []map[string]any) {
			delete(proofOf(r), "checkpoint")
		}, "proof: no checkpoint"},
		{"proof without inclusion", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["inclusion"] = nil
		}, "proof: inclusion is null, not an array"},
		{"leaf changed", 1, func(r map[string]any, _ []map[string]any) {
			p := proofOf(r)
			p["leaf"] = strings.Replace(p["leaf"].(string), `"tenant":"default"`, `"tenant":"other"`, 1)
		}, "inclusion: leaf 1 is not in the tree"},
		{"log origin changed", 1, func(r map[string]any, _ []map[string]any) {
			proofOf(r)["log_origin"] = "openexec/other"
		}, "but proof.log_origin is \"openexec/other\""},
		{"receipt hash changed", 0, func(r map[string]any, _ []map[string]any) {
			r["receipt"] = strings.Repeat("0", 64)
		}, "leaf: receipt is"},
	}
	base := f.receipts()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			all := deepCopy(base)
			c.change(all[c.index], all)
			in := jsonLines(base[:c.index]) + jsonLines(all[c.index:c.index+1]) + jsonLines(base[c.index+1:])
			r := runVerifier(in, "receipts", "--trusted-keys", keys)
			wantLine := fmt.Sprintf("stdin:%d: receipt nonce %q: ", c.index+1, fmt.Sprintf("nonce-%d", c.index))
			if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, wantLine) ||
				!strings.Contains(r.stderr, c.want) {
				t.Fatalf("want exit 1 and one line %q...%q, got %v", wantLine, c.want, r)
			}
			if want := fmt.Sprintf("%d receipts valid, ", len(base)-1); !strings.HasPrefix(r.stdout, want) {
				t.Fatalf("summary: want %q..., got %q", want, r.stdout)
			}
		})
	}
}

// Leaves that are themselves wrong, though the log signed them and the
// receipt repeats them.
func TestRefusedLeaves(t *testing.T) {
	keys := trustedKeysFile(t)
	cases := []struct {
		name string
		o    fixtureOptions
		want string
	}{
		{"receipt hash not SHA-256(id:result)", fixtureOptions{fields: func(i int, f map[string]any) {
			if i == 2 {
				f["receipt"] = receiptHash(f["id"].(string), `{"sum":0}`)
			}
		}}, "receipt hash: "},
		{"receipt hash in upper case", fixtureOptions{fields: func(i int, f map[string]any) {
			if i == 2 {
				f["receipt"] = strings.ToUpper(f["receipt"].(string))
			}
		}}, "receipt hash: "},
		{"executed without a result", fixtureOptions{fields: func(i int, f map[string]any) {
			if i == 2 {
				f["result"] = nil
			}
		}}, `receipt hash: a receipt of status "executed" without a result`},
		{"leaf with spaces", fixtureOptions{encoded: func(i int, leaf []byte) []byte {
			if i == 2 {
				return bytes.Replace(leaf, []byte(`,"tenant"`), []byte(`, "tenant"`), 1)
			}
			return leaf
		}}, "leaf: not canonical JSON: it has white space"},
		{"leaf keys not sorted", fixtureOptions{encoded: func(i int, leaf []byte) []byte {
			if i == 2 {
				// "action" moved from first to last.
				rest := bytes.TrimPrefix(leaf, []byte(`{"action":"add",`))
				return append(append([]byte(`{`), rest[:len(rest)-1]...), `,"action":"add"}`...)
			}
			return leaf
		}}, "leaf: not canonical JSON: key"},
		{"leaf without tenant", fixtureOptions{fields: func(i int, f map[string]any) {
			if i == 2 {
				delete(f, "tenant")
			}
		}}, "leaf: no field tenant"},
		{"leaf with another field", fixtureOptions{fields: func(i int, f map[string]any) {
			if i == 2 {
				f["extra"] = 1
			}
		}}, "leaf: unexpected field extra"},
		{"leaf not JSON", fixtureOptions{encoded: func(i int, leaf []byte) []byte {
			if i == 2 {
				return leaf[:len(leaf)-1]
			}
			return leaf
		}}, "leaf: not JSON"},
		{"leaf of another index", fixtureOptions{fields: func(i int, f map[string]any) {
			if i == 2 {
				f["log_index"] = 3
			}
		}}, "leaf: log_index 3, but proof.log_index is 2"},
		{"leaf status unknown", fixtureOptions{fields: func(i int, f map[string]any) {
			if i == 2 {
				f["status"] = "replayed"
			}
		}}, `leaf: status "replayed" does not match`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.o)
			r := runVerifier(jsonLines(f.receipts()), "receipts", "--trusted-keys", keys)
			if r.code != 1 || !strings.HasPrefix(r.stderr, `stdin:3: receipt nonce "nonce-2": `) ||
				!strings.Contains(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("want exit 1 and one line on nonce-2 with %q, got %v", c.want, r)
			}
		})
	}
}

func TestInputErrors(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	keys := trustedKeysFile(t)
	rs := f.receipts()
	in := jsonLines(rs[:2]) + "{not json\n" + "[1]\n" + jsonLines(rs[2:3])
	r := runVerifier(in, "receipts", "--trusted-keys", keys)
	if r.code != 1 || r.stdout != "3 receipts valid, 1 logs, largest checkpoint size 5\n" ||
		!strings.Contains(r.stderr, "stdin:3: receipt nonce \"?\": not JSON") ||
		!strings.Contains(r.stderr, "stdin:4: receipt nonce \"?\": not a JSON object") {
		t.Fatalf("lines that are not receipts: %v", r)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "usage:"},
		{"unknown command", []string{"verify"}, "unknown command"},
		{"no keys", []string{"receipts"}, "--trusted-keys FILE is required"},
		{"missing keys file", []string{"receipts", "--trusted-keys", "/nonexistent/keys.pem"}, "trusted keys:"},
		{"missing input", []string{"receipts", "--trusted-keys", keys, "/nonexistent/in"}, "/nonexistent/in"},
		{"two inputs", []string{"log", "--trusted-keys", keys, "a", "b"}, "one input at most"},
		{"bad flag", []string{"checkpoint", "--trusted", keys}, "flag provided but not defined"},
		{"consistency without proof", []string{"consistency", "--trusted-keys", keys, "--old", keys, "--new", keys}, "are required"},
	} {
		if r := runVerifier("", c.args...); r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: want exit 2 and %q, got %v", c.name, c.want, r)
		}
	}
}

func TestTrustedKeysFile(t *testing.T) {
	k1, k2 := testKey("log"), testKey("other")
	two := pemPublic(t, k1, k2)
	if keys, err := parseTrustedKeys("f", []byte(two+"\n"+pemPublic(t, k1))); err != nil || len(keys) != 2 {
		t.Fatalf("two keys, one twice: %v %v", keys, err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), strings.NewReader(strings.Repeat("x", 100)))
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}))
	privDER, _ := x509.MarshalPKCS8PrivateKey(k1)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	for name, content := range map[string]string{
		"empty":              "",
		"text before":        "my key\n" + two,
		"text after":         two + "end\n",
		"text between":       pemPublic(t, k1) + "#\n" + pemPublic(t, k2),
		"ECDSA key":          two + ecPEM,
		"private key":        privPEM,
		"truncated block":    two[:len(two)-30],
		"headers":            strings.Replace(pemPublic(t, k1), "KEY-----\n", "KEY-----\nProc-Type: 4,ENCRYPTED\n\n", 1),
		"bad DER":            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		"raw key, no header": base64.StdEncoding.EncodeToString(k1.Public().(ed25519.PublicKey)) + "\n",
	} {
		if _, err := parseTrustedKeys("f", []byte(content)); err == nil {
			t.Errorf("%s: accepted", name)
		}
		f := newFixture(t, fixtureOptions{n: 1, sizes: []int{1}})
		if r := runVerifier(jsonLines(f.receipts()), "receipts", "--trusted-keys", writeFile(t, "k.pem", content)); r.code != 2 {
			t.Errorf("%s: want exit 2, got %v", name, r)
		}
	}
}

// Log mode: forks, gaps and checkpoints that disagree with the leaves.
func TestRefusedLogs(t *testing.T) {
	keys := trustedKeysFile(t)
	a := newFixture(t, fixtureOptions{})
	// Tree b is tree a with another leaf 10 (another detail), signed by
	// the same key: a split view.
	b := newFixture(t, fixtureOptions{fields: func(i int, f map[string]any) {
		if i == 10 {
			f["approval_id"] = "approval-x"
		}
	}})
	check := func(name, in, want string) {
		t.Helper()
		r := runVerifier(in, "log", "--trusted-keys", keys)
		if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stdout, "NOT consistent") {
			t.Errorf("%s: want exit 1 and %q, got %v", name, want, r)
		}
	}
	rs := a.receipts()

	// Each receipt valid alone, but leaf 10 differs between the two.
	forked := jsonLines(rs) + jsonLines([]map[string]any{b.receipt(10, 20)})
	if r := runVerifier(forked, "receipts", "--trusted-keys", keys); r.code != 0 {
		t.Fatalf("the receipts of a fork are each valid: %v", r)
	}
	check("fork", forked, "origin "+testOrigin+": fork at index 10: lines 11 and 22 carry different leaves")

	// No receipt of leaf 8.
	check("gap", jsonLines(rs[:8])+jsonLines(rs[9:]), "gap at index 8: ")
	// The last leaves missing: the checkpoint of size 20 holds them.
	check("gap at the end", jsonLines(rs[:18]), "gap at index 18: no receipt carries that leaf of the 20")

	// b's checkpoint of size 20 with a receipt of leaf 3, the same in both
	// trees: no fork among the leaves, but that checkpoint is not theirs.
	split := jsonLines(rs) + jsonLines([]map[string]any{b.receipt(3, 20)})
	check("split view", split, "checkpoint of size 20 (line 22) has root")

	// The receipts of a larger tree whose leaf 0 is another: its leaves
	// 20 to 23 extend the log without a gap or a fork, but its checkpoint
	// rewrote history.
	c := newFixture(t, fixtureOptions{n: 24, sizes: []int{24}, fields: func(i int, f map[string]any) {
		if i == 0 {
			f["detail"] = "rewritten"
		}
	}})
	var more []map[string]any
	for i := 20; i < 24; i++ {
		more = append(more, c.receipt(i, 24))
	}
	check("history rewritten", jsonLines(rs)+jsonLines(more), "checkpoint of size 24 (line 22) has root")

	// An empty input is no log at all.
	if r := runVerifier("", "log", "--trusted-keys", keys); r.code != 0 || r.stdout != "no logs\n" {
		t.Errorf("empty input: %v", r)
	}
}

func TestCheckpointCommand(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	keys := trustedKeysFile(t)
	r := runVerifier(f.notes[12], "checkpoint", "--trusted-keys", keys)
	want := fmt.Sprintf("%s\n12\n%x\n", testOrigin, refRoot(f.hashes[:12]))
	if r.code != 0 || r.stdout != want {
		t.Fatalf("checkpoint: want %q, got %v", want, r)
	}
	// With an extension line, and a second signature by a stranger.
	n := signText(t, checkpointText(testOrigin, 12, refRoot(f.hashes[:12]))+"extension\n",
		f.signer(), testSigner{"witness", testKey("witness")})
	if r := runVerifier("", "checkpoint", "--trusted-keys", keys, writeFile(t, "cp", n)); r.code != 0 || r.stdout != want {
		t.Fatalf("checkpoint with extension: %v", r)
	}
	// Only the stranger's signature.
	n = signText(t, checkpointText(testOrigin, 12, refRoot(f.hashes[:12])), testSigner{"witness", testKey("witness")})
	if r := runVerifier(n, "checkpoint", "--trusted-keys", keys); r.code != 1 || !strings.Contains(r.stderr, "no signature by a trusted key") {
		t.Fatalf("untrusted checkpoint: %v", r)
	}
	// Size 0 must have the empty tree's root.
	empty := sha256.Sum256(nil)
	if r := runVerifier(signText(t, checkpointText(testOrigin, 0, empty[:]), f.signer()), "checkpoint", "--trusted-keys", keys); r.code != 0 {
		t.Fatalf("empty checkpoint: %v", r)
	}
	if r := runVerifier(signText(t, checkpointText(testOrigin, 0, refRoot(f.hashes[:1])), f.signer()), "checkpoint", "--trusted-keys", keys); r.code != 1 {
		t.Fatalf("empty checkpoint with another root: %v", r)
	}
}

func TestConsistencyCommand(t *testing.T) {
	f := newFixture(t, fixtureOptions{sizes: []int{1, 5, 8, 12, 20}})
	keys := trustedKeysFile(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	proofJSON := func(p [][]byte, bare bool) string {
		list := []string{}
		for _, h := range p {
			list = append(list, base64.StdEncoding.EncodeToString(h))
		}
		if bare {
			return string(canonical(list))
		}
		return string(canonical(map[string]any{"proof": list}))
	}
	consistency := func(m, n int, p string) result {
		return runVerifier("", "consistency", "--trusted-keys", keys, "--old", file("old", f.notes[m]),
			"--new", file("new", f.notes[n]), "--proof", file("proof.json", p))
	}
	for _, mn := range [][2]int{{1, 5}, {5, 8}, {5, 12}, {8, 20}, {12, 20}, {1, 20}, {20, 20}} {
		m, n := mn[0], mn[1]
		p := refConsistency(m, f.hashes[:n])
		if r := consistency(m, n, proofJSON(p, m%2 == 0)); r.code != 0 ||
			r.stdout != fmt.Sprintf("origin %s: size %d is consistent with size %d\n", testOrigin, m, n) {
			t.Errorf("%d -> %d: %v", m, n, r)
		}
		if len(p) > 0 {
			bad := append([][]byte{}, p...)
			bad[len(bad)-1] = refLeafHash([]byte("x"))
			if r := consistency(m, n, proofJSON(bad, false)); r.code != 1 || !strings.Contains(r.stderr, "is not a prefix") {
				t.Errorf("%d -> %d with a tampered proof: %v", m, n, r)
			}
			if r := consistency(n, m, proofJSON(p, false)); r.code != 1 || !strings.Contains(r.stderr, "is larger than") {
				t.Errorf("%d -> %d: %v", n, m, r)
			}
		}
	}
	// A proof between two trees that differ.
	g := newFixture(t, fixtureOptions{sizes: []int{20}, fields: func(i int, f map[string]any) {
		if i == 1 {
			f["detail"] = "other"
		}
	}})
	p := refConsistency(12, f.hashes[:20])
	r := runVerifier("", "consistency", "--trusted-keys", keys, "--old", file("old", f.notes[12]),
		"--new", file("new", g.notes[20]), "--proof", file("proof.json", proofJSON(p, false)))
	if r.code != 1 || !strings.Contains(r.stderr, "size 12 is not a prefix of size 20") {
		t.Errorf("forked trees: %v", r)
	}
	if r := consistency(5, 12, `{"hashes": []}`); r.code != 1 || !strings.Contains(r.stderr, `no "proof" array`) {
		t.Errorf("no proof array: %v", r)
	}
	// Another origin.
	h := newFixture(t, fixtureOptions{origin: "openexec/other", sizes: []int{20}})
	r = runVerifier("", "consistency", "--trusted-keys", keys, "--old", file("old", f.notes[12]),
		"--new", file("new", h.notes[20]), "--proof", file("proof.json", proofJSON(p, false)))
	if r.code != 1 || !strings.Contains(r.stderr, "old checkpoint is of origin") {
		t.Errorf("another origin: %v", r)
	}
}

// The consistency proofs that log mode builds from the library's node
// lists equal RFC 9162's SUBPROOF, and the library accepts them; so do the
// inclusion proofs of the reference tree.
func TestProofsMatchReference(t *testing.T) {
	var hashes [][]byte
	for i := 0; i < 40; i++ {
		hashes = append(hashes, refLeafHash([]byte(fmt.Sprintf("leaf %d", i))))
	}
	tr := newTree()
	for _, h := range hashes {
		if err := tr.appendLeaf(h); err != nil {
			t.Fatal(err)
		}
	}
	for n := 1; n <= len(hashes); n++ {
		root := refRoot(hashes[:n])
		for m := 0; m <= n; m++ {
			got, err := tr.consistencyProof(uint64(m), uint64(n))
			if err != nil {
				t.Fatalf("%d -> %d: %v", m, n, err)
			}
			want := refConsistency(m, hashes[:n])
			if len(got) != len(want) {
				t.Fatalf("%d -> %d: %d hashes, want %d", m, n, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%d -> %d: hash %d differs", m, n, i)
				}
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(m), uint64(n), got, refRoot(hashes[:m]), root); err != nil {
				t.Fatalf("%d -> %d: %v", m, n, err)
			}
			if m < n {
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(m), uint64(n), hashes[m], refPath(m, hashes[:n]), root); err != nil {
					t.Fatalf("inclusion %d in %d: %v", m, n, err)
				}
			}
		}
	}
}

func TestSplitDocuments(t *testing.T) {
	in := "\n{\"a\": 1}\n\n  {\n  \"b\": [\n1]\n}\nnot json\n{\"c\":2} {\"d\":3}\n[1,\n"
	docs := splitDocuments([]byte(in))
	var got []string
	for _, d := range docs {
		s := fmt.Sprintf("%d:", d.line)
		if d.err != nil {
			s += "error"
		} else {
			var b bytes.Buffer
			json.Compact(&b, d.raw)
			s += b.String()
		}
		got = append(got, s)
	}
	want := `2:{"a":1} 4:{"b":[1]} 8:error 9:{"c":2} 9:{"d":3} 10:error`
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestPublishedCheckpoints(t *testing.T) {
	keys := trustedKeysFile(t)
	f := newFixture(t, fixtureOptions{})
	in := jsonLines(f.receipts())
	noteLines := func(notes ...string) string {
		var b strings.Builder
		for _, n := range notes {
			b.Write(canonical(n))
			b.WriteString("\n")
		}
		return b.String()
	}
	logWith := func(published string) result {
		return runVerifier(in, "log", "--trusted-keys", keys, "--checkpoints",
			writeFile(t, "checkpoints.jsonl", published))
	}
	// The checkpoints the receipts carry, plus one of size 8 that no
	// receipt carries: all roots of the leaves, in order.
	at8 := signText(t, checkpointText(f.origin, 8, refRoot(f.hashes[:8])), f.signer())
	r := logWith(noteLines(f.notes[5], at8, f.notes[12], f.notes[20]))
	if r.code != 0 || r.stdout != "origin "+testOrigin+": 20 leaves, 4 checkpoints, consistent\n" || r.stderr != "" {
		t.Fatalf("published checkpoints: %v", r)
	}
	refused := func(name, published, want string) {
		t.Helper()
		r := logWith(published)
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: want exit 1 and %q, got %v", name, want, r)
		}
	}
	refused("out of order", noteLines(f.notes[5], f.notes[20], f.notes[12]),
		"checkpoints.jsonl:3: checkpoint of size 12 published after one of size 20")
	// Another tree's checkpoint of size 20, signed by the same key.
	b := newFixture(t, fixtureOptions{fields: func(i int, fl map[string]any) {
		if i == 10 {
			fl["approval_id"] = "approval-x"
		}
	}})
	refused("split view", noteLines(f.notes[5], b.notes[20]),
		"checkpoints.jsonl:2) has root")
	refused("split view only published", noteLines(b.notes[12]),
		"checkpoints.jsonl:1) has root")
	other := newFixture(t, fixtureOptions{key: testKey("rogue")})
	refused("untrusted key", noteLines(other.notes[5]), "checkpoints.jsonl:1: ")
	refused("not a string", `{"note": 1}`+"\n", "checkpoints.jsonl:1: not a JSON string holding a note")
	beyond := signText(t, checkpointText(f.origin, 25, refRoot(append(append([][]byte{}, f.hashes...), f.hashes[:5]...))), f.signer())
	refused("beyond the receipts", noteLines(beyond), "gap at index 20")
	if r := runVerifier(in, "receipts", "--trusted-keys", keys, "--checkpoints", "x"); r.code != 2 {
		t.Errorf("--checkpoints with receipts: %v", r)
	}
}
