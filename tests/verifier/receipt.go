package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// leafFields are the fields of a log leaf, in their canonical (sorted)
// order; a leaf has all of them, perhaps optionalLeafFields, and no other.
var leafFields = []string{
	"action", "approval_id", "approved", "detail", "error_code", "id", "log_index",
	"nonce", "receipt", "recorded_at", "request_hash", "result", "status", "tenant",
}

// optionalLeafFields are in a leaf only when they are not null:
// action_code_hash, when an operator's Lua action ran.
var optionalLeafFields = []string{"action_code_hash"}

// comparedFields are the leaf fields that must equal the receipt's, in the
// order they are compared (result is compared on its own, see below).
var comparedFields = []string{
	"nonce", "action", "request_hash", "id", "receipt", "result", "error_code",
	"detail", "approval_id", "approved", "action_code_hash",
}

// A receiptCheck is the outcome of the checks of one receipt.
type receiptCheck struct {
	line  int
	nonce string // for messages: the nonce, or "?"

	// Set once the proof is authenticated (checks 1 to 3 passed): the leaf
	// is then committed to by a checkpoint that a trusted key signed.
	included bool
	origin   string
	index    uint64
	leaf     []byte
	cp       *checkpoint // set once check 2 passed

	err error // the first failing check, or nil
}

// checkReceipt runs the five checks of one receipt, stopping at the first
// that fails.
func checkReceipt(t *trust, doc document) *receiptCheck {
	rc := &receiptCheck{line: doc.line, nonce: "?"}
	if doc.err != nil {
		rc.err = fmt.Errorf("not JSON: %v", doc.err)
		return rc
	}
	obj, err := decodeObject(doc.raw)
	if err != nil {
		rc.err = fmt.Errorf("not a JSON object: %v", err)
		return rc
	}
	if s, ok := stringField(obj, "nonce"); ok {
		rc.nonce = s
	}
	rc.err = rc.check(t, obj)
	return rc
}

func (rc *receiptCheck) check(t *trust, obj map[string]json.RawMessage) error {
	// 1. The proof and its five fields.
	p, err := parseProof(obj)
	if err != nil {
		return fmt.Errorf("proof: %v", err)
	}
	rc.origin, rc.index, rc.leaf = p.origin, p.index, []byte(p.leaf)

	// 2. The checkpoint: signed by a trusted key, of the receipt's log.
	cp, err := t.open(p.checkpoint)
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	if cp.origin != p.origin {
		return fmt.Errorf("checkpoint: origin %q, but proof.log_origin is %q", cp.origin, p.origin)
	}
	rc.cp = cp

	// 3. The leaf is in the checkpoint's tree.
	if p.index >= cp.size {
		return fmt.Errorf("inclusion: proof.log_index %d is not below the checkpoint's size %d", p.index, cp.size)
	}
	leafHash := rfc6962.DefaultHasher.HashLeaf(rc.leaf)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.index, cp.size, leafHash, p.inclusion, cp.root); err != nil {
		return fmt.Errorf("inclusion: leaf %d is not in the tree of size %d: %v", p.index, cp.size, oneLine(err))
	}
	rc.included = true

	// 4. The leaf says what the receipt says.
	leaf, err := parseLeaf(rc.leaf)
	if err != nil {
		return fmt.Errorf("leaf: %v", err)
	}
	if n, err := parseIndex(leaf["log_index"]); err != nil {
		return fmt.Errorf("leaf: log_index: %v", err)
	} else if n != p.index {
		return fmt.Errorf("leaf: log_index %d, but proof.log_index is %d", n, p.index)
	}
	resultText, err := compareFields(leaf, obj)
	if err != nil {
		return fmt.Errorf("leaf: %v", err)
	}
	leafStatus, _ := stringField(leaf, "status")
	status, ok := stringField(obj, "status")
	if !ok {
		return fmt.Errorf("receipt status is %s, not a string", show(obj["status"]))
	}
	switch {
	case leafStatus == "executed" && (status == "executed" || status == "replayed"):
	case leafStatus == "rejected" && status == "rejected":
	default:
		return fmt.Errorf("leaf: status %s does not match the receipt's status %q", show(leaf["status"]), status)
	}

	// 5. The receipt hash of executed requests.
	if status == "executed" || status == "replayed" {
		id, ok := stringField(obj, "id")
		if !ok {
			return fmt.Errorf("receipt hash: id is %s, not a string", show(obj["id"]))
		}
		if resultText == nil {
			return fmt.Errorf("receipt hash: a receipt of status %q without a result", status)
		}
		got, ok := stringField(obj, "receipt")
		if !ok {
			return fmt.Errorf("receipt hash: receipt is %s, not a string", show(obj["receipt"]))
		}
		sum := sha256.Sum256([]byte(id + ":" + *resultText))
		if want := hex.EncodeToString(sum[:]); got != want {
			return fmt.Errorf("receipt hash: %q, but SHA-256(id:result) is %q", got, want)
		}
	}
	return nil
}

