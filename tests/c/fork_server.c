/*
 * fork_server: the accelerated side of the fork tests: a socket opened and
 * used in the parent, then used after fork() without exec by the parent, the child or both. The
 * kernel peer is tests/c/fork_peer (same MODE) in the other namespace.
 *
 *   fork_server childecho  PORT   accept, fork; the child echoes everything to EOF (the peer sends
 *                                 8 MiB), the parent closes its copy at once
 *   fork_server parentecho PORT   accept, fork; the child closes its copy and exits; then the
 *                                 parent echoes everything to EOF
 *   fork_server turns      PORT ROUNDS
 *                                 accept, fork; parent (even rounds) and child (odd rounds) take
 *                                 turns: write block i, read the peer's "ACK i", pass the turn on
 *   fork_server udp        PORT N a UDP socket: "hello" answered before the fork; after it the
 *                                 parent receives N datagrams (the first 16 queued before the fork)
 *                                 and hands each to the child through a pipe, the child replies on
 *                                 the same socket; "bye" answered by the parent after the child is gone
 *   fork_server midxfer    PORT BYTES
 *                                 accept; send BYTES and receive BYTES at the same time
 *                                 (non-blocking, poll); when a quarter has gone each way, fork: the
 *                                 child carries on with the transfer to the end, the parent does
 *                                 not touch the socket until the child has exited, then closes it
 *
 * Prints "ok ..." / "FAIL ..." lines (a child's through a pipe, printed by the parent once the
 * child has exited, so the output does not depend on scheduling), "info ..." lines that may
 * differ between runs, and "fork_server ok" at the end; exit 0 when every check passed. The same
 * lines are expected on the kernel and under ustack. alarm() bounds every process.
 */
#include "fork.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#define ECHO_BUF 65536

/* echo_loop echoes fd to itself until EOF; returns the bytes echoed, -1 on an error. */
static long long echo_loop(int fd, const char *who)
{
	static char buf[ECHO_BUF];
	long long total = 0;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			failf("%s: recv after %lld bytes: %s", who, total, E);
			return -1;
		}
		if (n == 0)
			return total;
		if (write_all(fd, buf, n) < 0) {
			failf("%s: send after %lld bytes: %s", who, total, E);
			return -1;
		}
		total += n;
	}
}

static void check_close(int fd, const char *what)
{
	if (close(fd) != 0)
		failf("%s: close: %s", what, E);
	else
		okf("%s: close 0", what);
}

/* ---- childecho / parentecho ---- */

static void childecho(int l)
{
	int c = accept_one(l);
	okf("accepted");
	int p[2];
	if (pipe(p) < 0)
		exit(1);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		failf("fork: %s", E);
		return;
	}
	if (pid == 0) {
		child_reporting(p);
		arm(120, "child echo");
		close(l);
		long long n = echo_loop(c, "child echo");
		if (n >= 0)
			okf("child: echoed %lld bytes, then EOF", n);
		if (shutdown(c, SHUT_WR) != 0)
			failf("child: shutdown: %s", E);
		check_close(c, "child: its copy");
		exit(fails ? 1 : 0);
	}
	check_close(c, "parent: its copy, right after the fork");
	reap(pid, p, "echoing child");
}

/* wait_acked waits (up to secs) until the peer has acknowledged all fd sent (SIOCOUTQ 0). A
 * process that exits with data still in flight leaves its connection to the kernel to finish
 * (under ustack: moved with its state at exit), so a test of the path that carried the data
 * waits for it first. */
static void wait_acked(int fd, int secs)
{
	int q = 0;
	for (int i = 0; i < secs * 1000; i++) {
		if (ioctl(fd, SIOCOUTQ, &q) != 0 || q == 0)
			return;
		usleep(1000);
	}
	infof("%d bytes still unacknowledged after %d s", q, secs);
}

static void parentecho(int l)
{
	int c = accept_one(l);
	okf("accepted");
	int p[2];
	if (pipe(p) < 0)
		exit(1);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		failf("fork: %s", E);
		return;
	}
	if (pid == 0) {
		child_reporting(p);
		arm(10, "child close");
		check_close(c, "child: its copy");
		check_close(l, "child: its copy of the listener");
		exit(fails ? 1 : 0);
	}
	reap(pid, p, "closing child");
	long long n = echo_loop(c, "parent echo");
	if (n >= 0)
		okf("parent: echoed %lld bytes after the child closed its copy, then EOF", n);
	if (shutdown(c, SHUT_WR) != 0)
		failf("parent: shutdown: %s", E);
	wait_acked(c, 10);
	check_close(c, "parent: the connection");
}

