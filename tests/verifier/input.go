package main

import (
	"bytes"
	"encoding/json"
)

// A document is one top-level JSON value of an input and the line (from 1)
// where it starts.
type document struct {
	line int
	raw  json.RawMessage
	err  error // not JSON: raw is the rest of the line
}

// splitDocuments cuts an input into its top-level JSON values: one per line
// (JSON lines, blank lines ignored) or values spread over several lines,
// such as one pretty-printed document. A stretch that is not JSON is
// returned with its error, and reading goes on at the next line.
func splitDocuments(data []byte) []document {
	var docs []document
	pos, line := 0, 1
	advance := func(to int) {
		line += bytes.Count(data[pos:to], []byte("\n"))
		pos = to
	}
	for {
		skip := len(data[pos:]) - len(bytes.TrimLeft(data[pos:], " \t\r\n"))
		advance(pos + skip)
		if pos >= len(data) {
			return docs
		}
		dec := json.NewDecoder(bytes.NewReader(data[pos:]))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			end := bytes.IndexByte(data[pos:], '\n')
			if end < 0 {
				end = len(data) - pos
			}
			docs = append(docs, document{line: line, raw: data[pos : pos+end], err: err})
			advance(pos + end)
			continue
		}
		docs = append(docs, document{line: line, raw: raw})
		advance(pos + int(dec.InputOffset()))
	}
}
