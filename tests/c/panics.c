/*
 * panics: a panic inside the stack, in each kind of call in turn, leaves the other
 * connections and the process working.
 *
 *   panics PEER_IP PEER_PORT LOCAL_IP
 *
 * PEER_IP:PEER_PORT is tests/c/sem_peer.c (a kernel program in the peer namespace);
 * LOCAL_IP is the address of the accelerated interface. It uses sem.h's harness (one
 * line "ok STEP" or "FAIL STEP: ..." per step, a watchdog per step) and prints
 * "panics ok" at the end when every step passed.
 *
 * The fault hook: ioctl(fd, 0x7573fffe, int *where) on an accelerated socket arms a
 * one-shot panic inside ustack's core, with its lock held, in the next call of that
 * kind on any socket of the process: 1 accept, 2 close, 3 send, 4 recv, 5 setsockopt,
 * 6 the background poller. The call then fails with -1 EIO (accept, send, recv,
 * setsockopt); close still closes the fd and returns 0; a poller panic fails no call.
 * The socket whose call panicked is reset: the peer gets a RST, and later calls on it
 * fail with ECONNRESET, EPIPE or EIO, or read EOF. On the kernel the ioctl fails
 * (ENOTTY): the step runs unarmed, the call must then simply work, and the rest of
 * the step is the same (the kernel run proves the data checks).
 *
 * Steps: "live" opens K=4 echo connections and moves 256 KiB each way through each.
 * Then for each kind: "KIND" arms the hook and makes the call on a victim socket (a
 * listener with a pending connection for accept; for recv a connection whose peer has
 * shut down its side, so that the call does not block on the kernel; for the poller,
 * arming and sleeping 200 ms) and checks its result and what the peer saw;
 * "KIND_others" moves 256 KiB each way, byte-identical, through each of the K live
 * connections; "KIND_new" opens a new connection to the peer and echoes 64 KiB
 * through it, and accepts a new connection from the peer on a new listener and echoes
 * 64 KiB through that. Each "KIND" step prints "info KIND: armed ..." or
 * "info KIND: not armed (ENOTTY) ...".
 */
#include "sem.h"

#define K 4
#define XFER (256 * 1024)
#define NEWXFER (64 * 1024)
#define IOCTL_ARM_PANIC 0x7573fffe

enum { W_ACCEPT = 1, W_CLOSE, W_SEND, W_RECV, W_SETSOCKOPT, W_POLLER };

static int live[K] = { -1, -1, -1, -1 };
static int round_no;

static unsigned char xpat(int conn, int rnd, size_t off)
{
	return (unsigned char)((off * 7 + (size_t)conn * 13 + (size_t)rnd * 31) % 251);
}

static const char *errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EIO: return "EIO";
	case ENOTTY: return "ENOTTY";
	case EINVAL: return "EINVAL";
	case ECONNRESET: return "ECONNRESET";
	case EPIPE: return "EPIPE";
	case EAGAIN: return "EAGAIN";
	case EBADF: return "EBADF";
	case ENOTCONN: return "ENOTCONN";
	default: return strerror(e);
	}
}

/* echo_xfer pushes n pattern bytes through each of the fds (echo connections)
 * and checks that the same bytes come back, all at once with poll, at most 20 s.
 * Returns 0, or -1 after failf. */
