package client

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

var _ Progress = (*ProgressDisplay)(nil)

// ProgressDisplay is the Progress of the wharf commands: bars on a
// terminal, one line per blob otherwise, nothing but failures when quiet
// (--json).
type ProgressDisplay struct {
	w     io.Writer
	quiet bool
	p     *mpb.Progress
	total *mpb.Bar
	mu    sync.Mutex
	bars  map[digest.Digest]*mpb.Bar
	sizes map[digest.Digest]int64
	start map[digest.Digest]time.Time
}

// NewProgressDisplay writes to w; bars only when w is a terminal.
func NewProgressDisplay(w io.Writer, quiet bool) *ProgressDisplay {
	pr := &ProgressDisplay{w: w, quiet: quiet, bars: map[digest.Digest]*mpb.Bar{}, sizes: map[digest.Digest]int64{}, start: map[digest.Digest]time.Time{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !quiet {
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
		pr.total = pr.p.AddBar(0, mpb.BarPriority(1<<30),
			mpb.PrependDecorators(decor.Name("total        ", decor.WC{W: 14}), decor.CountersKibiByte("% .1f / % .1f")),
			mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" "), decor.Percentage()))
	}
	return pr
}

func (pr *ProgressDisplay) Start(d digest.Digest, size, done int64) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.sizes[d] = size
	pr.start[d] = time.Now()
	if pr.p == nil {
		return
	}
	pr.total.SetTotal(pr.total.Current()+size+0, false)
	pr.total.IncrInt64(done)
	b := pr.p.AddBar(size, mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(d.Encoded()[:12], decor.WC{W: 14}), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.Percentage()))
	b.SetCurrent(done)
	pr.bars[d] = b
}

func (pr *ProgressDisplay) Add(d digest.Digest, n int64) {
	if pr.p == nil {
		return
	}
	pr.mu.Lock()
	b := pr.bars[d]
	pr.mu.Unlock()
	if b != nil {
		b.IncrInt64(n)
		pr.total.IncrInt64(n)
	}
}

func (pr *ProgressDisplay) Finish(d digest.Digest, err error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.p != nil {
		if b := pr.bars[d]; b != nil {
			if err != nil {
				b.Abort(true)
			} else {
				b.SetCurrent(pr.sizes[d])
			}
		}
		return
	}
	if pr.quiet && err == nil {
		return
	}
	if err != nil {
		fmt.Fprintf(pr.w, "wharf: %s failed: %v\n", d, err)
		return
	}
	fmt.Fprintf(pr.w, "wharf: %s %s in %.1fs\n", d, HumanBytes(pr.sizes[d]), time.Since(pr.start[d]).Seconds())
}

// Wait ends the display once every download finished.
func (pr *ProgressDisplay) Wait() {
	if pr.p != nil {
		pr.total.SetTotal(-1, true)
		pr.p.Wait()
	}
}

// HumanBytes formats n in binary units (1.5 MiB).
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
