package exec

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"unicode/utf8"
)

// truncMarker starts an output whose head was dropped.
const truncMarker = "[… %d bytes truncated]\n"

// tailBuffer keeps the last size bytes written to it in a ring, however
// much is written, and counts the rest. It is safe for concurrent writers
// (stdout and stderr readers).
type tailBuffer struct {
	mu    sync.Mutex
	ring  []byte // grows to size, then wraps
	size  int
	start int // index of the oldest byte once full
	total int64
}

func newTailBuffer(size int) *tailBuffer {
	return &tailBuffer{size: size, ring: make([]byte, 0, min(size, 4096))}
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.total += int64(n)
	if n >= t.size {
		t.ring = append(t.ring[:0], p[n-t.size:]...)
		t.start = 0
		return n, nil
	}
	if room := t.size - len(t.ring); room > 0 {
		k := min(room, len(p))
		t.ring = append(t.ring, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(t.ring[t.start:], p)
		p = p[k:]
		t.start = (t.start + k) % t.size
	}
	return n, nil
}

// String returns what was written if it fit, else a truncation marker and
// as much of the tail as fits with it in size bytes, starting on a rune
// boundary. Invalid UTF-8 becomes '?', so the text never grows when it is
// encoded as JSON.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	data := make([]byte, 0, len(t.ring))
	data = append(data, t.ring[t.start:]...)
	data = append(data, t.ring[:t.start]...)
	if t.total <= int64(len(data)) {
		return strings.ToValidUTF8(string(data), "?")
	}
	// The marker for t.total is at least as long as the final one.
	keep := max(t.size-len(fmt.Sprintf(truncMarker, t.total)), 0)
	data = data[len(data)-min(keep, len(data)):]
	for i := 0; i < utf8.UTFMax-1 && len(data) > 0 && !utf8.RuneStart(data[0]); i++ {
		data = data[1:]
	}
	return fmt.Sprintf(truncMarker, t.total-int64(len(data))) + strings.ToValidUTF8(string(data), "?")
}

// capString is s within size bytes, as a tailBuffer would keep it.
func capString(s string, size int) string {
	t := newTailBuffer(size)
	t.Write([]byte(s))
	return t.String()
}

// capFile writes to a file until limit bytes and then only counts, so
// that a job writing too much neither fills the disk nor blocks. It has a
// single writer.
type capFile struct {
	f     *os.File
	limit int64
	n     int64 // bytes written to the file
	over  bool  // more than limit bytes were offered
	err   error // the first write error
}

func (c *capFile) Write(p []byte) (int, error) {
	if c.err != nil || c.over {
		return len(p), nil
	}
	q := p
	if int64(len(q)) > c.limit-c.n {
		q = q[:c.limit-c.n]
		c.over = true
	}
	k, err := c.f.Write(q)
	c.n += int64(k)
	if err != nil {
		c.err = err
	}
	return len(p), nil
}
