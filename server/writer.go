package server

import (
	"io"
	"net/http"
	"strconv"
	"time"
)

// responseWriter records the status and byte count for the access log. It
// forwards ReadFrom so that blob bodies still go out with sendfile.
type responseWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	// idle, when set, is the write idle timeout of a streaming route:
	// ReadFrom extends the write deadline through rc as bytes go out.
	idle     time.Duration
	rc       *http.ResponseController
	extended time.Time
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.idle > 0 {
		if now := time.Now(); now.Sub(w.extended) > w.idle/8 {
			w.extended = now
			_ = w.rc.SetWriteDeadline(now.Add(w.idle))
		}
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if w.idle > 0 {
		n, err = w.readFromIdle(r)
	} else if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.bytes += n
	return n, err
}

// idleChunk is how much goes out between extensions of the write deadline.
const idleChunk = 4 << 20

// readFromIdle copies r in chunks, extending the write deadline before
// each, so a client that stops reading for w.idle is cut off and one that
// keeps reading never is. A *io.LimitedReader over a file stays one level
// deep, so each chunk still goes out with sendfile.
func (w *responseWriter) readFromIdle(r io.Reader) (int64, error) {
	src, limit := r, int64(-1)
	lr, isLimited := r.(*io.LimitedReader)
	if isLimited {
		src, limit = lr.R, lr.N
	}
	var total int64
	var err error
	for {
		n := int64(idleChunk)
		if limit >= 0 && limit-total < n {
			n = limit - total
		}
		if n <= 0 {
			break
		}
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
		var m int64
		chunk := &io.LimitedReader{R: src, N: n}
		if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
			m, err = rf.ReadFrom(chunk)
		} else {
			m, err = io.Copy(w.ResponseWriter, chunk)
		}
		total += m
		if err != nil || m < n {
			break
		}
	}
	if isLimited {
		lr.N -= total
	}
	return total, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *responseWriter) statusCode() int {
	if !w.wroteHeader {
		return http.StatusOK
	}
	return w.status
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
