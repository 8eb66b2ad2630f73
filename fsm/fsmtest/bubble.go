package fsmtest

import (
	"bytes"
	"runtime"
)

// BubbleGoroutines counts the goroutines of the caller's synctest bubble
// (0 outside one). runtime.NumGoroutine counts the whole process, which
// includes goroutines of earlier tests still on their way out (a test
// runner's, say): a count before and after a fake day inside a bubble
// compared with it fails now and then for nothing the test did.
func BubbleGoroutines() int {
	self := make([]byte, 256)
	self = self[:runtime.Stack(self, false)]
	header, _, _ := bytes.Cut(self, []byte("\n"))
	i := bytes.Index(header, []byte("synctest bubble "))
	if i < 0 {
		return 0
	}
	tag := header[i:]
	if j := bytes.IndexByte(tag, ']'); j >= 0 {
		tag = tag[:j]
	}
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, line := range bytes.Split(buf, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("goroutine ")) {
			// "synctest bubble 4" must not match "synctest bubble 40".
			if k := bytes.Index(line, tag); k >= 0 {
				if rest := line[k+len(tag):]; len(rest) > 0 && (rest[0] == ']' || rest[0] == ',') {
					count++
				}
			}
		}
	}
	return count
}
