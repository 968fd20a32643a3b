package tests

// nginx (master_process off, worker_connections 20000,
// worker_rlimit_nofile 20000) in namespace A, 15,000 concurrent keep-alive
// HTTP/1.1 clients from namespace B, each sending one GET of a small static
// file and reading the whole response, all kept open. Once on the kernel, once
// under ustack; for each the test logs the requests answered, nginx's open fds,
// its VmRSS before and with the 15,000 connections open and idle (so RSS per
// idle connection), the mappings whose Rss grew, the errors of nginx's error
// log, nginx's CPU use while idle, the client's time per 1,000 answers (does
// opening slow down as connections accumulate?) and, under ustack, the
// onloadctl counters. Then the client closes them
// all and a second wave of 15,000 does the same again, on memory the first
// wave used and freed (under ustack the Go allocator zeroes a reused buffer
// whole, so a reused connection costs its full buffers in RSS, where the first
// wave's fresh, untouched pages cost only those written). It asserts that
// every request is answered and that nginx's error log has no "Too many open
// files"; memory is reported, not judged.
//
// The client (C, epoll, non-blocking) is embedded below and compiled with gcc
// into the test's temporary directory. B's ephemeral port range is widened to
// 1024-65535 (two waves leave 30,000 ports in TIME-WAIT). Gated by
// USTACK_NGINX15K=1:
//
//	USTACK_NGINX15K=1 go test -v -count=1 -run TestNginx15k ./tests/
//
// USTACK_NGINX15K_CONNS overrides 15000 (the hard RLIMIT_NOFILE of the machine
// must fit them plus 64 in the client). USTACK_NGINX15K_CPUPROFILE=FILE gives the
// ustack nginx USTACK_CPUPROFILE=FILE, a Go CPU profile of its first
// USTACK_NGINX15K_CPUPROFILE_SECS (default 60) seconds, written when they end
// (nginx must live that long); `go tool pprof build/libustack.so FILE`.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ustack/tests/topo"
)

const (
	n15kPort      = 8470
	n15kNofile    = 20000
	n15kWindow    = 200   // connections the client has in flight (not yet answered)
	n15kStallMS   = 15000 // the client stops opening after this long without an answer
	n15kConnMS    = 10000 // a connection not answered within this is failed (and closed)
	n15kOpenMS    = 240000
	n15kSmallSize = 128
	n15kIdle      = 5 * time.Second // after the last answer, before measuring "idle"
)