static int echo_xfer(const int *fds, int nfd, size_t n, int rnd, uint32_t *hash)
{
	size_t sent[K + 1] = { 0 }, got[K + 1] = { 0 };
	uint32_t h = FNV_INIT;
	static unsigned char buf[65536];
	long end = now_ms() + 20000;
	for (;;) {
		struct pollfd p[K + 1];
		int done = 1;
		for (int i = 0; i < nfd; i++) {
			p[i] = (struct pollfd){ .fd = fds[i], .events = 0 };
			if (got[i] < n) {
				p[i].events |= POLLIN;
				done = 0;
			}
			if (sent[i] < n)
				p[i].events |= POLLOUT;
		}
		if (done)
			break;
		long left = end - now_ms();
		if (left <= 0) {
			for (int i = 0; i < nfd; i++)
				if (got[i] < n)
					failf("connection %d (fd %d): sent %zu, got back %zu of %zu bytes in 20 s", i, fds[i], sent[i], got[i], n);
			return -1;
		}
		int r = poll(p, nfd, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			failf("poll: %s", E);
			return -1;
		}
		for (int i = 0; i < nfd; i++) {
			if ((p[i].revents & POLLOUT) && sent[i] < n) {
				size_t k = n - sent[i] < sizeof buf ? n - sent[i] : sizeof buf;
				for (size_t j = 0; j < k; j++)
					buf[j] = xpat(i, rnd, sent[i] + j);
				ssize_t w = send(fds[i], buf, k, MSG_DONTWAIT | MSG_NOSIGNAL);
				if (w < 0 && errno != EAGAIN && errno != EINTR) {
					failf("connection %d (fd %d): send at %zu: %s", i, fds[i], sent[i], E);
					return -1;
				}
				if (w > 0)
					sent[i] += w;
			}
			if ((p[i].revents & (POLLIN | POLLERR | POLLHUP)) && got[i] < n) {
				ssize_t rd = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
				if (rd < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				if (rd <= 0) {
					failf("connection %d (fd %d): %s after %zu of %zu bytes back", i, fds[i],
					      rd == 0 ? "EOF" : E, got[i], n);
					return -1;
				}
				if (got[i] + rd > n) {
					failf("connection %d (fd %d): %zu bytes back, more than the %zu sent", i, fds[i], got[i] + rd, n);
					return -1;
				}
				for (ssize_t j = 0; j < rd; j++)
					if (buf[j] != xpat(i, rnd, got[i] + j)) {
						failf("connection %d (fd %d): byte %zu came back %#x, want %#x", i, fds[i],
						      got[i] + j, buf[j], xpat(i, rnd, got[i] + j));
						return -1;
					}
				h = fnv(h, buf, rd);
				got[i] += rd;
			}
		}
	}
	if (hash)
		*hash = h;
	return 0;
}

/* others: the step's data check through every live connection. */
static void others(void)
{
	for (int i = 0; i < K; i++)
		EXPECT(live[i] >= 0, "live connection %d is missing (the \"live\" step failed)", i);
	uint32_t h;
	if (echo_xfer(live, K, XFER, ++round_no, &h) == 0)
		printf("info %s: %d connections, %d KiB each way each, byte-identical (fnv %08x)\n", sem_cur, K, XFER / 1024, h);
}

static void setup_live(void)
{
	for (int i = 0; i < K; i++) {
		live[i] = peer("echo");
		EXPECT(live[i] >= 0, "connect to the peer (echo) %d: %s", i, E);
	}
	others();
}

/* new_conns: a new connection to the peer, and one from the peer to a new
 * listener, each echoing NEWXFER bytes. */
static void new_conns(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "new connection to the peer: %s", E);
	int r = echo_xfer(&fd, 1, NEWXFER, ++round_no, NULL);
	close(fd);
	if (r < 0)
		return;

	int port;
	int l = listener(local_addr.sin_addr.s_addr, 8, &port);
	EXPECT(l >= 0, "new listener on %s: %s", local_ip, E);
	int ctl = peer("dial %d 1 0", port);
	char line[64];
	if (ctl < 0 || strcmp(read_line(ctl, line, sizeof line, 3000), "dialing") != 0) {
		failf("asking the peer to dial %s:%d: %s", local_ip, port, ctl < 0 ? E : line);
		if (ctl >= 0)
			close(ctl);
		close(l);
		return;
	}
	close(ctl);
	int rev = wait_fd(l, POLLIN, 5000);
	if (rev <= 0) {
		failf("the new listener saw no connection from the peer within 5 s (poll %d)", rev);
		close(l);
		return;
	}
	int c = accept(l, NULL, NULL);
	int e = errno;
	close(l);
	EXPECT(c >= 0, "accept on the new listener: %s", errname(e));
	read_line(c, line, sizeof line, 3000);
	if (strcmp(line, "hello") != 0)
		failf("the accepted connection said %s, want hello", line);
	else
		echo_xfer(&c, 1, NEWXFER, ++round_no, NULL);
	close(c);
	if (!sem_cur_failed)
		printf("info %s: a new outgoing and a new accepted connection echoed %d KiB each\n", sem_cur, NEWXFER / 1024);
}

/* arm arms the fault hook on fd: 1 armed, 0 not (ENOTTY or EINVAL: no such hook,
 * as on the kernel), -1 the step failed. */