// A receiptProof is the "proof" object of a receipt.
type receiptProof struct {
	origin     string
	index      uint64
	leaf       string
	checkpoint string
	inclusion  [][]byte
}

func parseProof(obj map[string]json.RawMessage) (*receiptProof, error) {
	raw, ok := obj["proof"]
	if !ok || isNull(raw) {
		return nil, errors.New("the receipt has no proof")
	}
	po, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	for _, f := range []string{"log_origin", "log_index", "leaf", "checkpoint", "inclusion"} {
		if _, ok := po[f]; !ok {
			return nil, fmt.Errorf("no %s", f)
		}
	}
	p := &receiptProof{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"log_origin", &p.origin}, {"leaf", &p.leaf}, {"checkpoint", &p.checkpoint}} {
		s, ok := stringField(po, f.name)
		if !ok {
			return nil, fmt.Errorf("%s is %s, not a string", f.name, show(po[f.name]))
		}
		*f.dst = s
	}
	if p.index, err = parseIndex(po["log_index"]); err != nil {
		return nil, fmt.Errorf("log_index: %v", err)
	}
	var hashes []json.RawMessage
	if err := json.Unmarshal(po["inclusion"], &hashes); err != nil || hashes == nil {
		return nil, fmt.Errorf("inclusion is %s, not an array", show(po["inclusion"]))
	}
	for i, h := range hashes {
		var s string
		if err := json.Unmarshal(h, &s); err != nil {
			return nil, fmt.Errorf("inclusion[%d] is %s, not a string", i, show(h))
		}
		b, err := decodeHash(s)
		if err != nil {
			return nil, fmt.Errorf("inclusion[%d]: %v", i, err)
		}
		p.inclusion = append(p.inclusion, b)
	}
	return p, nil
}

// parseLeaf parses a leaf and checks its form: a canonical JSON object
// (no insignificant white space, keys sorted and unique) with exactly the
// fields of leafFields.
func parseLeaf(leaf []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(leaf) {
		return nil, errors.New("not JSON")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, leaf); err != nil {
		return nil, err
	}
	if !bytes.Equal(compact.Bytes(), leaf) {
		return nil, errors.New("not canonical JSON: it has white space between tokens")
	}
	dec := json.NewDecoder(bytes.NewReader(leaf))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	obj := make(map[string]json.RawMessage)
	prev := ""
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		if len(obj) > 0 && key <= prev {
			return nil, fmt.Errorf("not canonical JSON: key %q after %q", key, prev)
		}
		prev = key
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		obj[key] = v
	}
	for _, f := range leafFields {
		if _, ok := obj[f]; !ok {
			return nil, fmt.Errorf("no field %s", f)
		}
	}
	for k, v := range obj {
		if contains(leafFields, k) {
			continue
		}
		if !contains(optionalLeafFields, k) {
			return nil, fmt.Errorf("unexpected field %s", k)
		}
		if string(v) == "null" {
			return nil, fmt.Errorf("field %s is null (a leaf leaves it out instead)", k)
		}
	}
	return obj, nil
}