// n15kClientC: http_many IP PORT PATH N WINDOW STALL_MS CONN_MS OPEN_MS
//
// Opens N connections, at most WINDOW unanswered at a time; on each, once
// connected, sends "GET PATH HTTP/1.1" (keep-alive) and reads the response: a
// status 200 and exactly Content-Length bytes of body. An answered connection
// stays open; one that fails (connect error, EOF, reset, no complete answer
// within CONN_MS of its connect, a bad answer) is closed. Opening stops when no
// answer came for STALL_MS or after OPEN_MS in all. Then it prints
//
//	answered A of N (connected C, failed F, not tried T) in MS ms
//	errors: ...
//	holding
//
// and holds every answered connection until EOF on its standard input, noting
// those the server closes meanwhile; then
//
//	hold: S closed by the server, O still open
//	closed
//
// and exits 0.
const n15kClientC = `
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CONNECTING = 1, WAITING, DONE, FAILED, CLOSED };
#define BUFSZ 4096
struct conn { int fd; int st; int got; long t0; char *buf; };
static struct conn *cs;
static int nerr, inflight, answered, connected, failed;
static int e_conn, e_conntmo, e_eof, e_reset, e_tmo, e_bad, e_sock;

static long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errf(const char *fmt, ...) {
	if (nerr++ >= 10)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "http_many: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static void fail(int i) {
	struct conn *c = &cs[i];
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	if (c->st == CONNECTING || c->st == WAITING)
		inflight--;
	c->st = FAILED;
	failed++;
}

static char req[512];
static int reqlen;

/* response checks cs[i]'s buffer: 1 complete and good, 0 incomplete, -1 bad. */
static int response(struct conn *c) {
	char *end = memmem(c->buf, c->got, "\r\n\r\n", 4);
	if (!end)
		return c->got >= BUFSZ - 1 ? -1 : 0;
	int hdr = end + 4 - c->buf;
	if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0)
		return -1;
	long clen = -1;
	for (char *p = c->buf; p < end; p++) {
		if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0) {
			clen = strtol(p + 15, NULL, 10);
			break;
		}
	}
	if (clen < 0 || hdr + clen >= BUFSZ)
		return -1;
	if (c->got < hdr + clen)
		return 0;
	return c->got == hdr + clen ? 1 : -1;
}

int main(int argc, char **argv) {
	if (argc < 9) {
		fprintf(stderr, "usage: http_many IP PORT PATH N WINDOW STALL_MS CONN_MS OPEN_MS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	int n = atoi(argv[4]), window = atoi(argv[5]);
	long stall = atol(argv[6]), connms = atol(argv[7]), openms = atol(argv[8]);
	if (n <= 0 || window <= 0 || inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
		fprintf(stderr, "http_many: bad arguments\n");
		return 2;
	}
	reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: http_many\r\nAccept: */*\r\n\r\n",
	                  argv[3], argv[1]);
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = (rlim_t)n + 64;
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) {
			fprintf(stderr, "http_many: RLIMIT_NOFILE hard limit %lu < %d + 64\n", (unsigned long)rl.rlim_max, n);
			return 2;
		}
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			perror("http_many: setrlimit");
			return 2;
		}
	}
	cs = calloc(n, sizeof *cs);
	for (int i = 0; i < n; i++)
		cs[i].fd = -1;
	int ep = epoll_create1(0);
	struct epoll_event evs[512];
	long t0 = now_ms(), last = t0, lastscan = t0;
	int next = 0, stop = 0;
	for (;;) {
		long now = now_ms();
		if (!stop && now - t0 > openms) {
			fprintf(stderr, "http_many: opening took more than %ld ms: stopping\n", openms);
			stop = 1;
		}
		while (!stop && next < n && inflight < window) {
			int i = next++;
			struct conn *c = &cs[i];
			c->st = CONNECTING;
			c->t0 = now;
			inflight++;
			c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (c->fd < 0) {
				errf("conn %d: socket: %s", i, strerror(errno));
				e_sock++;
				fail(i);
				continue;
			}
			if (connect(c->fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) {
				errf("conn %d: connect: %s", i, strerror(errno));
				e_conn++;
				fail(i);
				continue;
			}
			struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = i };
			epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		}
		if (inflight == 0 && (stop || next >= n))
			break;
		int k = epoll_wait(ep, evs, 512, 100);
		if (k < 0 && errno != EINTR) {
			perror("http_many: epoll_wait");
			return 2;
		}
		for (int j = 0; j < k; j++) {
			int i = evs[j].data.u32;
			struct conn *c = &cs[i];
			if (c->st == CONNECTING) {
				int err = 0;
				socklen_t l = sizeof err;
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
				if (err) {
					errf("conn %d: connect: %s", i, strerror(err));
					e_conn++;
					fail(i);
					continue;
				}
				connected++;
				if (send(c->fd, req, reqlen, MSG_NOSIGNAL) != reqlen) {
					errf("conn %d: send: %s", i, strerror(errno));
					e_reset++;
					fail(i);
					continue;
				}
				c->st = WAITING;
				c->buf = malloc(BUFSZ);
				c->got = 0;
				struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u32 = i };
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			} else if (c->st == WAITING) {
				ssize_t r = recv(c->fd, c->buf + c->got, BUFSZ - 1 - c->got, MSG_DONTWAIT);
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				if (r <= 0) {
					errf("conn %d: %s before the whole answer (%d bytes)", i, r == 0 ? "EOF" : strerror(errno), c->got);
					if (r == 0)
						e_eof++;
					else
						e_reset++;
					fail(i);
					continue;
				}
				c->got += r;
				c->buf[c->got] = 0;
				int v = response(c);
				if (v < 0) {
					errf("conn %d: bad answer: %.80s", i, c->buf);
					e_bad++;
					fail(i);
				} else if (v > 0) {
					c->st = DONE;
					free(c->buf);
					c->buf = NULL;
					inflight--;
					answered++;
					last = now_ms();
					if (answered % 1000 == 0)
						printf("progress %d %ld\n", answered, last - t0);
				}
			} else if (c->st == DONE) {
				char b[256];
				ssize_t r = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
				if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
					errf("conn %d: closed by the server after its answer: %s", i, r == 0 ? "EOF" : strerror(errno));
					close(c->fd);
					c->fd = -1;
					c->st = CLOSED;
				}
			}
		}
		now = now_ms();
		if (now - lastscan >= 100) {
			lastscan = now;
			for (int i = 0; i < next; i++)
				if ((cs[i].st == CONNECTING || cs[i].st == WAITING) && now - cs[i].t0 > connms) {
					errf("conn %d: %s within %ld ms", i, cs[i].st == CONNECTING ? "not connected" : "no whole answer", connms);
					if (cs[i].st == CONNECTING)
						e_conntmo++;
					else
						e_tmo++;
					fail(i);
				}
		}
		if (!stop && inflight > 0 && now - last > stall) {
			fprintf(stderr, "http_many: no answer for %ld ms: stopping after %d of %d opened\n", stall, next, n);
			stop = 1;
			for (int i = 0; i < next; i++)
				if (cs[i].st == CONNECTING || cs[i].st == WAITING) {
					if (cs[i].st == CONNECTING)
						e_conntmo++;
					else
						e_tmo++;
					fail(i);
				}
		}
	}
	int closedEarly = 0;
	for (int i = 0; i < n; i++)
		closedEarly += cs[i].st == CLOSED;
	printf("answered %d of %d (connected %d, failed %d, not tried %d) in %ld ms\n", answered, n, connected, failed,
	       n - next, now_ms() - t0);
	printf("errors: socket %d connect %d connect_timeout %d eof %d reset %d answer_timeout %d bad_answer %d closed_after_answer %d\n",
	       e_sock, e_conn, e_conntmo, e_eof, e_reset, e_tmo, e_bad, closedEarly);
	printf("holding\n");

	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0xffffffffu };
	epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
	for (int eof = 0; !eof;) {
		int k = epoll_wait(ep, evs, 512, -1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		for (int j = 0; j < k; j++) {
			if (evs[j].data.u32 == 0xffffffffu) {
				char b[64];
				ssize_t r = read(0, b, sizeof b);
				if (r <= 0)
					eof = 1;
				continue;
			}
			struct conn *c = &cs[evs[j].data.u32];
			if (c->st != DONE)
				continue;
			char b[256];
			ssize_t r = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				close(c->fd);
				c->fd = -1;
				c->st = CLOSED;
			}
		}
	}
	int closed = 0, open = 0;
	for (int i = 0; i < n; i++) {
		closed += cs[i].st == CLOSED;
		open += cs[i].st == DONE;
	}
	printf("hold: %d closed by the server, %d still open\n", closed, open);
	for (int i = 0; i < n; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	printf("closed\n");
	return 0;
}
`