static int arm(int fd, int where)
{
	int w = where;
	if (ioctl(fd, IOCTL_ARM_PANIC, &w) == 0)
		return 1;
	if (errno == ENOTTY || errno == EINVAL)
		return 0;
	failf("ioctl(%d, %#x, %d): %s, want 0 (armed) or ENOTTY/EINVAL (no hook)", fd, IOCTL_ARM_PANIC, where, E);
	return -1;
}

static const char *armed_str(int armed, int arm_errno)
{
	static char b[64];
	if (armed)
		return "armed";
	snprintf(b, sizeof b, "not armed (%s)", errname(arm_errno));
	return b;
}

/* victim_dead: after a panic reset the socket, later calls fail with
 * ECONNRESET, EPIPE or EIO, or read EOF; none blocks. */
static int victim_dead(int fd)
{
	int rev = wait_fd(fd, POLLIN, 2000);
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
	int e = errno;
	if (!(r == 0 || (r < 0 && (e == ECONNRESET || e == EPIPE || e == EIO)))) {
		failf("recv on the reset victim (poll revents %#x): %zd %s, want EOF or -1 ECONNRESET/EPIPE/EIO", rev, r,
		      r < 0 ? errname(e) : "");
		return -1;
	}
	r = send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	e = errno;
	if (!(r < 0 && (e == ECONNRESET || e == EPIPE || e == EIO))) {
		failf("send on the reset victim: %zd %s, want -1 ECONNRESET/EPIPE/EIO", r, r < 0 ? errname(e) : "");
		return -1;
	}
	return 0;
}

/* peer_saw checks what the peer's "count" connection TAG recorded: "rst N" when
 * the victim was reset, "eof N" when it was closed normally. */
static int peer_saw(const char *tg, int armed, long n)
{
	const char *rec = report(tg, 5000);
	char want[32];
	if (armed) {
		if (strncmp(rec, "rst ", 4) != 0) {
			failf("the peer's end of the victim recorded \"%s\", want \"rst N\" (reset)", rec);
			return -1;
		}
		return 0;
	}
	snprintf(want, sizeof want, "eof %ld", n);
	if (strcmp(rec, want) != 0) {
		failf("the peer's end of the victim recorded \"%s\", want \"%s\"", rec, want);
		return -1;
	}
	return 0;
}

static void step_accept(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 8, &port);
	EXPECT(l >= 0, "listener on %s: %s", local_ip, E);
	int ctl = peer("dial %d 1 0", port);
	char line[64];
	if (ctl < 0 || strcmp(read_line(ctl, line, sizeof line, 3000), "dialing") != 0) {
		failf("asking the peer to dial %s:%d: %s", local_ip, port, ctl < 0 ? E : line);
		if (ctl >= 0)
			close(ctl);
		close(l);
		return;
	}
	close(ctl);
	int rev = wait_fd(l, POLLIN, 5000);
	if (rev <= 0) {
		failf("the listener saw no connection from the peer within 5 s (poll %d)", rev);
		close(l);
		return;
	}
	int armed = arm(l, W_ACCEPT), ae = errno;
	if (armed < 0) {
		close(l);
		return;
	}
	int c = accept(l, NULL, NULL);
	int e = errno;
	if (armed) {
		if (c >= 0) {
			failf("armed: accept returned fd %d, want -1 EIO", c);
			close(c);
		} else if (e != EIO) {
			failf("armed: accept: %s, want EIO", errname(e));
		}
	} else if (c < 0) {
		failf("accept: %s", errname(e));
	} else {
		read_line(c, line, sizeof line, 3000);
		if (strcmp(line, "hello") != 0)
			failf("the accepted connection said %s, want hello", line);
		close(c);
	}
	close(l);
	if (!sem_cur_failed)
		printf("info %s: %s; accept on a listener with a pending connection: %s\n", sem_cur, armed_str(armed, ae),
		       c >= 0 ? "a connection" : errname(e));
}

static void step_close(void)
{
	const char *tg = tag("victim");
	int v = peer("count %s", tg);
	EXPECT(v >= 0, "victim connection: %s", E);
	int armed = arm(v, W_CLOSE), ae = errno;
	if (armed < 0) {
		close(v);
		return;
	}
	int r = close(v);
	int e = errno;
	EXPECT(r == 0, "%s: close: %s, want 0", armed_str(armed, ae), errname(e));
	r = fcntl(v, F_GETFD);
	e = errno;
	EXPECT(r < 0 && e == EBADF, "%s: fcntl(F_GETFD) on the closed fd: %d %s, want -1 EBADF (close must close it)",
	       armed_str(armed, ae), r, r < 0 ? errname(e) : "");
	if (peer_saw(tg, armed, 0) == 0)
		printf("info %s: %s; close returned 0, the fd is closed, the peer saw %s\n", sem_cur, armed_str(armed, ae),
		       armed ? "a RST" : "EOF");
}

