package topo

// Exported pieces of the topology's housekeeping, for helpers that build
// other topologies (tests/faults) with the same naming and sweeping rules.

// NSPrefix starts every namespace name a test topology creates:
// "ustk-<pid>-<id>-<role>". Namespaces with this prefix whose pid is gone are
// deleted by SweepStale.
const NSPrefix = nsPrefix

// SweepStale deletes namespaces "ustk-<pid>-..." whose creating process is
// gone (a run killed before its cleanup), killing what still runs inside.
func SweepStale() { sweepStale() }

// DeleteNS kills every process still running in namespace ns and deletes
// it; nil if it does not exist.
func DeleteNS(ns string) error { return deleteNS(ns) }