func n15kConf(dir, www, name string, port int) string {
	return fmt.Sprintf(`master_process off;
daemon off;
worker_processes 1;
worker_rlimit_nofile %[5]d;
pid %[1]s/%[3]s.pid;
error_log %[1]s/%[3]s-error.log info;
events { worker_connections %[5]d; use epoll; }
http {
    access_log off;
    sendfile on;
    keepalive_timeout 3600s;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    server {
        listen 0.0.0.0:%[4]d;
        root %[2]s;
    }
}
`, dir, www, name, port, n15kNofile)
}

// n15kMem is nginx's memory at one moment (kB, from /proc/PID/status).
type n15kMem struct{ rss, anon, vmsize, threads int64 }

func n15kMemOf(pid int) n15kMem {
	kb := func(f string) int64 {
		v, _, _ := strings.Cut(procStatusField(pid, f), " ")
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return n15kMem{kb("VmRSS"), kb("RssAnon"), kb("VmSize"), kb("Threads")}
}

func (m n15kMem) String() string {
	return fmt.Sprintf("VmRSS %d kB (RssAnon %d kB), VmSize %d kB, %d threads", m.rss, m.anon, m.vmsize, m.threads)
}

// n15kSmaps returns the Rss (kB) of each mapping of pid, keyed by its start address, with its
// description ("size kB, name").
func n15kSmaps(pid int) map[uint64]struct {
	rss  int64
	desc string
} {
	res := map[uint64]struct {
		rss  int64
		desc string
	}{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return res
	}
	var start uint64
	var desc string
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, hi, _ := strings.Cut(f[0], "-")
			start, _ = strconv.ParseUint(lo, 16, 64)
			end, _ := strconv.ParseUint(hi, 16, 64)
			name := "anonymous"
			if len(f) >= 6 {
				name = f[5]
			}
			desc = fmt.Sprintf("%x size %d kB %s %s", start, (end-start)>>10, f[1], name)
			continue
		}
		if len(f) >= 2 && f[0] == "Rss:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			res[start] = struct {
				rss  int64
				desc string
			}{v, desc}
		}
	}
	return res
}

