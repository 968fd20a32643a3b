package shim

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ustack/stackcore"
)

func eventfd(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func signal(t *testing.T, fd int) {
	t.Helper()
	if _, err := unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
}

func drainFd(fd int) {
	var b [8]byte
	_, _ = unix.Read(fd, b[:])
}

// The poller's wait reports which of its fds woke it, times out when none does, looks without
// sleeping when due at once, and sees the link only while it watches it.
func TestPollerWait(t *testing.T) {
	kick, move, link := eventfd(t), eventfd(t), eventfd(t)
	w, err := newPollerWait(kick, move, link)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()

	t0 := time.Now()
	if k, m, to := w.wait(30 * time.Millisecond); k || m || !to {
		t.Fatalf("idle wait: kicked %v move %v timed out %v, want a time-out", k, m, to)
	}
	if d := time.Since(t0); d < 25*time.Millisecond || d > time.Second {
		t.Fatalf("a 30 ms wait took %v", d)
	}

	go func() { time.Sleep(20 * time.Millisecond); _, _ = unix.Write(kick, []byte{1, 0, 0, 0, 0, 0, 0, 0}) }()
	t0 = time.Now()
	if k, m, to := w.wait(-1); !k || m || to {
		t.Fatalf("kicked wait: kicked %v move %v timed out %v", k, m, to)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("the kick took %v to wake the wait", d)
	}
	drainFd(kick)

	signal(t, move)
	if k, m, to := w.wait(0); k || !m || to {
		t.Fatalf("due wait with a move request: kicked %v move %v timed out %v", k, m, to)
	}
	drainFd(move)

	signal(t, link)
	if _, _, to := w.wait(10 * time.Millisecond); !to {
		t.Fatal("woke for the link while not watching it")
	}
	w.watchLink(true)
	if _, _, to := w.wait(time.Second); to {
		t.Fatal("did not wake for the link while watching it")
	}
	w.watchLink(false)
	if _, _, to := w.wait(10 * time.Millisecond); !to {
		t.Fatal("woke for the link after it stopped watching it")
	}
}

// TestPromiseKicks: the poller promises to look within pollerDeferTick (TxKick.DeferOK) only
// while application threads leave kicks to the end of their batches, and keeps the promise by
// waking that soon; quiet rounds keep it for pollerPromiseHold (the process may only wait for its
// turn on a shared CPU), after which it withdraws it and sleeps as long as it would have.
func TestPromiseKicks(t *testing.T) {
	st := &stack{txk: &TxKick{}}
	const now, far = stackcore.Time(1000), stackcore.Time(1000 + 160*stackcore.Millisecond)

	wake, seen := st.promiseKicks(now, far, 0)
	if st.txk.DeferOK != 0 || wake != far || seen != 0 {
		t.Fatalf("no batched call: DeferOK %d, wake %d, want 0 and %d", st.txk.DeferOK, wake, far)
	}
	st.txk.Batched = 3 // three calls left their kick
	wake, seen = st.promiseKicks(now, far, seen)
	if st.txk.DeferOK != 1 || wake != now+pollerDeferTick || seen != 3 {
		t.Fatalf("after batched calls: DeferOK %d, wake %d, seen %d; want 1, %d, 3", st.txk.DeferOK, wake, seen, now+pollerDeferTick)
	}
	if wake, _ = st.promiseKicks(now, now+10, seen); wake != now+10 {
		t.Fatalf("a sooner wake-up was put off to %d", wake)
	}
	later := now + pollerPromiseHold - 1
	wake, _ = st.promiseKicks(later, far, seen)
	if st.txk.DeferOK != 1 || wake != later+pollerDeferTick {
		t.Fatalf("a quiet round within %d us of the last batch withdrew the promise: DeferOK %d, wake %d",
			pollerPromiseHold, st.txk.DeferOK, wake)
	}
	wake, _ = st.promiseKicks(now+pollerPromiseHold, far, seen)
	if st.txk.DeferOK != 0 || wake != far {
		t.Fatalf("a quiet round %d us after the last batch kept the promise: DeferOK %d, wake %d", pollerPromiseHold, st.txk.DeferOK, wake)
	}
}