/* ---- turns ---- */

/* Block i of the turns test: a 19-byte header "BLK %05d %c %06u\n" (round, P or C, length),
 * then blklen(i) bytes of stream 1000+i. tests/c/fork_peer.c checks them in order. */
static unsigned blklen(int i) { return 1 + (unsigned)(i * 7919) % 65536; }

static int turn(int c, int i, char who)
{
	static unsigned char b[32 + 65536];
	unsigned n = blklen(i);
	char hdr[48];
	snprintf(hdr, sizeof hdr, "BLK %05d %c %06u\n", i % 100000, who, n);
	memcpy(b, hdr, 19);
	gen_fill(1000 + i, 0, b + 19, n);
	if (write_all(c, b, 19 + n) < 0) {
		failf("round %d (%c): send: %s", i, who, E);
		return -1;
	}
	char ack[11] = { 0 }, want[24];
	snprintf(want, sizeof want, "ACK %05d\n", i % 100000);
	ssize_t r = read_full(c, ack, 10);
	if (r != 10 || memcmp(ack, want, 10) != 0) {
		failf("round %d (%c): ack: got %zd bytes %.10s (%s), want %.9s", i, who, r, ack, r < 0 ? E : "-", want);
		return -1;
	}
	return 0;
}

static int token_wait(int fd, int want)
{
	int got;
	ssize_t r;
	while ((r = read(fd, &got, sizeof got)) < 0 && errno == EINTR)
		;
	return r == sizeof got && got == want ? 0 : -1;
}

static void turns(int l, int rounds)
{
	int c = accept_one(l);
	okf("accepted");
	int p[2], pc[2], cp[2]; /* report pipe, parent->child and child->parent turn pipes */
	if (pipe(p) < 0 || pipe(pc) < 0 || pipe(cp) < 0)
		exit(1);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		failf("fork: %s", E);
		return;
	}
	if (pid == 0) {
		child_reporting(p);
		arm(60, "child turns");
		close(l);
		close(pc[1]);
		close(cp[0]);
		int done = 0;
		for (int i = 1; i < rounds; i += 2) {
			if (token_wait(pc[0], i) < 0) {
				failf("child: no turn %d from the parent", i);
				break;
			}
			if (turn(c, i, 'C') < 0)
				break;
			done++;
			if (write(cp[1], &(int){ i + 1 }, sizeof(int)) != sizeof(int))
				break;
		}
		okf("child: wrote %d blocks, each acknowledged", done);
		check_close(c, "child: its copy");
		exit(fails ? 1 : 0);
	}
	close(pc[0]);
	close(cp[1]);
	int done = 0;
	for (int i = 0; i < rounds; i += 2) {
		if (i > 0 && token_wait(cp[0], i) < 0) {
			failf("parent: no turn %d from the child", i);
			break;
		}
		if (turn(c, i, 'P') < 0)
			break;
		done++;
		if (i + 1 < rounds && write(pc[1], &(int){ i + 1 }, sizeof(int)) != sizeof(int))
			break;
	}
	if (rounds % 2 == 0 && done == rounds / 2 && token_wait(cp[0], rounds) < 0)
		failf("parent: the child did not finish its last turn");
	close(pc[1]);
	reap(pid, p, "child taking turns");
	okf("parent: wrote %d blocks, each acknowledged", done);
	if (shutdown(c, SHUT_WR) != 0)
		failf("parent: shutdown after the turns: %s", E);
	char x;
	ssize_t r = read_full(c, &x, 1);
	if (r != 0)
		failf("parent: want EOF after the turns, got %zd (%s)", r, r < 0 ? E : "data");
	else
		okf("parent: EOF from the peer after the turns");
	check_close(c, "parent: the connection");
}

/* ---- udp ---- */

struct dgram {
	struct sockaddr_in from;
	int len; /* -1: no more */
	char data[2048];
};