// n15kGrowth logs the mappings of pid whose Rss grew by more than 1 MiB since before.
func n15kGrowth(t *testing.T, what string, pid int, before map[uint64]struct {
	rss  int64
	desc string
}) {
	now := n15kSmaps(pid)
	type g struct {
		d    int64
		desc string
	}
	var gs []g
	for k, v := range now {
		if d := v.rss - before[k].rss; d > 1024 {
			gs = append(gs, g{d, v.desc})
		}
	}
	slices.SortFunc(gs, func(a, b g) int { return int(b.d - a.d) })
	var s []string
	for _, x := range gs {
		s = append(s, fmt.Sprintf("  +%d kB Rss: %s", x.d, x.desc))
	}
	t.Logf("%s: mappings whose Rss grew by more than 1 MiB:\n%s", what, strings.Join(s, "\n"))
}

// n15kCPU returns the CPU time (user + system, all threads) pid has used.
func n15kCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(b), ") ") // after the command name
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)        // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)        // stime, field 15
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

type n15kResult struct {
	answered, answered2 int
	fds                 int
	before, after       n15kMem
	closed, after2      n15kMem
	emfile, errs        int
	idleCPU0, idleCPU   float64 // % of a core nginx used idle: before connecting, and with the connections open
	passive, accel      uint64
}

