package client

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Summary is what a pull, export or copy did: the result, the client's
// counters and the time it took (the CLI's --json output).
type Summary struct {
	Command string `json:"command"`
	*Result
	Stats
	Seconds float64 `json:"seconds"`
}

// Summarize is the Summary of res, done by c since start.
func Summarize(command string, res *Result, c *Client, start time.Time) Summary {
	return Summary{Command: command, Result: res, Stats: c.Stats(), Seconds: time.Since(start).Seconds()}
}

// WriteJSON writes s as indented JSON.
func (s Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteText writes s as one line for people; dest says where the image
// went ("to ./app") or came from.
func (s Summary) WriteText(w io.Writer, dest string) error {
	_, err := fmt.Fprintf(w, "%s %s (%s) %s: %d image(s), %d blobs, %s downloaded in %.1fs; %d registry requests, %d URL re-resolutions, %d retries, %d skipped, %d mounted\n",
		s.Command, s.Reference, s.Digest, dest, s.Images, s.Result.Blobs, HumanBytes(s.Bytes), s.Seconds,
		s.Requests, s.ReResolutions, s.Retries, s.Skipped, s.Mounted)
	return err
}

// LineLogger is an Options.Logf that writes each message as one line to w,
// prefixed; lines of concurrent downloads never interleave.
func LineLogger(w io.Writer, prefix string) func(format string, args ...any) {
	var mu sync.Mutex
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, prefix+format+"\n", args...)
	}
}