static void udp(int port, int n)
{
	int u = listen_on(port, SOCK_DGRAM);
	arm(30, "hello");
	struct dgram d;
	socklen_t fl = sizeof d.from;
	d.len = recvfrom(u, d.data, sizeof d.data, 0, (struct sockaddr *)&d.from, &fl);
	if (d.len != 5 || memcmp(d.data, "hello", 5) != 0) {
		failf("want hello, got %d bytes (%s)", d.len, d.len < 0 ? E : "-");
		exit(1);
	}
	if (sendto(u, "hello-ack", 9, 0, (struct sockaddr *)&d.from, fl) != 9) {
		failf("sendto hello-ack: %s", E);
		exit(1);
	}
	okf("before the fork: hello received and answered");
	usleep(300 * 1000); /* the peer's burst of 16 queues in the socket meanwhile */
	int p[2], q[2];
	if (pipe(p) < 0 || pipe(q) < 0)
		exit(1);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		failf("fork: %s", E);
		return;
	}
	if (pid == 0) {
		child_reporting(p);
		arm(60, "child replies");
		close(q[1]);
		int replies = 0;
		for (;;) {
			ssize_t r = read_pipe(q[0], &d, sizeof d);
			if (r != sizeof d || d.len < 0)
				break;
			char out[2048 + 3];
			memcpy(out, "re:", 3);
			memcpy(out + 3, d.data, d.len);
			if (sendto(u, out, d.len + 3, 0, (struct sockaddr *)&d.from, sizeof d.from) != d.len + 3) {
				failf("child: sendto reply %d: %s", replies, E);
				break;
			}
			replies++;
		}
		okf("child: %d replies sent on the inherited socket", replies);
		check_close(u, "child: its copy");
		exit(fails ? 1 : 0);
	}
	close(q[0]);
	arm(60, "parent receives");
	int got = 0;
	for (; got < n; got++) {
		struct pollfd pf = { .fd = u, .events = POLLIN };
		int r = poll(&pf, 1, 5000);
		if (r != 1) {
			failf("parent: datagram %d: poll %d: %s", got, r, r < 0 ? E : "nothing within 5 s");
			break;
		}
		fl = sizeof d.from;
		d.len = recvfrom(u, d.data, sizeof d.data, 0, (struct sockaddr *)&d.from, &fl);
		if (d.len < 0) {
			failf("parent: recvfrom datagram %d: %s", got, E);
			break;
		}
		if (write(q[1], &d, sizeof d) != sizeof d)
			break;
	}
	okf("parent: received %d datagrams after the fork, handed to the child", got);
	d.len = -1;
	if (write(q[1], &d, sizeof d) != sizeof d) {
	}
	close(q[1]);
	reap(pid, p, "replying child");
	fl = sizeof d.from;
	struct pollfd pf = { .fd = u, .events = POLLIN };
	if (poll(&pf, 1, 5000) != 1 || (d.len = recvfrom(u, d.data, sizeof d.data, 0, (struct sockaddr *)&d.from, &fl)) != 3 ||
	    memcmp(d.data, "bye", 3) != 0)
		failf("parent: no bye after the child exited (%s)", E);
	else if (sendto(u, "bye-ack", 7, 0, (struct sockaddr *)&d.from, fl) != 7)
		failf("parent: sendto bye-ack: %s", E);
	else
		okf("parent: bye received and answered after the child exited");
	check_close(u, "parent: the socket");
}

/* ---- midxfer ---- */

struct xfer {
	int fd;
	uint64_t size, sent, rcvd;
	uint64_t cap; /* neither direction goes past cap bytes (the fork point; then size) */
	uint64_t sseed, rseed;
	int eof, shut;
	sha256_ctx rsha;
	const char *who;
};

/* xfer_step does one poll round of a two-way transfer; 1: done, 0: go on, -1: failed. */
static int xfer_step(struct xfer *x)
{
	static unsigned char buf[65536];
	uint64_t slim = x->cap < x->size ? x->cap : x->size;
	struct pollfd pf = { .fd = x->fd, .events = (!x->eof && x->rcvd < x->cap ? POLLIN : 0) | (x->sent < slim ? POLLOUT : 0) };
	int r = poll(&pf, 1, 30000);
	if (r < 0 && errno == EINTR)
		return 0;
	if (r < 0) {
		failf("%s: poll: %s", x->who, E);
		return -1;
	}
	if (r == 0) {
		failf("%s: no progress for 30 s (sent %llu, received %llu of %llu)", x->who, (unsigned long long)x->sent,
		      (unsigned long long)x->rcvd, (unsigned long long)x->size);
		return -1;
	}
	if (pf.revents & POLLNVAL) {
		failf("%s: poll: POLLNVAL", x->who);
		return -1;
	}
	if (x->sent < slim && (pf.revents & (POLLOUT | POLLERR | POLLHUP))) {
		size_t k = slim - x->sent < sizeof buf ? slim - x->sent : sizeof buf;
		gen_fill(x->sseed, x->sent, buf, k);
		ssize_t n = send(x->fd, buf, k, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			failf("%s: send at %llu: %s", x->who, (unsigned long long)x->sent, E);
			return -1;
		}
		if (n > 0)
			x->sent += n;
	}
	if (x->sent == x->size && !x->shut) {
		if (shutdown(x->fd, SHUT_WR) != 0) {
			failf("%s: shutdown: %s", x->who, E);
			return -1;
		}
		x->shut = 1;
	}
	if (!x->eof && x->rcvd < x->cap && (pf.revents & (POLLIN | POLLERR | POLLHUP))) {
		uint64_t room = x->cap - x->rcvd;
		ssize_t n = recv(x->fd, buf, room < sizeof buf ? room : sizeof buf, 0);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			failf("%s: recv at %llu: %s", x->who, (unsigned long long)x->rcvd, E);
			return -1;
		}
		if (n == 0)
			x->eof = 1;
		if (n > 0) {
			long bad = gen_check(x->rseed, x->rcvd, buf, n);
			if (bad >= 0 || x->rcvd + n > x->size) {
				failf("%s: received data differs from what the peer sent at byte %llu", x->who,
				      (unsigned long long)(x->rcvd + (bad >= 0 ? bad : 0)));
				return -1;
			}
			sha256_update(&x->rsha, buf, n);
			x->rcvd += n;
		}
	}
	return x->eof && x->shut;
}

