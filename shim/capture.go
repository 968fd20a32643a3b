package shim

import (
	"os"
	"time"

	"ustack/shm"
	"ustack/stackcore"
)

// onloadctl capture asks for the frames of the stack through the socket table (shm.SockTable's
// capture request); the stack looks at the request once per batch, and copies frames only while
// a capture runs: no capture, no cost but that look.

// captureOutput is the core's Output while a capture runs: each frame sent is copied to the
// capture ring on its way to the link.
type captureOutput struct {
	link stackcore.Output
	w    *shm.CaptureWriter
	ts   int64 // when the frames of this Poll leave, Unix nanoseconds
}

func (c *captureOutput) AllocTx() []byte { return c.link.AllocTx() }

func (c *captureOutput) SubmitTx(buf []byte, n int) {
	c.w.Add(buf[:n], c.ts, true)
	c.link.SubmitTx(buf, n)
}

// received copies a batch of received frames to the capture ring.
func (c *captureOutput) received(frames [][]byte) {
	ts := time.Now().UnixNano()
	for _, f := range frames {
		c.w.Add(f, ts, false)
	}
}

// dropTableLocked removes the socket table and stops a capture: the stack ends. Caller holds
// st.mu.
func (st *stack) dropTableLocked() {
	if st.capOut.w != nil {
		st.capOut.w.Close()
		st.capOut.w = nil
		st.out = st.link
	}
	if st.pub != nil {
		_ = st.pub.tab.Remove()
		st.pub = nil
	}
}

// captureReaderLookEvery is how often a running capture's reader is looked for.
const captureReaderLookEvery = stackcore.Second

// captureReaderLocked stops a capture whose onloadctl was killed before it could say stop (by a
// signal it cannot catch): its request would stay, and every frame be copied for no one. The ring
// file goes too. Caller holds st.mu.
func (st *stack) captureReaderLocked(now stackcore.Time) {
	if st.capOut.w == nil || now < st.capLookAt {
		return
	}
	st.capLookAt = now + captureReaderLookEvery
	if !st.capOut.w.ReaderGone() {
		return
	}
	path := st.capOut.w.Path()
	st.pub.tab.StopCapture(st.capID)
	st.captureChangedLocked()
	_ = os.Remove(path)
	st.eng.Log.Debug().Str("ring", path).Msg("capture stopped: its onloadctl is gone")
}

// captureChangedLocked starts or stops writing into a capture ring as onloadctl asked. Caller
// holds st.mu.
func (st *stack) captureChangedLocked() {
	id := st.pub.tab.CaptureRequest()
	if st.capOut.w != nil {
		st.capOut.w.Close()
		st.capOut.w = nil
		st.out = st.link
	}
	st.capID = id
	if id == 0 {
		st.pub.tab.SetCaptureAttached(0)
		return
	}
	w, err := shm.OpenCapture(st.pub.tab.CaptureName())
	if err != nil {
		st.eng.Log.Warn().Err(err).Msg("onloadctl capture asked for frames; not captured")
		st.pub.tab.SetCaptureAttached(0)
		return
	}
	st.capOut = captureOutput{link: st.link, w: w}
	st.out = &st.capOut
	st.pub.tab.SetCaptureAttached(id)
	st.eng.Log.Debug().Uint64("capture", id).Msg("capture started")
}
