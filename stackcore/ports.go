package stackcore

// Ephemeral port selection, RFC 6056 section 3.3.4 (Algorithm 4, "Double-Hash
// Port Selection", as Linux does): the search for a free port starts at
//
//	min + (F(local, remote, rport, secret) + table[G(local, remote, rport)]) % num
//
// where F and G are keyed hashes from Config.Seed and table is a small array of
// counters that advance with every port handed out. Ports for one destination
// move on sequentially (no reuse of a recently used tuple), while an observer
// cannot predict the port used towards another destination. UDPBind(0) has no
// remote end yet; it hashes the local address and protocol only.

const (
	ephemeralNum  = 65536 - ephemeralLo
	portTableSize = 256
	portProtoTCP  = 6
	portProtoUDP  = 17
	portHashSaltF = 0x6a09e667f3bcc908
	portHashSaltG = 0xbb67ae8584caa73b
)

// keyedHash mixes a, b and c with the stack's secret and a salt (a
// multiply-xorshift finaliser; not cryptographic, but keyed and unbiased).
func (s *Stack) keyedHash(salt, a, b, c uint64) uint64 {
	h := s.cfg.Seed ^ salt
	for _, v := range [3]uint64{a, b, c} {
		h ^= v
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
		h *= 0xc4ceb9fe1a85ec53
		h ^= h >> 33
	}
	return h
}

// pickPort runs RFC 6056 Algorithm 4 for a tuple over the stack's ephemeral
// range; free reports whether a candidate may be used. It returns 0 when every
// ephemeral port is taken.
func (s *Stack) pickPort(proto uint64, remote Addr, rport uint16, free func(uint16) bool) uint16 {
	return s.pickPortIn(proto, remote, rport, ephemeralLo, 65535, free)
}

func (s *Stack) pickPortIn(proto uint64, remote Addr, rport uint16, lo, hi uint16, free func(uint16) bool) uint16 {
	if lo == 0 || hi < lo {
		return 0
	}
	num := uint64(hi) - uint64(lo) + 1
	local := s.SourceFor(remote)
	a := local.fold()<<32 ^ remote.fold()
	b := proto<<16 | uint64(rport)
	offset := s.keyedHash(portHashSaltF, a, b, 0)
	idx := s.keyedHash(portHashSaltG, a, b, 1) % portTableSize
	next := s.portTable[idx]
	for range num {
		p := lo + uint16((offset+uint64(next))%num)
		next++
		if free(p) {
			s.portTable[idx] = next
			return p
		}
	}
	return 0
}

// PickPort chooses the local port of a connection to remote:rport from [lo, hi]
// by RFC 6056 Algorithm 4, for a host that must also hold the port elsewhere (the
// shim binds its kernel shadow to it): free reports whether a candidate is not in
// use by this stack and could be taken there too. It returns 0 when none could.
func (s *Stack) PickPort(remote Addr, rport uint16, lo, hi uint16, free func(uint16) bool) uint16 {
	return s.pickPortIn(portProtoTCP, remote, rport, lo, hi, func(p uint16) bool {
		return s.portRefs[p] == 0 && free(p)
	})
}
