package stackcore

// seq is a TCP sequence number with modular comparison (RFC 9293 3.4).
type seq uint32

func (a seq) lt(b seq) bool  { return int32(a-b) < 0 }
func (a seq) leq(b seq) bool { return int32(a-b) <= 0 }
func (a seq) gt(b seq) bool  { return int32(a-b) > 0 }
func (a seq) geq(b seq) bool { return int32(a-b) >= 0 }
func (a seq) add(n int) seq  { return a + seq(uint32(n)) }
func (a seq) sub(b seq) int  { return int(int32(a - b)) }

func seqMax(a, b seq) seq {
	if a.gt(b) {
		return a
	}
	return b
}

func seqMin(a, b seq) seq {
	if a.lt(b) {
		return a
	}
	return b
}