func TestNginx15k(t *testing.T) {
	if os.Getenv("USTACK_NGINX15K") != "1" {
		t.Skip("set USTACK_NGINX15K=1 to run (nginx with 15,000 idle keep-alive connections, kernel vs ustack)")
	}
	conns := 15000
	if s := os.Getenv("USTACK_NGINX15K_CONNS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			conns = n
		}
	}
	e := setup(t, "nginx", "gcc")
	// Two waves of connections per run, each leaving its client ports in TIME-WAIT for 60 s:
	// B's default 28,232 ephemeral ports would not fit 2 x 15,000.
	if r := e.tp.RunB(nil, 10*time.Second, "sysctl", "-w", "net.ipv4.ip_local_port_range=1024 65535"); r.Err != nil {
		t.Fatalf("widening B's ephemeral port range: %s", r)
	}
	dir, www := nginxSite(t)
	randomFile(t, www, "small", n15kSmallSize)
	src := filepath.Join(dir, "http_many.c")
	cli := filepath.Join(dir, "http_many")
	if err := os.WriteFile(src, []byte(n15kClientC), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-o", cli, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc http_many.c: %v\n%s", err, out)
	}

	res := map[string]*n15kResult{}
	for i, m := range modes(e) {
		t.Run(m.name, func(t *testing.T) {
			r := &n15kResult{}
			res[m.name] = r
			e.nginx15k(t, m, r, dir, www, cli, n15kPort+i, conns)
		})
	}
	k, u := res["kernel"], res["ustack"]
	if k == nil || u == nil {
		return
	}
	per := func(a, b int64, n int) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f KiB", float64(b-a)/float64(n))
	}
	t.Logf("FIGURES nginx, %d keep-alive connections from B (each answered one GET of a %d-byte file, then idle, all held open):", conns, n15kSmallSize)
	t.Logf("  %-44s %18s %18s", "", "kernel", "ustack")
	row := func(name string, kv, uv any) { t.Logf("  %-44s %18v %18v", name, kv, uv) }
	row("requests answered", fmt.Sprintf("%d/%d", k.answered, conns), fmt.Sprintf("%d/%d", u.answered, conns))
	row("nginx open fds, all open", k.fds, u.fds)
	row("VmRSS before (kB)", k.before.rss, u.before.rss)
	row("VmRSS all open, idle (kB)", k.after.rss, u.after.rss)
	row("RSS delta (kB)", k.after.rss-k.before.rss, u.after.rss-u.before.rss)
	row("RSS per idle connection", per(k.before.rss, k.after.rss, k.answered), per(u.before.rss, u.after.rss, u.answered))
	row("VmSize per connection", per(k.before.vmsize, k.after.vmsize, k.answered), per(u.before.vmsize, u.after.vmsize, u.answered))
	row("VmRSS after all closed (kB)", k.closed.rss, u.closed.rss)
	row("2nd wave: requests answered", fmt.Sprintf("%d/%d", k.answered2, conns), fmt.Sprintf("%d/%d", u.answered2, conns))
	row("2nd wave: VmRSS all open, idle (kB)", k.after2.rss, u.after2.rss)
	row("2nd wave: RSS per conn. over 'before'", per(k.before.rss, k.after2.rss, k.answered2), per(u.before.rss, u.after2.rss, u.answered2))
	row("nginx CPU idle, before connecting", fmt.Sprintf("%.1f %%", k.idleCPU0), fmt.Sprintf("%.1f %%", u.idleCPU0))
	row("nginx CPU idle, all open", fmt.Sprintf("%.1f %%", k.idleCPU), fmt.Sprintf("%.1f %%", u.idleCPU))
	row("error.log \"Too many open files\"", k.emfile, u.emfile)
	row("error.log [error..emerg] lines", k.errs, u.errs)
	row("tcp.passive_opens (after wave 1)", "-", u.passive)
	row("shim.sockets_accelerated (after wave 1)", "-", u.accel)
}

