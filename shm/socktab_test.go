package shm

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestSockTableRoundTrip(t *testing.T) {
	dir := t.TempDir()
	tab, err := CreateSockTable(dir, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	info := bytes.Repeat([]byte{7}, slotTCPInfoSize)
	a := SockRecord{Proto: 6, State: 1, LPort: 80, RPort: 40000, LAddr: [16]byte{10, 0, 0, 1},
		RAddr: [16]byte{10, 0, 0, 2}, RecvQ: 5, SendQ: 6, Fd: 9, CC: "cubic", Written: 42, TCPInfo: info}
	b := SockRecord{Proto: 17, State: 7, LPort: 53, Fd: -1, In: 3, Out: 4}
	tab.Write(0, &a)
	tab.Write(1, &b)
	tab.Write(2, &a)
	tab.Free(2)
	tab.Published(3, 1, time.Unix(5, 0))
	snap, err := ReadSockTable(SockTablePath(dir, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Alive || snap.Pid != os.Getpid() || snap.Count != 1 || snap.Unlisted != 1 {
		t.Fatalf("header: %+v", snap)
	}
	if len(snap.Sockets) != 2 {
		t.Fatalf("%d sockets, want 2 (slot 2 was freed)", len(snap.Sockets))
	}
	got := snap.Sockets[0]
	if got.LPort != 80 || got.RPort != 40000 || got.CC != "cubic" || got.Fd != 9 || got.RecvQ != 5 ||
		!bytes.Equal(got.TCPInfo, info) || got.RAddr != a.RAddr {
		t.Fatalf("slot 0 = %+v", got)
	}
	if u := snap.Sockets[1]; u.Proto != 17 || u.Fd != -1 || u.In != 3 || u.Out != 4 || u.TCPInfo != nil {
		t.Fatalf("slot 1 = %+v", u)
	}
	paths, err := ListSockTables(dir)
	if err != nil || len(paths) != 1 {
		t.Fatalf("ListSockTables = %v, %v", paths, err)
	}
}

// A reader never sees a slot half written: every record it returns is one the writer wrote whole.
func TestSockTableSeqlock(t *testing.T) {
	dir := t.TempDir()
	tab, err := CreateSockTable(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	tab.Published(1, 0, time.Now())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := SockRecord{Proto: 6, RecvQ: i, SendQ: i, Pending: i, LPort: uint16(i)}
			tab.Write(0, &r)
		}
	}()
	for range 2000 {
		snap, err := ReadSockTable(tab.Path())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snap.Sockets {
			if s.RecvQ != s.SendQ || s.SendQ != s.Pending || uint16(s.RecvQ) != s.LPort {
				t.Fatalf("torn slot: %+v", s)
			}
		}
	}
	close(stop)
	wg.Wait()
}

func tcpFrame(src, dst [4]byte, sport, dport uint16, payload int) []byte {
	f := make([]byte, 14+20+20+payload)
	f[12], f[13] = 0x08, 0x00
	f[14] = 0x45
	f[23] = 6
	copy(f[26:], src[:])
	copy(f[30:], dst[:])
	f[34], f[35] = byte(sport>>8), byte(sport)
	f[36], f[37] = byte(dport>>8), byte(dport)
	for i := 54; i < len(f); i++ {
		f[i] = byte(i)
	}
	return f
}

func TestCaptureRing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cap")
	h1, h2 := [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}
	r, err := CreateCapture(path, 4096, 200, CaptureFilter{Proto: 6, Port: 80}, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Remove()
	w, err := OpenCapture(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var got []CaptureFrame
	drain := func() {
		r.Drain(func(f *CaptureFrame) {
			c := *f
			c.Data = append([]byte(nil), f.Data...)
			got = append(got, c)
		})
	}
	// filtered out: another port
	w.Add(tcpFrame(h1, h2, 1000, 2000, 10), 1, false)
	// 300-byte frames cut at 200: records of 224 bytes; 4096 bytes hold 18
	sent := 0
	for i := range 100 {
		w.Add(tcpFrame(h1, h2, 80, uint16(40000+i), 246), int64(i), i%2 == 1)
		sent++
		if i%7 == 6 {
			drain()
		}
	}
	drain()
	frames, drops := r.Counts()
	if int(frames) != len(got) || int(frames+drops) != sent {
		t.Fatalf("frames %d drops %d read %d, sent %d", frames, drops, len(got), sent)
	}
	if drops != 0 {
		t.Fatalf("%d drops with a reader draining every 7 frames (ring holds 18)", drops)
	}
	for i, f := range got {
		want := tcpFrame(h1, h2, 80, uint16(40000+i), 246)
		if f.Len != 300 || len(f.Data) != 200 || !bytes.Equal(f.Data, want[:200]) || f.TimeNanos != int64(i) ||
			f.Sent != (i%2 == 1) {
			t.Fatalf("frame %d: len %d caplen %d ts %d sent %v", i, f.Len, len(f.Data), f.TimeNanos, f.Sent)
		}
	}
	// a reader that does not keep up: drops are counted, nothing is overwritten
	for i := range 40 {
		w.Add(tcpFrame(h2, h1, uint16(50000+i), 80, 246), 0, false)
	}
	got = got[:0]
	drain()
	frames2, drops2 := r.Counts()
	if len(got) != 18 || drops2 != 22 || frames2 != frames+18 {
		t.Fatalf("after overflow: read %d, drops %d, frames %d", len(got), drops2, frames2)
	}
	for i, f := range got {
		if want := tcpFrame(h2, h1, uint16(50000+i), 80, 246); !bytes.Equal(f.Data, want[:200]) {
			t.Fatalf("overflow frame %d differs", i)
		}
	}
}

func TestCaptureFilter(t *testing.T) {
	h1, h2, h3 := [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, [4]byte{10, 0, 0, 3}
	mapped := func(a [4]byte) [16]byte { return [16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]} }
	f := tcpFrame(h1, h2, 1234, 80, 0)
	// the same segment over IPv6, fd00::1 to fd00::2
	v6a, v6b := [16]byte{0: 0xfd, 15: 1}, [16]byte{0: 0xfd, 15: 2}
	f6 := make([]byte, 14+40+20)
	f6[12], f6[13], f6[14], f6[20] = 0x86, 0xdd, 0x60, 6
	copy(f6[22:], v6a[:])
	copy(f6[38:], v6b[:])
	f6[54], f6[55], f6[56], f6[57] = 1234>>8, 1234&0xff, 0, 80
	for _, c := range []struct {
		f    CaptureFilter
		want bool
	}{
		{CaptureFilter{Proto: 6, Port: 80}, true},
		{CaptureFilter{Proto: 17}, false},
		{CaptureFilter{HasHost: true, Host: v6b}, true},
		{CaptureFilter{HasHost: true, Host: mapped(h2)}, false},
		{CaptureFilter{HasHost: true, Host: v6a, Port: 1234}, true},
		{CaptureFilter{Port: 81}, false},
	} {
		if got := c.f.match(f6); got != c.want {
			t.Errorf("IPv6 %+v: match = %v, want %v", c.f, got, c.want)
		}
	}
	for _, c := range []struct {
		f    CaptureFilter
		want bool
	}{
		{CaptureFilter{}, true},
		{CaptureFilter{Proto: 6}, true},
		{CaptureFilter{Proto: 17}, false},
		{CaptureFilter{Port: 80}, true},
		{CaptureFilter{Port: 1234}, true},
		{CaptureFilter{Port: 81}, false},
		{CaptureFilter{HasHost: true, Host: mapped(h2)}, true},
		{CaptureFilter{HasHost: true, Host: mapped(h3)}, false},
		{CaptureFilter{HasHost: true, Host: v6b}, false},
		{CaptureFilter{Proto: 6, HasHost: true, Host: mapped(h1), Port: 80}, true},
	} {
		if got := c.f.match(f); got != c.want {
			t.Errorf("%+v: match = %v, want %v", c.f, got, c.want)
		}
	}
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	if (&CaptureFilter{Port: 80}).match(arp) || !(&CaptureFilter{}).match(arp) {
		t.Error("an ARP frame matches only the empty filter")
	}
}

// Files that are not what they claim are refused with an error, never read past their end.
func TestSockTableAndCaptureRefuseBadFiles(t *testing.T) {
	dir := t.TempDir()
	tab, err := CreateSockTable(dir, 8)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(tab.Path())
	tab.Close()
	bad := filepath.Join(dir, "bad")
	for name, mutate := range map[string]func(b []byte) []byte{
		"short":        func(b []byte) []byte { return b[:100] },
		"magic":        func(b []byte) []byte { b[0] ^= 1; return b },
		"version":      func(b []byte) []byte { b[sockOffVersion] = 9; return b },
		"slots beyond": func(b []byte) []byte { b[sockOffSlots+2] = 1; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-1] },
	} {
		if err := os.WriteFile(bad, mutate(append([]byte(nil), good...)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadSockTable(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	capPath := filepath.Join(dir, "cap")
	r, err := CreateCapture(capPath, 4096, 100, CaptureFilter{}, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	goodCap, _ := os.ReadFile(capPath)
	r.Remove()
	for name, mutate := range map[string]func(b []byte) []byte{
		"magic":     func(b []byte) []byte { b[1] ^= 1; return b },
		"size":      func(b []byte) []byte { b[capOffDataSize] = 3; return b },
		"snap zero": func(b []byte) []byte { clear(b[capOffSnap : capOffSnap+4]); return b },
		"snap huge": func(b []byte) []byte { b[capOffSnap+3] = 0xff; return b },
		"short":     func(b []byte) []byte { return b[:capHeaderSize+100] },
	} {
		if err := os.WriteFile(bad, mutate(append([]byte(nil), goodCap...)), 0o600); err != nil {
			t.Fatal(err)
		}
		if w, err := OpenCapture(bad); err == nil {
			w.Close()
			t.Errorf("capture %s: accepted", name)
		}
	}
}
