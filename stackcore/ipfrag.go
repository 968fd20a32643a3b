package stackcore

import (
	"encoding/binary"

	"ustack/stackcore/wire"
)

// IPv4 and IPv6 fragment reassembly (RFC 791 3.2, RFC 8200 4.5, with RFC
// 815's idea of tracking what has arrived rather than what is missing), with
// Linux's limits: a fixed pool of reasmSlots datagrams, each of at most 64 KiB,
// allocated once in New; a datagram not complete reasmTimeout (IPv6:
// reasmTimeout6) after its first fragment is dropped (Linux ipfrag_time).
// Overlapping fragments drop the whole datagram, as Linux does for IPv4 since
// 2018 and RFC 5722 requires for IPv6; a duplicate (within data already held) is ignored. A
// completed IPv4 datagram is handed, with a fresh 20-byte header, to the TCP,
// UDP or ICMP input; a completed IPv6 one goes on from its fragment header's
// Next Header; both within the same Input call.

const (
	reasmSlots     = 64
	reasmMaxLen    = 0xffff                        // largest datagram, header included
	reasmMaxData   = reasmMaxLen - wire.IPv4MinLen // largest payload
	reasmTimeout   = 30 * Second
	reasmTimeout6  = 60 * Second // RFC 8200 4.5
	reasmMaxRanges = 64          // disjoint pieces held per datagram before it is given up
)

type fragRange struct{ start, end int } // payload bytes [start, end)

type reasmSlot struct {
	used    bool
	v6      bool
	src     Addr
	dst     Addr
	id      uint32
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
			s.reasmTimedOut(sl)
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
	if sl.v6 {
		inc(&s.stats.IP6ReasmFails)
	} else {
		inc(&s.stats.IPReasmFails)
	}
}

// reasmTimedOut drops a datagram whose time ran out (Linux ip_expire).
func (s *Stack) reasmTimedOut(sl *reasmSlot) {
	s.reasmFail(sl)
	if !sl.v6 {
		inc(&s.stats.IPReasmTimeout)
	}
}

// fragIn is one fragment as fragInput takes it.
type fragIn struct {
	v6       bool
	src, dst Addr
	id       uint32
	proto    uint8
	ttl      uint8
	off      int
	more     bool
	data     []byte
}

// fragInput4 takes one IPv4 fragment.
func (s *Stack) fragInput4(now Time, srcMAC MAC, ip wire.IPv4) {
	ff := ip.FlagsFrag()
	f := fragIn{src: AddrFrom4(ip.Src()), dst: s.addr4, id: uint32(ip.ID()), proto: ip.Protocol(), ttl: ip.TTL(),
		off: int(ff&wire.IPv4FragOffMask) * 8, more: ff&wire.IPv4FlagMF != 0, data: ip.Payload()}
	s.fragInput(now, srcMAC, &f)
}

// fragInput takes one fragment; when it completes its datagram, the
// datagram is delivered.
func (s *Stack) fragInput(now Time, srcMAC MAC, f *fragIn) {
	st := s.stats
	if f.v6 {
		inc(&st.IP6ReasmReqds)
	} else {
		inc(&st.IPReasmReqds)
	}
	off, data, more := f.off, f.data, f.more
	end := off + len(data)
	if len(data) == 0 || more && len(data)%8 != 0 {
		inc(&st.DropFragment) // RFC 791, RFC 8200 4.5: every fragment but the last carries a multiple of 8 bytes
		return
	}
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
			s.reasmTimedOut(x)
			if free == nil {
				free = x
			}
			continue
		}
		if x.id == f.id && x.src == f.src && x.dst == f.dst && x.proto == f.proto && x.v6 == f.v6 {
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
		sl.used, sl.v6, sl.src, sl.dst, sl.id, sl.proto = true, f.v6, f.src, f.dst, f.id, f.proto
		sl.expires = now + reasmTimeout
		if f.v6 {
			sl.expires = now + reasmTimeout6
		}
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
		if sl.ranges[i].start <= off && end <= sl.ranges[i].end {
			// Within data already held: a duplicate (RFC 5722 errata 3089), even
			// once its neighbours merged with it (Linux inet_frag_queue_insert
			// treats a fragment inside a run as IPFRAG_DUP, too).
			return
		}
		s.reasmFail(sl) // overlap
		return
	}
	copy(sl.buf[wire.IPv4MinLen+off:], data)
	if off == 0 {
		sl.ttl = f.ttl
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
	mac := sl.mac
	r.free(sl)
	if sl.v6 {
		inc(&st.IP6ReasmOKs)
		s.ip6Upper(now, mac, &sl.src, &sl.dst, sl.proto, sl.buf[wire.IPv4MinLen:wire.IPv4MinLen+sl.total], false)
		return
	}
	// Complete: a header without options, then deliver.
	n := wire.IPv4MinLen + sl.total
	h := wire.IPv4(sl.buf[:n])
	h.Encode(n, uint16(sl.id), sl.ttl, sl.proto, sl.src.As4(), s.cfg.Addr)
	binary.BigEndian.PutUint16(h[wire.IPv4FlagsFrag:], 0)
	h[wire.IPv4Checksum], h[wire.IPv4Checksum+1] = 0, 0
	binary.BigEndian.PutUint16(h[wire.IPv4Checksum:], wire.Finish(wire.Checksum(h[:wire.IPv4MinLen], 0)))
	inc(&st.IPReasmOKs)
	s.ipDeliver(now, mac, h)
}
