// Command onloadctl inspects and launches programs accelerated by ustack.
//
//	onloadctl stats [--json] [--pid N] [--all] [--dir D]
//	onloadctl stats --watch [SECONDS] [--count N] [--json] [--pid N] [--dir D]
//	onloadctl metrics [--listen ADDR] [--dir D]
//	onloadctl run [--profile P] [--dry-run] [--stats] [--dir D] -- cmd args...
//	onloadctl sockets [--pid N] [--json] [FILTER]
//	onloadctl capture [--pid N] [-i IFACE] -w FILE [FILTER]
//	onloadctl group [--iface I] [--json]
//	onloadctl keeper --iface I [--detach] (started by ustack itself)
//
// It only reads the per-process stats segments (package shm), prints or
// serves them, and sets LD_PRELOAD and USTACK_* variables; it holds no
// protocol logic.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"ustack/shim/profile"
	"ustack/shm"
)

const usage = `usage:
  onloadctl stats [--json] [--pid N] [--all] [--dir D]
      show the counters of processes running ustack. Without --pid: live
      processes only, and segments of exited processes are removed; --all also
      shows exited ones (marked exited) and removes nothing; --pid N shows that
      process even after it exited. Where several processes share an
      interface, a total for it follows them (in JSON: "total": true, pid 0).
  onloadctl stats --watch [SECONDS] [--count N] [--json] [--pid N] [--dir D]
      every SECONDS (default 1), one line per live process, and a total per
      interface several share, of rates per second: frames and kB received and
      sent on the AF_XDP socket, TCP segments in and out, retransmissions and
      drops; the header again every 20 lines. --json: one object a line.
      Runs until SIGINT or SIGTERM, or for --count N intervals.
  onloadctl metrics [--listen ADDR] [--dir D]
      the live processes' counters in Prometheus's text format 0.0.4, one
      family ustack_<counter> (_total for counters) with HELP and TYPE, one
      sample per process labelled pid, comm and iface. --listen host:port
      serves them at GET /metrics until SIGINT or SIGTERM.
  onloadctl run [--profile P] [--dry-run] [--stats] [--dir D] -- cmd [args...]
      run cmd with LD_PRELOAD=libustack.so ($USTACK_LIB, else next to onloadctl,
      else in ../lib or ../lib/<multiarch> from it, else the loader's search path),
      wait for it and exit with its status; --stats prints its final counters
      to stderr and removes its segment. --profile (default $USTACK_PROFILE):
      latency, throughput or default; sets the profile's USTACK_* variables
      except those already set (onloadctl run -h lists them). --dry-run prints
      the variables (KEY=VALUE) and the command, and runs nothing.

  onloadctl sockets [--pid N] [--json] [-t] [-u] [-l] [state NAME] [sport = :P] [dport = :P]
      list the sockets of processes running ustack as ss -tuanpi lists the
      kernel's: state, addresses, queues, and TCP's tcp_info (cwnd, rtt, bytes,
      retransmissions); sockets handed to the kernel show path kernel(why).
  onloadctl capture [--pid N] [-i IFACE] [-c COUNT] [-s SNAPLEN] [-G SECONDS] -w FILE|- [FILTER]
      write the frames the user-space stacks receive and send to FILE as pcap
      (- for stdout: | tcpdump -r -). FILTER: tcp, udp, host ADDR, port N,
      joined by "and". Ends at -c frames, -G seconds, SIGINT/SIGTERM, or when
      the processes exit; says how many frames were captured and dropped.
  onloadctl group [--iface IFACE] [--queue Q] [--json]
      show the processes sharing the interface's queue (run it in their network
      namespace): each one's slot, the frames it holds and its steering entries.
  onloadctl keeper --iface IFACE [--detach]
      the keeper of an interface's group; ustack starts it when it needs one.

The stats directory is --dir, else $USTACK_STATS_DIR, else /dev/shm.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "stats":
		if watchRequested(args[1:]) {
			return cmdStatsWatch(args[1:], stdout, stderr)
		}
		return cmdStats(args[1:], stdout, stderr)
	case "metrics":
		return cmdMetrics(args[1:], stdout, stderr)
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "group":
		return cmdGroup(args[1:], stdout, stderr)
	case "sockets":
		return cmdSockets(args[1:], stdout, stderr)
	case "capture":
		return cmdCapture(args[1:], stdout, stderr)
	case "keeper":
		return cmdKeeper(args[1:], stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "onloadctl: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

func statsDir(flagDir string) string {
	if flagDir != "" {
		return flagDir
	}
	if d := os.Getenv("USTACK_STATS_DIR"); d != "" {
		return d
	}
	return shm.DefaultStatsDir
}

func cmdStats(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON (an array of processes)")
	pid := fs.Int("pid", 0, "show only this process, even if it exited")
	all := fs.Bool("all", false, "include exited processes, remove nothing")
	dirFlag := fs.String("dir", "", "stats directory (default $USTACK_STATS_DIR or /dev/shm)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "onloadctl stats: unexpected arguments %q\n", fs.Args())
		return 2
	}
	dir := statsDir(*dirFlag)

	var snaps []*shm.StatsSnapshot
	if *pid != 0 {
		s, err := shm.ReadStats(shm.StatsPath(dir, *pid))
		if err != nil {
			fmt.Fprintf(stderr, "onloadctl: %v\n", err)
			return 1
		}
		snaps = append(snaps, s)
	} else {
		var err error
		snaps, err = readSegments(dir, 0, stderr, func(s *shm.StatsSnapshot) bool {
			if s.Gone && !*all {
				if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
					fmt.Fprintf(stderr, "onloadctl: removing stale segment: %v\n", err)
				}
				removeLeftovers(dir, s.Pid) // left by a process that was killed
			}
			return s.Alive || *all
		})
		if err != nil {
			fmt.Fprintf(stderr, "onloadctl: %v\n", err)
			return 1
		}
	}
	if *pid == 0 {
		snaps = withTotals(snaps)
	}
	if *asJSON {
		if err := writeJSON(stdout, snaps); err != nil {
			fmt.Fprintf(stderr, "onloadctl: %v\n", err)
			return 1
		}
		return 0
	}
	if len(snaps) == 0 {
		fmt.Fprintf(stdout, "no ustack processes (stats directory %s)\n", dir)
		return 0
	}
	for i, s := range snaps {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		writeText(stdout, s)
	}
	return 0
}

// libPath returns the libustack.so to preload: $USTACK_LIB; else the one beside onloadctl (the
// build directory); else an installed one, in ../lib or ../lib/<multiarch> from onloadctl's
// directory; else the plain name, for the dynamic loader to find in its search path.
func libPath() (string, error) {
	if p := os.Getenv("USTACK_LIB"); p != "" {
		p, err := filepath.Abs(p)
		if err == nil {
			_, err = os.Stat(p)
		}
		return p, err
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locating onloadctl: %w", err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	dir := filepath.Dir(exe)
	for _, d := range []string{dir, filepath.Join(dir, "..", "lib"), filepath.Join(dir, "..", "lib", multiarch[runtime.GOARCH])} {
		if p := filepath.Join(d, "libustack.so"); fileExists(p) {
			return p, nil
		}
	}
	return "libustack.so", nil
}

// multiarch is Debian's library directory name per architecture (gcc -print-multiarch).
var multiarch = map[string]string{
	"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu",
	"arm": "arm-linux-gnueabihf", "ppc64le": "powerpc64le-linux-gnu", "riscv64": "riscv64-linux-gnu",
	"s390x": "s390x-linux-gnu",
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	withStats := fs.Bool("stats", false, "print the program's final counters to stderr and remove its segment")
	dirFlag := fs.String("dir", "", "stats directory (default $USTACK_STATS_DIR or /dev/shm)")
	profName := fs.String("profile", "", "apply this profile's USTACK_* settings (default $USTACK_PROFILE): "+strings.Join(profile.Names(), ", "))
	dryRun := fs.Bool("dry-run", false, "print the variables run sets and the command, and run nothing")
	fs.Usage = func() { runUsage(fs) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprint(stderr, "onloadctl run: no command\n", usage)
		return 2
	}
	env, err := runEnv(*profName, *dirFlag, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "onloadctl run: %v\n", err)
		return 2
	}
	lib, err := libPath()
	if err != nil {
		fmt.Fprintf(stderr, "onloadctl: preload library: %v\n", err)
		return 127
	}
	preload := lib
	if old := os.Getenv("LD_PRELOAD"); old != "" {
		preload += ":" + old
	}
	env = append(env, "LD_PRELOAD="+preload)
	if *dryRun {
		writeDryRun(stdout, env, argv)
		return 0
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	// Like system(3): the terminal's SIGINT/SIGQUIT reach the child by
	// themselves; SIGTERM and SIGHUP sent to us are forwarded.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "onloadctl: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs)
	close(done)
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintf(stderr, "onloadctl: %v\n", err)
			return 1
		}
		ws := ee.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		default:
			code = ws.ExitStatus()
		}
	}
	if *withStats {
		path := shm.StatsPath(statsDir(*dirFlag), cmd.Process.Pid)
		s, err := shm.ReadStats(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(stderr, "onloadctl: process %d left no stats segment (it opened no accelerated socket, or ustack did not start)\n", cmd.Process.Pid)
		case err != nil:
			fmt.Fprintf(stderr, "onloadctl: %v\n", err)
		default:
			writeText(stderr, s)
			if err := os.Remove(path); err != nil {
				fmt.Fprintf(stderr, "onloadctl: %v\n", err)
			}
		}
	}
	return code
}