// n15kWave runs the client against nginx: it opens conns connections, each answered once, and
// holds them; the caller measures, then calls release, which makes the client close them all.
func (e *env) n15kWave(t *testing.T, cli string, port, conns int) (answered int, release func()) {
	tp := e.tp
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	cmd := topo.Command(ctx, tp.NSB, nil, cli, tp.AddrA, strconv.Itoa(port), "/small", strconv.Itoa(conns),
		strconv.Itoa(n15kWindow), strconv.Itoa(n15kStallMS), strconv.Itoa(n15kConnMS), strconv.Itoa(n15kOpenMS))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out, progress []string
	next := func(prefix string, timeout time.Duration) bool {
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return false
				}
				if p, ok := strings.CutPrefix(l, "progress "); ok {
					progress = append(progress, p)
					continue
				}
				out = append(out, l)
				if strings.HasPrefix(l, prefix) {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		stdin.Close()
		next("closed", 60*time.Second)
		for _, l := range out {
			if strings.HasPrefix(l, "hold: ") {
				t.Logf("client %s", l)
			}
		}
		cancel()
		cmd.Wait()
	}
	t.Cleanup(release)
	if !next("holding", 5*time.Minute) {
		t.Errorf("the client did not finish opening:\n%s\nstderr:\n%s", strings.Join(out, "\n"), clipBytes(stderr.Bytes(), 3000))
		return 0, release
	}
	for _, l := range out {
		if strings.HasPrefix(l, "answered ") {
			fmt.Sscanf(l, "answered %d", &answered)
		}
	}
	t.Logf("client (%v): %s", time.Since(start).Round(time.Millisecond), strings.Join(out, "; "))
	// Time per 1000 answers, to see whether opening slows down as connections accumulate.
	var steps []string
	prev := int64(0)
	for _, p := range progress {
		var n, ms int64
		fmt.Sscanf(p, "%d %d", &n, &ms)
		steps = append(steps, fmt.Sprintf("%d:%d", n/1000, ms-prev))
		prev = ms
	}
	t.Logf("client: ms per 1000 answers (thousand:ms): %s", strings.Join(steps, " "))
	if s := bytes.TrimSpace(stderr.Bytes()); len(s) > 0 {
		t.Logf("client stderr:\n%s", clipBytes(s, 3000))
	}
	if answered != conns {
		t.Errorf("%d of %d requests answered", answered, conns)
	}
	return answered, release
}