// compareFields compares the fields of comparedFields of a leaf and a
// receipt as JSON values. A field the receipt does not carry at all (an
// HTTP answer has no nonce or request_hash) claims nothing and is not
// compared; null is compared as null. The leaf's result text is claimed
// under two names: result_json (the text) and result (the text, or in an
// HTTP answer the JSON value it is, which must equal the leaf's text
// parsed); each the receipt carries is compared. Returns the result text,
// nil for null.
func compareFields(leaf, rec map[string]json.RawMessage) (*string, error) {
	var resultText *string
	for _, f := range comparedFields {
		lraw, present := leaf[f]
		if !present && contains(optionalLeafFields, f) {
			lraw = json.RawMessage("null") // left out of the leaf: null
		}
		lv, err := jsonValue(lraw)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		if f == "result" {
			// Both names are claims of the one result text: each the
			// receipt carries must be the leaf's (result also as the
			// JSON value that text is).
			ls, lok := lv.(string)
			if lok {
				resultText = &ls
			}
			for _, name := range []string{"result_json", "result"} {
				raw, ok := rec[name]
				if !ok {
					continue
				}
				rv, err := jsonValue(raw)
				if err != nil {
					return nil, fmt.Errorf("receipt %s: %v", name, err)
				}
				// (A string result may be that text, or the value
				// when the result itself is a string.)
				if name == "result" && rv != nil && lok && !reflect.DeepEqual(lv, rv) {
					parsed, err := jsonValue(json.RawMessage(ls))
					if err == nil && reflect.DeepEqual(parsed, rv) {
						continue
					}
				}
				if !reflect.DeepEqual(lv, rv) {
					where := "the receipt"
					if name != f {
						where = "the receipt's " + name
					}
					return nil, fmt.Errorf("%s is %s in the leaf but %s in %s", f, show(leaf[f]), show(raw), where)
				}
			}
			continue
		}
		raw := rec[f]
		if raw == nil {
			continue
		}
		rv, err := jsonValue(raw)
		if err != nil {
			return nil, fmt.Errorf("receipt %s: %v", f, err)
		}
		if !reflect.DeepEqual(lv, rv) {
			return nil, fmt.Errorf("%s is %s in the leaf but %s in the receipt", f, show(lraw), show(raw))
		}
	}
	return resultText, nil
}

// parseIndex parses a JSON number that is a non-negative integer.
func parseIndex(raw json.RawMessage) (uint64, error) {
	s := string(bytes.TrimSpace(raw))
	if !isDecimal(s) {
		return 0, fmt.Errorf("%s is not a non-negative integer", show(raw))
	}
	return strconv.ParseUint(s, 10, 64)
}

// decodeObject decodes a JSON object into its members, left raw.
func decodeObject(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("null")
	}
	return obj, nil
}

// jsonValue decodes a JSON value, numbers kept as their text; absent
// (nil) is null.
func jsonValue(raw json.RawMessage) (any, error) {
	if raw == nil {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func stringField(obj map[string]json.RawMessage, f string) (string, bool) {
	var s string
	raw, ok := obj[f]
	if !ok || isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// show prints a JSON value for a message: compact, at most 80 bytes;
// absent is "absent".
func show(raw json.RawMessage) string {
	if raw == nil {
		return "absent"
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		b.Reset()
		b.Write(raw)
	}
	s := b.String()
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// oneLine keeps an error message on one line (the library's root
// mismatch spans several).
func oneLine(err error) string {
	var mismatch proof.RootMismatchError
	if errors.As(err, &mismatch) {
		return fmt.Sprintf("calculated root %x, checkpoint root %x", mismatch.CalculatedRoot, mismatch.ExpectedRoot)
	}
	return string(bytes.ReplaceAll([]byte(err.Error()), []byte("\n"), []byte(" ")))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