static void xfer_report(struct xfer *x)
{
	char got[65], want[65];
	sha256_hex(&x->rsha, got);
	stream_sha(x->rseed, x->size, want);
	if (x->rcvd != x->size || strcmp(got, want) != 0)
		failf("%s: received %llu bytes, sha256 %s; want %llu bytes, sha256 %s", x->who, (unsigned long long)x->rcvd,
		      got, (unsigned long long)x->size, want);
	else
		okf("%s: sent %llu bytes, received %llu bytes, sha256 %s", x->who, (unsigned long long)x->sent,
		    (unsigned long long)x->rcvd, got);
}

static void midxfer(int l, uint64_t size)
{
	int c = accept_one(l);
	okf("accepted");
	set_nonblock(c);
	uint64_t at = size / 4;
	/* Both directions stop at a quarter, so that at the fork three quarters are to go each way
	 * and the peer's sends are queued in A's receive buffer, A's in its send buffer. */
	struct xfer x = { .fd = c, .size = size, .cap = at, .sseed = 1, .rseed = 2, .who = "parent before the fork" };
	sha256_init(&x.rsha);
	arm(300, "transfer before the fork");
	int r = 0;
	while (r == 0 && (x.sent < at || x.rcvd < at))
		r = xfer_step(&x);
	if (r != 0) {
		failf("the transfer ended before the fork point (sent %llu, received %llu)", (unsigned long long)x.sent,
		      (unsigned long long)x.rcvd);
		return;
	}
	okf("parent: a quarter sent and received, forking mid-transfer");
	infof("fork at sent %llu, received %llu", (unsigned long long)x.sent, (unsigned long long)x.rcvd);
	int p[2];
	if (pipe(p) < 0)
		exit(1);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		failf("fork: %s", E);
		return;
	}
	if (pid == 0) {
		child_reporting(p);
		arm(600, "child transfer");
		close(l);
		x.who = "child";
		x.cap = UINT64_MAX;
		double t0 = now_s();
		while ((r = xfer_step(&x)) == 0)
			;
		if (r == 1) {
			xfer_report(&x);
			infof("child: the rest of the transfer took %.3f s", now_s() - t0);
		}
		check_close(c, "child: its copy");
		exit(fails ? 1 : 0);
	}
	reap(pid, p, "child that finished the transfer");
	check_close(c, "parent: its untouched copy, after the child exited");
}

int main(int argc, char **argv)
{
	fork_init("fork_server");
	if (argc < 3) {
		fprintf(stderr, "usage: fork_server childecho|parentecho|turns|udp|midxfer PORT [ARG]\n");
		return 2;
	}
	const char *mode = argv[1];
	int port = atoi(argv[2]);
	long long arg = argc > 3 ? atoll(argv[3]) : 0;
	arm(300, mode);
	if (strcmp(mode, "udp") == 0) {
		udp(port, arg > 0 ? arg : 64);
	} else {
		int l = listen_on(port, SOCK_STREAM);
		arm(300, mode);
		if (strcmp(mode, "childecho") == 0)
			childecho(l);
		else if (strcmp(mode, "parentecho") == 0)
			parentecho(l);
		else if (strcmp(mode, "turns") == 0)
			turns(l, arg > 0 ? arg : 100);
		else if (strcmp(mode, "midxfer") == 0)
			midxfer(l, arg > 0 ? arg : 16 << 20);
		else {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
		close(l);
	}
	if (fails)
		return 1;
	printf("fork_server ok\n");
	return 0;
}
