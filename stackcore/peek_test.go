package stackcore

import (
	"io"
	"testing"

	"ustack/nic/pair"
)

// recv(2) MSG_PEEK: bytes are returned without being consumed, at any offset, and a later
// Read returns the same bytes; after the peer's FIN, Peek reports EOF like Read and PeerClosed
// holds (poll's POLLRDHUP, RFC 9293 3.10.7.4 "eighth, check the FIN bit").
func TestPeekDoesNotConsume(t *testing.T) {
	n := newNet(t, pair.Options{}, Config{}, Config{})
	c, s, _ := n.connect(80)
	if _, err := s.Peek(0, make([]byte, 4)); err != ErrWouldBlock {
		t.Fatalf("peek on empty queue: %v, want ErrWouldBlock", err)
	}
	c.Write([]byte("hello world"))
	c.CloseWrite()
	n.settle()
	buf := make([]byte, 5)
	if k, err := s.Peek(0, buf); k != 5 || err != nil || string(buf) != "hello" {
		t.Fatalf("peek: %d %v %q", k, err, buf)
	}
	if k, _ := s.Peek(6, buf); k != 5 || string(buf) != "world" {
		t.Fatalf("peek at 6: %d %q", k, buf)
	}
	if s.InQueue() != 11 {
		t.Fatalf("peek consumed: InQueue %d", s.InQueue())
	}
	if !s.PeerClosed() {
		t.Fatal("PeerClosed false after FIN")
	}
	all := make([]byte, 32)
	if k, err := s.Read(all); k != 11 || err != nil || string(all[:k]) != "hello world" {
		t.Fatalf("read after peek: %d %v %q", k, err, all[:k])
	}
	if _, err := s.Peek(0, buf); err != io.EOF {
		t.Fatalf("peek after FIN and drain: %v, want EOF", err)
	}
}
