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
	ephemeralNum   = 65536 - ephemeralLo
	portTableSize  = 256
	portProtoTCP   = 6
	portProtoUDP   = 17
	portHashSaltF  = 0x6a09e667f3bcc908
	portHashSaltG  = 0xbb67ae8584caa73b
	portHashSaltCk = 0x3c6ef372fe94f82b
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

func addrU64(a IPv4) uint64 {
	return uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
}

// pickPort runs RFC 6056 Algorithm 4 for a tuple; free reports whether a
// candidate may be used. It returns 0 when every ephemeral port is taken.
func (s *Stack) pickPort(proto uint64, remote IPv4, rport uint16, free func(uint16) bool) uint16 {
	a := addrU64(s.cfg.Addr)<<32 | addrU64(remote)
	b := proto<<16 | uint64(rport)
	offset := s.keyedHash(portHashSaltF, a, b, 0)
	idx := s.keyedHash(portHashSaltG, a, b, 1) % portTableSize
	next := s.portTable[idx]
	for range ephemeralNum {
		p := ephemeralLo + uint16((offset+uint64(next))%ephemeralNum)
		next++
		if free(p) {
			s.portTable[idx] = next
			return p
		}
	}
	return 0
}
