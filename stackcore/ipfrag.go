package stackcore

import (
	"encoding/binary"

	"ustack/stackcore/wire"
)

// IPv4 fragment reassembly (RFC 791 3.2, with RFC 815's idea of tracking
// what has arrived rather than what is missing), with Linux's limits: a fixed
// pool of reasmSlots datagrams, each of at most 64 KiB, allocated once in New;
// a datagram not complete reasmTimeout after its first fragment is dropped
// (Linux ipfrag_time). Overlapping fragments drop the whole datagram, as Linux
// does for IPv4 since 2018 and RFC 5722 requires for IPv6; an exact duplicate
// is ignored. A completed datagram is handed, with a fresh 20-byte header, to
// the TCP, UDP or ICMP input, within the same Input call.

const (
	reasmSlots     = 64
	reasmMaxLen    = 0xffff                        // largest datagram, header included
	reasmMaxData   = reasmMaxLen - wire.IPv4MinLen // largest payload
	reasmTimeout   = 30 * Second
	reasmMaxRanges = 64 // disjoint pieces held per datagram before it is given up
)

type fragRange struct{ start, end int } // payload bytes [start, end)

type reasmSlot struct {
	used    bool
	src     IPv4
	id      uint16
	proto   uint8
	ttl     uint8
	mac     MAC
	expires Time
	total   int // payload length, known once the last fragment arrived (else -1)
	ranges  [reasmMaxRanges]fragRange
	nranges int
	buf     []byte // reasmMaxLen bytes: 20-byte header then payload
}

type reassembler struct {
	slots [reasmSlots]reasmSlot
	used  int
}

func (r *reassembler) init() {
	pool := make([]byte, reasmSlots*reasmMaxLen)
	for i := range r.slots {
		r.slots[i].buf = pool[i*reasmMaxLen : (i+1)*reasmMaxLen : (i+1)*reasmMaxLen]
	}
}

func (r *reassembler) free(sl *reasmSlot) {
	sl.used = false
	r.used--
}

// expire drops the datagrams whose time ran out (Linux ip_expire).
func (s *Stack) reasmExpire(now Time) {
	r := &s.reasm
	for i := range r.slots {
		if sl := &r.slots[i]; sl.used && sl.expires <= now {
			r.free(sl)
			inc(&s.stats.IPReasmTimeout)
			inc(&s.stats.IPReasmFails)
		}
	}
}

// reasmDeadline is the earliest reassembly timeout (Never if none).
func (s *Stack) reasmDeadline() Time {
	d := Never
	if s.reasm.used == 0 {
		return d
	}
	for i := range s.reasm.slots {
		if sl := &s.reasm.slots[i]; sl.used {
			d = min(d, sl.expires)
		}
	}
	return d
}

// reasmFail drops a datagram in reassembly (overlap, too long, inconsistent).
func (s *Stack) reasmFail(sl *reasmSlot) {
	s.reasm.free(sl)
	inc(&s.stats.IPReasmFails)
}

// fragInput takes one fragment; when it completes its datagram, the
// datagram is delivered.
func (s *Stack) fragInput(now Time, srcMAC MAC, ip wire.IPv4) {
	st := s.stats
	inc(&st.IPReasmReqds)
	ff := ip.FlagsFrag()
	off := int(ff&wire.IPv4FragOffMask) * 8
	data := ip.Payload()
	end := off + len(data)
	more := ff&wire.IPv4FlagMF != 0
	if len(data) == 0 || more && len(data)%8 != 0 {
		inc(&st.DropFragment) // RFC 791: every fragment but the last carries a multiple of 8 bytes
		return
	}
	src, id, proto := IPv4(ip.Src()), ip.ID(), ip.Protocol()
	r := &s.reasm
	var sl, free *reasmSlot
	for i := range r.slots {
		x := &r.slots[i]
		if !x.used {
			if free == nil {
				free = x
			}
			continue
		}
		if x.expires <= now {
			r.free(x)
			inc(&st.IPReasmTimeout)
			inc(&st.IPReasmFails)
			if free == nil {
				free = x
			}
			continue
		}
		if x.src == src && x.id == id && x.proto == proto {
			sl = x
			break
		}
	}
	if sl == nil {
		if free == nil {
			inc(&st.DropFragment) // the pool is full
			return
		}
		sl = free
		sl.used, sl.src, sl.id, sl.proto = true, src, id, proto
		sl.expires = now + reasmTimeout
		sl.total, sl.nranges = -1, 0
		r.used++
	}
	if end > reasmMaxData {
		s.reasmFail(sl) // more than 64 KiB
		return
	}
	if !more {
		if sl.total >= 0 && sl.total != end || sl.nranges > 0 && sl.ranges[sl.nranges-1].end > end {
			s.reasmFail(sl)
			return
		}
		sl.total = end
	} else if sl.total >= 0 && end > sl.total {
		s.reasmFail(sl)
		return
	}
	// Insert [off, end) into the sorted disjoint ranges, merging neighbours.
	i := 0
	for i < sl.nranges && sl.ranges[i].end <= off {
		i++
	}
	if i < sl.nranges && sl.ranges[i].start < end {
		if sl.ranges[i].start == off && sl.ranges[i].end == end {
			return // exact duplicate
		}
		s.reasmFail(sl) // overlap
		return
	}
	copy(sl.buf[wire.IPv4MinLen+off:], data)
	if off == 0 {
		sl.ttl = ip.TTL()
	}
	sl.mac = srcMAC
	joinPrev := i > 0 && sl.ranges[i-1].end == off
	joinNext := i < sl.nranges && sl.ranges[i].start == end
	switch {
	case joinPrev && joinNext:
		sl.ranges[i-1].end = sl.ranges[i].end
		copy(sl.ranges[i:], sl.ranges[i+1:sl.nranges])
		sl.nranges--
	case joinPrev:
		sl.ranges[i-1].end = end
	case joinNext:
		sl.ranges[i].start = off
	default:
		if sl.nranges == reasmMaxRanges {
			s.reasmFail(sl)
			return
		}
		copy(sl.ranges[i+1:sl.nranges+1], sl.ranges[i:sl.nranges])
		sl.ranges[i] = fragRange{off, end}
		sl.nranges++
	}
	if sl.total < 0 || sl.nranges != 1 || sl.ranges[0].start != 0 || sl.ranges[0].end != sl.total {
		return
	}
	// Complete: a header without options, then deliver.
	n := wire.IPv4MinLen + sl.total
	h := wire.IPv4(sl.buf[:n])
	h.Encode(n, sl.id, sl.ttl, sl.proto, sl.src, s.cfg.Addr)
	binary.BigEndian.PutUint16(h[wire.IPv4FlagsFrag:], 0)
	h[wire.IPv4Checksum], h[wire.IPv4Checksum+1] = 0, 0
	binary.BigEndian.PutUint16(h[wire.IPv4Checksum:], wire.Finish(wire.Checksum(h[:wire.IPv4MinLen], 0)))
	mac := sl.mac
	r.free(sl)
	inc(&st.IPReasmOKs)
	s.ipDeliver(now, mac, h)
}