func (e *env) nginx15k(t *testing.T, m stackMode, r *n15kResult, dir, www, cli string, port, conns int) {
	tp := e.tp
	conf := filepath.Join(dir, m.name+".conf")
	if err := os.WriteFile(conf, []byte(n15kConf(dir, www, m.name, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	errLog := filepath.Join(dir, m.name+"-error.log")
	env := m.env
	if p := os.Getenv("USTACK_NGINX15K_CPUPROFILE"); p != "" && m.accel {
		secs := os.Getenv("USTACK_NGINX15K_CPUPROFILE_SECS")
		if secs == "" {
			secs = "60"
		}
		env = append(slices.Clone(env), "USTACK_CPUPROFILE="+p, "USTACK_CPUPROFILE_SECS="+secs)
	}
	srv := startServer(t, tp, tp.NSA, env, port, false, "nginx", "-p", dir+"/", "-c", conf, "-e", errLog)
	if lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", srv.Pid)); err == nil {
		if l := regexp.MustCompile(`Max open files.*`).Find(lim); l != nil {
			t.Logf("nginx (pid %d): %s", srv.Pid, l)
		}
	}
	defer func() {
		if srv.Exited() {
			t.Errorf("nginx exited during the run:\n%s", srv.Output())
		}
		srv.Stop()
		if log, err := os.ReadFile(errLog); err == nil {
			s := string(log)
			r.emfile = strings.Count(s, "Too many open files")
			bad := regexp.MustCompile(`(?m)^.*\[(error|crit|alert|emerg)\].*$`).FindAllString(s, -1)
			r.errs = len(bad)
			if len(bad) > 0 {
				if len(bad) > 8 {
					bad = append(bad[:4], append([]string{"..."}, bad[len(bad)-4:]...)...)
				}
				t.Logf("nginx error log: %d lines [error|crit|alert|emerg], %d \"Too many open files\":\n%s",
					r.errs, r.emfile, strings.Join(bad, "\n"))
			}
			if r.emfile > 0 {
				t.Errorf("nginx logged \"Too many open files\" %d times", r.emfile)
			}
		}
		if o := bytes.TrimSpace(srv.Stderr()); len(o) > 0 {
			t.Logf("nginx stderr:\n%s", clipBytes(o, 2000))
		}
	}()
	// One request first, so that whatever the first connection sets up is in the baseline.
	if w := tp.RunB(nil, 30*time.Second, "curl", "-sS", "--fail", "--max-time", "20", "-o", "/dev/null",
		fmt.Sprintf("http://%s:%d/small", tp.AddrA, port)); w.Err != nil {
		t.Fatalf("warm-up curl: %s", w)
	}
	time.Sleep(time.Second)
	cpu0, t0 := n15kCPU(srv.Pid), time.Now()
	time.Sleep(4 * time.Second)
	r.idleCPU0 = 100 * float64(n15kCPU(srv.Pid)-cpu0) / float64(time.Since(t0))
	t.Logf("nginx CPU while idle before connecting: %.1f %% of a core", r.idleCPU0)
	r.before = n15kMemOf(srv.Pid)
	fd0, kinds0 := openFDs(t, srv.Pid)
	maps0 := n15kSmaps(srv.Pid)
	t.Logf("nginx before: %s; %d open fds (%s)", r.before, fd0, kinds0)

	// Wave 1.
	var release func()
	r.answered, release = e.n15kWave(t, cli, port, conns)
	time.Sleep(time.Second)
	cpu0, t0 = n15kCPU(srv.Pid), time.Now()
	time.Sleep(n15kIdle - time.Second)
	r.idleCPU = 100 * float64(n15kCPU(srv.Pid)-cpu0) / float64(time.Since(t0))
	t.Logf("nginx CPU while idle with the connections open: %.1f %% of a core", r.idleCPU)
	r.after = n15kMemOf(srv.Pid)
	var kinds string
	r.fds, kinds = openFDs(t, srv.Pid)
	t.Logf("nginx with the connections open, idle %v: %s; %d open fds (%s)", n15kIdle, r.after, r.fds, kinds)
	n15kGrowth(t, "wave 1", srv.Pid, maps0)
	if r.answered > 0 {
		t.Logf("RSS growth %d kB = %.2f KiB per answered connection; VmSize growth %d kB = %.1f KiB per connection",
			r.after.rss-r.before.rss, float64(r.after.rss-r.before.rss)/float64(r.answered),
			r.after.vmsize-r.before.vmsize, float64(r.after.vmsize-r.before.vmsize)/float64(r.answered))
	}
	if m.accel {
		c := e.counters(t, "nginx", srv.Pid)
		r.passive, r.accel = c["tcp.passive_opens"], c["shim.sockets_accelerated"]
		var sel []string
		for _, k := range []string{"tcp.passive_opens", "tcp.active_opens", "tcp.curr_estab", "shim.sockets_accelerated",
			"shim.passed_to_kernel", "shim.kernel_accepts", "tcp.listen_drops", "tcp.syncookies_sent"} {
			if v, ok := c[k]; ok {
				sel = append(sel, fmt.Sprintf("%s %d", k, v))
			}
		}
		t.Logf("nginx counters: %s", strings.Join(sel, ", "))
	}

	// Release them; wait until nginx is back to its fds of before.
	release()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, _ := openFDs(t, srv.Pid)
		if n <= fd0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	r.closed = n15kMemOf(srv.Pid)
	n, kinds := openFDs(t, srv.Pid)
	t.Logf("nginx after the client closed them all: %s; %d open fds (%s)", r.closed, n, kinds)

	// Wave 2: the same again, on memory the first wave used and freed.
	r.answered2, release = e.n15kWave(t, cli, port, conns)
	time.Sleep(n15kIdle)
	r.after2 = n15kMemOf(srv.Pid)
	n, kinds = openFDs(t, srv.Pid)
	t.Logf("2nd wave open, idle %v: %s; %d open fds (%s)", n15kIdle, r.after2, n, kinds)
	n15kGrowth(t, "wave 2 (since before wave 1)", srv.Pid, maps0)
	if m.accel {
		c := e.stats(t, srv.Pid)
		t.Logf("nginx counters after wave 2: tcp.passive_opens %d, tcp.curr_estab %d, shim.sockets_accelerated %d",
			c["tcp.passive_opens"], c["tcp.curr_estab"], c["shim.sockets_accelerated"])
	}
	release()
}
