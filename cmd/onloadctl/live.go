package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"ustack/shm"
)

// readSegments reads every stats segment in dir (pid > 0: only that process's), exited
// processes' too, in pid order; keep decides which to return. A segment that cannot be read is
// reported on stderr and skipped; one that vanished meanwhile is skipped quietly. Nothing is
// removed.
func readSegments(dir string, pid int, stderr io.Writer, keep func(*shm.StatsSnapshot) bool) ([]*shm.StatsSnapshot, error) {
	var paths []string
	if pid > 0 {
		paths = []string{shm.StatsPath(dir, pid)}
	} else {
		var err error
		if paths, err = shm.ListStats(dir); err != nil {
			return nil, err
		}
	}
	var snaps []*shm.StatsSnapshot
	for _, p := range paths {
		s, err := shm.ReadStats(p)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(stderr, "onloadctl: skipping %v\n", err)
			}
			continue
		}
		if keep(s) {
			snaps = append(snaps, s)
		}
	}
	return snaps, nil
}

func alive(s *shm.StatsSnapshot) bool { return s.Alive }

// comm is the short command name of a process: its /proc/PID/comm while it lives (what top and
// ps -o comm show; nginx's workers stay "nginx" whatever title they set), else the base name of
// the first word of the command line its segment recorded.
func comm(s *shm.StatsSnapshot) string {
	if s.Alive {
		if c := commOf(s.Pid); c != "" {
			return c
		}
	}
	if f := strings.Fields(s.Cmdline); len(f) > 0 {
		return filepath.Base(f[0])
	}
	return "?"
}
