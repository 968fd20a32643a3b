package shim

import (
	"ustack/nic/xdp"
	"ustack/shm"
	"ustack/stackcore"
)

// statsStructs are the structs whose counters make up a process's stats segment, in segment
// order: the stack's, the AF_XDP socket's, the shim's.
func statsStructs() []any { return []any{&stackcore.Stats{}, &xdp.Stats{}, &Stats{}} }

// StatDescs describes the counters of the stats segment this build of ustack publishes, in
// segment order, from the fields' tags (shm.StatDescs): what onloadctl needs to name, explain
// and type them.
func StatDescs() []shm.StatDesc { return shm.StatDescs(statsStructs()...) }
