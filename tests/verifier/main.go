// Command verifier checks OpenExec's signed receipts independently of the
// C implementation, with the transparency-log ecosystem's own libraries:
// golang.org/x/mod/sumdb/note for the C2SP signed notes that carry the
// checkpoints, and github.com/transparency-dev/merkle for the RFC 6962 /
// RFC 9162 trees and proofs.
//
// Usage:
//
//	verifier receipts    --trusted-keys FILE [FILE|-]
//	verifier log         --trusted-keys FILE [--checkpoints FILE] [FILE|-]
//	verifier checkpoint  --trusted-keys FILE [FILE|-]
//	verifier consistency --trusted-keys FILE --old NOTE_FILE --new NOTE_FILE --proof JSON_FILE
//
// Exit status: 0 when everything is valid, 1 when something is not (one
// line per failure on standard error), 2 for a usage or I/O error.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

const (
	exitValid   = 0
	exitInvalid = 1
	exitUsage   = 2
)

const usage = `usage:
  verifier receipts    --trusted-keys FILE [FILE|-]
      checks each receipt (JSON lines, or JSON documents) against its proof
  verifier log         --trusted-keys FILE [--checkpoints FILE] [FILE|-]
      checks that the receipts of a run show append-only logs: no fork, no
      gap, every checkpoint the root of its leaves, consistent sizes; with
      --checkpoints, also the signed checkpoints of a file of JSON lines (each
      a JSON string: a note as the checkpoints topic carries it), in the order
      published: each signed, of a log the receipts show, the root of its
      leaves, and no smaller than the one published before it
  verifier checkpoint  --trusted-keys FILE [FILE|-]
      verifies one signed checkpoint; prints origin, size and root (hex)
  verifier consistency --trusted-keys FILE --old NOTE_FILE --new NOTE_FILE --proof JSON_FILE
      verifies a consistency proof ({"proof": [base64, ...]} or an array)
      between two signed checkpoints
exit status: 0 valid, 1 invalid (reasons on stderr), 2 usage or I/O error
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// cli is one invocation's streams.
type cli struct {
	stdin           io.Reader
	stdout, stderr  io.Writer
	checkpointsFile string // log: --checkpoints
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "receipts":
		return c.receipts(args[1:], false)
	case "log":
		return c.receipts(args[1:], true)
	case "checkpoint":
		return c.checkpoint(args[1:])
	case "consistency":
		return c.consistency(args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitValid
	}
	fmt.Fprintf(stderr, "verifier: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// usageError reports a usage or I/O error.
func (c *cli) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "verifier: "+format+"\n", args...)
	return exitUsage
}

// parse parses flags that may come before or after the positional
// arguments, and returns those.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// setUp parses a command's flags, loads the trusted keys and reads the
// input (a file, or standard input for "-" or none).
func (c *cli) setUp(args []string) (t *trust, name string, data []byte, code int) {
	fs := flag.NewFlagSet("verifier", flag.ContinueOnError)
	keysFile := fs.String("trusted-keys", "", "")
	fs.StringVar(&c.checkpointsFile, "checkpoints", "", "")
	pos, err := c.parse(fs, args)
	switch {
	case err != nil:
		return nil, "", nil, c.usageError("%v\n%s", err, usage)
	case *keysFile == "":
		return nil, "", nil, c.usageError("--trusted-keys FILE is required\n%s", usage)
	case len(pos) > 1:
		return nil, "", nil, c.usageError("one input at most, not %d\n%s", len(pos), usage)
	}
	keys, err := loadTrustedKeys(*keysFile)
	if err != nil {
		return nil, "", nil, c.usageError("trusted keys: %v", err)
	}
	path := ""
	if len(pos) == 1 {
		path = pos[0]
	}
	name, data, err = c.readInput(path)
	if err != nil {
		return nil, "", nil, c.usageError("%v", err)
	}
	return newTrust(keys), name, data, exitValid
}

func (c *cli) readInput(path string) (string, []byte, error) {
	if path == "" || path == "-" {
		data, err := io.ReadAll(c.stdin)
		return "stdin", data, err
	}
	data, err := os.ReadFile(path)
	return path, data, err
}

// receipts runs the receipt checks over every receipt of the input, then
// in log mode the checks of the logs they show.
func (c *cli) receipts(args []string, logMode bool) int {
	t, name, data, code := c.setUp(args)
	if t == nil {
		return code
	}
	code = exitValid
	var checks []*receiptCheck
	valid := 0
	origins := make(map[string]bool)
	var largest uint64
	for _, doc := range splitDocuments(data) {
		rc := checkReceipt(t, doc)
		checks = append(checks, rc)
		if rc.err != nil {
			fmt.Fprintf(c.stderr, "%s:%d: receipt nonce %q: %v\n", name, rc.line, rc.nonce, rc.err)
			code = exitInvalid
			continue
		}
		valid++
		origins[rc.origin] = true
		largest = max(largest, rc.cp.size)
	}
	if !logMode && c.checkpointsFile != "" {
		return c.usageError("--checkpoints is for the log command\n%s", usage)
	}
	if !logMode {
		fmt.Fprintf(c.stdout, "%d receipts valid, %d logs, largest checkpoint size %d\n", valid, len(origins), largest)
		return code
	}
	logs := collectLogs(checks)
	if c.checkpointsFile != "" {
		data, err := os.ReadFile(c.checkpointsFile)
		if err != nil {
			return c.usageError("%v", err)
		}
		if !addPublished(t, logs, c.checkpointsFile, data, c.stderr) {
			code = exitInvalid
		}
	}
	names := make([]string, 0, len(logs))
	for o := range logs {
		names = append(names, o)
	}
	sort.Strings(names)
	for _, o := range names {
		if !logs[o].check(name, c.stdout, c.stderr) {
			code = exitInvalid
		}
	}
	if len(names) == 0 {
		fmt.Fprintln(c.stdout, "no logs")
	}
	return code
}

// checkpoint verifies one signed note and prints the checkpoint.
func (c *cli) checkpoint(args []string) int {
	t, name, data, code := c.setUp(args)
	if t == nil {
		return code
	}
	cp, err := t.open(string(data))
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", name, err)
		return exitInvalid
	}
	fmt.Fprintf(c.stdout, "%s\n%d\n%x\n", cp.origin, cp.size, cp.root)
	return exitValid
}

// consistency verifies a consistency proof between two signed notes.
func (c *cli) consistency(args []string) int {
	fs := flag.NewFlagSet("verifier", flag.ContinueOnError)
	keysFile := fs.String("trusted-keys", "", "")
	oldFile := fs.String("old", "", "")
	newFile := fs.String("new", "", "")
	proofFile := fs.String("proof", "", "")
	pos, err := c.parse(fs, args)
	switch {
	case err != nil:
		return c.usageError("%v\n%s", err, usage)
	case *keysFile == "" || *oldFile == "" || *newFile == "" || *proofFile == "":
		return c.usageError("--trusted-keys, --old, --new and --proof are required\n%s", usage)
	case len(pos) > 0:
		return c.usageError("unexpected argument %q\n%s", pos[0], usage)
	}
	keys, err := loadTrustedKeys(*keysFile)
	if err != nil {
		return c.usageError("trusted keys: %v", err)
	}
	t := newTrust(keys)
	var files [3][]byte
	for i, f := range []string{*oldFile, *newFile, *proofFile} {
		if files[i], err = os.ReadFile(f); err != nil {
			return c.usageError("%v", err)
		}
	}
	if err := checkConsistency(t, files[0], files[1], files[2]); err != nil {
		fmt.Fprintf(c.stderr, "%s -> %s: %v\n", *oldFile, *newFile, err)
		return exitInvalid
	}
	old, _ := t.open(string(files[0]))
	cur, _ := t.open(string(files[1]))
	fmt.Fprintf(c.stdout, "origin %s: size %d is consistent with size %d\n", old.origin, old.size, cur.size)
	return exitValid
}

func checkConsistency(t *trust, oldNote, newNote, proofJSON []byte) error {
	old, err := t.open(string(oldNote))
	if err != nil {
		return fmt.Errorf("old %v", err)
	}
	cur, err := t.open(string(newNote))
	if err != nil {
		return fmt.Errorf("new %v", err)
	}
	if old.origin != cur.origin {
		return fmt.Errorf("old checkpoint is of origin %q, new of %q", old.origin, cur.origin)
	}
	hashes, err := parseProofFile(proofJSON)
	if err != nil {
		return fmt.Errorf("proof: %v", err)
	}
	if old.size > cur.size {
		return fmt.Errorf("old size %d is larger than new size %d", old.size, cur.size)
	}
	if err := verifyConsistency(old, cur, hashes); err != nil {
		return fmt.Errorf("size %d is not a prefix of size %d: %s", old.size, cur.size, oneLine(err))
	}
	return nil
}

// parseProofFile reads {"proof": ["b64", ...]} or ["b64", ...].
func parseProofFile(data []byte) ([][]byte, error) {
	var list []string
	if err := json.Unmarshal(data, &list); err != nil || list == nil {
		var obj struct {
			Proof *[]string `json:"proof"`
		}
		if err := json.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("neither {\"proof\": [...]} nor an array of strings: %v", err)
		}
		if obj.Proof == nil {
			return nil, errors.New("no \"proof\" array")
		}
		list = *obj.Proof
	}
	hashes := make([][]byte, 0, len(list))
	for i, s := range list {
		h, err := decodeHash(s)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %v", i, err)
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}