/* victim_call: a "count" (or "shutwr") victim connection, the hook armed for
 * where, and call(fd) must fail with EIO when armed and return want when not. */
static void victim_call(int where, const char *peer_cmd, ssize_t (*call)(int), ssize_t want, long peer_bytes)
{
	const char *tg = tag("victim");
	int v = peer("%s %s", peer_cmd, tg);
	EXPECT(v >= 0, "victim connection: %s", E);
	if (where == W_RECV) {
		int rev = wait_fd(v, POLLIN, 3000); /* the peer's FIN: recv will not block on the kernel */
		if (rev <= 0) {
			failf("no EOF from the peer's shutdown within 3 s (poll %d)", rev);
			close(v);
			return;
		}
	}
	int armed = arm(v, where), ae = errno;
	if (armed < 0) {
		close(v);
		return;
	}
	ssize_t r = call(v);
	int e = errno;
	if (armed && !(r < 0 && e == EIO)) {
		failf("armed: the call returned %zd %s, want -1 EIO", r, r < 0 ? errname(e) : "");
	} else if (!armed && r != want) {
		failf("not armed: the call returned %zd %s, want %zd", r, r < 0 ? errname(e) : "", want);
	} else if (armed) {
		victim_dead(v);
	}
	close(v);
	if (!sem_cur_failed && peer_saw(tg, armed, armed ? 0 : peer_bytes) == 0)
		printf("info %s: %s; the call returned %zd%s%s; the peer saw %s\n", sem_cur, armed_str(armed, ae), r,
		       r < 0 ? " " : "", r < 0 ? errname(e) : "", armed ? "a RST" : "EOF");
}

static ssize_t call_send(int fd)
{
	char b[100];
	memset(b, 'x', sizeof b);
	return send(fd, b, sizeof b, MSG_NOSIGNAL);
}

static ssize_t call_recv(int fd)
{
	char b[16];
	return recv(fd, b, sizeof b, 0);
}

static ssize_t call_setsockopt(int fd)
{
	int one = 1;
	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void step_send(void) { victim_call(W_SEND, "count", call_send, 100, 100); }
static void step_recv(void) { victim_call(W_RECV, "shutwr", call_recv, 0, 0); }
static void step_setsockopt(void) { victim_call(W_SETSOCKOPT, "count", call_setsockopt, 0, 0); }

static void step_poller(void)
{
	EXPECT(live[0] >= 0, "no live connection to arm the hook on");
	int armed = arm(live[0], W_POLLER), ae = errno;
	if (armed < 0)
		return;
	sleep_ms(200); /* the poller runs meanwhile and panics */
	printf("info %s: %s; slept 200 ms\n", sem_cur, armed_str(armed, ae));
}

static const struct check checks[] = {
	{ "live", setup_live, 30 },
	{ "accept", step_accept, 15 },
	{ "accept_others", others, 30 },
	{ "accept_new", new_conns, 30 },
	{ "close", step_close, 15 },
	{ "close_others", others, 30 },
	{ "close_new", new_conns, 30 },
	{ "send", step_send, 15 },
	{ "send_others", others, 30 },
	{ "send_new", new_conns, 30 },
	{ "recv", step_recv, 15 },
	{ "recv_others", others, 30 },
	{ "recv_new", new_conns, 30 },
	{ "setsockopt", step_setsockopt, 15 },
	{ "setsockopt_others", others, 30 },
	{ "setsockopt_new", new_conns, 30 },
	{ "poller", step_poller, 15 },
	{ "poller_others", others, 30 },
	{ "poller_new", new_conns, 30 },
};

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: panics PEER_IP PEER_PORT LOCAL_IP\n");
		return 2;
	}
	int r = sem_run(argc, argv, checks, sizeof checks / sizeof *checks);
	for (int i = 0; i < K; i++)
		if (live[i] >= 0)
			close(live[i]);
	if (r == 0)
		printf("panics ok\n");
	return r;
}
