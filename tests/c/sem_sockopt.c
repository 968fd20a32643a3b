/*
 * sem_sockopt: SO_REUSEADDR (rebinding a listening port after close),
 * SO_RCVBUF/SO_SNDBUF, SO_RCVTIMEO/SO_SNDTIMEO, and the ioctls
 * SIOCINQ/FIONREAD/SIOCOUTQ. See sem.h.
 */
#include "sem.h"
#include <linux/sockios.h>

static int getint(int fd, int level, int opt, int *v)
{
	socklen_t l = sizeof *v;
	return getsockopt(fd, level, opt, v, &l);
}

static int one = 1;

/* serve_once listens on local:port (SO_REUSEADDR if reuse), lets the peer
 * dial it, accepts, checks the greeting, and closes our side first (so the
 * accepted connection ends in TIME-WAIT on our side). */
static int serve_once(int port, int reuse, int *outport)
{
	int l = tcp_socket();
	if (l < 0) {
		failf("socket: %s", E);
		return -1;
	}
	if (reuse && setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
		failf("SO_REUSEADDR: %s", E);
		return -1;
	}
	struct sockaddr_in a = local_addr;
	a.sin_port = htons(port);
	socklen_t al = sizeof a;
	if (bind(l, (struct sockaddr *)&a, sizeof a) < 0) {
		failf("bind port %d (reuseaddr %d): %s", port, reuse, E);
		close(l);
		return -1;
	}
	if (listen(l, 4) < 0 || getsockname(l, (struct sockaddr *)&a, &al) < 0) {
		failf("listen: %s", E);
		return -1;
	}
	*outport = ntohs(a.sin_port);
	int d = peer("dial %d 1 0", *outport);
	if (d < 0) {
		failf("peer: %s", E);
		return -1;
	}
	char line[64];
	read_line(d, line, sizeof line, 3000);
	close(d);
	if (wait_fd(l, POLLIN, 3000) <= 0) {
		failf("no connection from the peer on port %d within 3 s", *outport);
		return -1;
	}
	int c = accept(l, NULL, NULL);
	if (c < 0) {
		failf("accept: %s", E);
		return -1;
	}
	read_line(c, line, sizeof line, 3000);
	if (strcmp(line, "hello") != 0) {
		failf("greeting \"%s\", want \"hello\"", line);
		return -1;
	}
	close(c);
	sleep_ms(100); /* the peer's FIN: our side is in TIME-WAIT now */
	close(l);
	return 0;
}

static void reuseaddr_rebind(void)
{
	int port;
	if (serve_once(0, 1, &port) < 0)
		return;
	int p2;
	if (serve_once(port, 1, &p2) < 0)
		return;
	EXPECT(p2 == port, "rebound port %d, want %d", p2, port);
	int fd = tcp_socket();
	int v = -1;
	EXPECT(getint(fd, SOL_SOCKET, SO_REUSEADDR, &v) == 0 && v == 0, "default SO_REUSEADDR %d, want 0", v);
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "setsockopt: %s", E);
	EXPECT(getint(fd, SOL_SOCKET, SO_REUSEADDR, &v) == 0 && v == 1, "SO_REUSEADDR %d after setting it, want 1", v);
	close(fd);
}

static void no_reuseaddr_eaddrinuse(void)
{
	int port;
	if (serve_once(0, 1, &port) < 0)
		return;
	/* The accepted connection (SO_REUSEADDR inherited from the listener) is in
	 * TIME-WAIT on port: binding again without SO_REUSEADDR fails, with it
	 * succeeds. */
	int fd = tcp_socket();
	struct sockaddr_in a = local_addr;
	a.sin_port = htons(port);
	int r = bind(fd, (struct sockaddr *)&a, sizeof a);
	EXPECT(r < 0 && errno == EADDRINUSE, "bind to port %d in TIME-WAIT without SO_REUSEADDR: %d %s, want EADDRINUSE",
	       port, r, r < 0 ? E : "");
	close(fd);
	fd = tcp_socket();
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "setsockopt: %s", E);
	EXPECT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind with SO_REUSEADDR: %s", E);
	EXPECT(listen(fd, 1) == 0, "listen: %s", E);
	close(fd);
}

static void listening_port_in_use(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	int fd = tcp_socket();
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "setsockopt: %s", E);
	struct sockaddr_in a = local_addr;
	a.sin_port = htons(port);
	int r = bind(fd, (struct sockaddr *)&a, sizeof a);
	EXPECT(r < 0 && errno == EADDRINUSE, "bind to a port another socket listens on: %d %s, want EADDRINUSE", r, r < 0 ? E : "");
	close(fd);
	close(l);
	fd = tcp_socket();
	EXPECT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind after the listener closed (no connections): %s", E);
	close(fd);
}

static void bufsizes(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	int v = 0;
	EXPECT(getint(fd, SOL_SOCKET, SO_RCVBUF, &v) == 0 && v > 0, "default SO_RCVBUF %d (%s)", v, E);
	EXPECT(getint(fd, SOL_SOCKET, SO_SNDBUF, &v) == 0 && v > 0, "default SO_SNDBUF %d (%s)", v, E);
	int want = 65536;
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want) == 0, "set SO_RCVBUF: %s", E);
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want) == 0, "set SO_SNDBUF: %s", E);
	EXPECT(getint(fd, SOL_SOCKET, SO_RCVBUF, &v) == 0 && v >= want, "SO_RCVBUF %d after setting %d", v, want);
	EXPECT(getint(fd, SOL_SOCKET, SO_SNDBUF, &v) == 0 && v >= want, "SO_SNDBUF %d after setting %d", v, want);
	/* the connection still works */
	static char b[100000], c[100000];
	for (size_t i = 0; i < sizeof b; i++)
		b[i] = pat(i);
	EXPECT(send(fd, b, sizeof b, 0) == sizeof b, "send: %s", E);
	EXPECT(read_full(fd, c, sizeof c, 5000) == sizeof c && memcmp(b, c, sizeof b) == 0, "echo of 100000 bytes");
	close(fd);
}

static void bufsizes_before_connect(void)
{
	int fd = tcp_socket();
	int want = 32768, v = 0;
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want) == 0, "set SO_RCVBUF: %s", E);
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want) == 0, "set SO_SNDBUF: %s", E);
	EXPECT(connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr) == 0, "connect: %s", E);
	EXPECT(getint(fd, SOL_SOCKET, SO_RCVBUF, &v) == 0 && v >= want, "SO_RCVBUF %d after connect, set %d", v, want);
	EXPECT(getint(fd, SOL_SOCKET, SO_SNDBUF, &v) == 0 && v >= want, "SO_SNDBUF %d after connect, set %d", v, want);
	EXPECT(send(fd, "send 300000\n", 12, 0) == 12, "send: %s", E);
	static unsigned char b[300000];
	EXPECT(read_full(fd, b, sizeof b, 5000) == sizeof b && pat_ok(b, 0, sizeof b), "300000 bytes through a 32 KiB receive buffer");
	close(fd);
}

static void rcvtimeo(void)
{
	int fd = peer("hold 5000");
	EXPECT(fd >= 0, "connect: %s", E);
	struct timeval tv = { 0, 300000 }, got = { 9, 9 };
	socklen_t gl = sizeof got;
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "set SO_RCVTIMEO: %s", E);
	EXPECT(getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &got, &gl) == 0, "get SO_RCVTIMEO: %s", E);
	EXPECT(got.tv_sec == 0 && got.tv_usec >= 290000 && got.tv_usec <= 310000, "SO_RCVTIMEO reads back %ld.%06ld", (long)got.tv_sec, (long)got.tv_usec);
	char b[8];
	long t0 = now_ms();
	ssize_t r = recv(fd, b, sizeof b, 0);
	long dt = now_ms() - t0;
	EXPECT(r < 0 && errno == EAGAIN, "recv: %zd %s, want EAGAIN after the timeout", r, r < 0 ? E : "");
	EXPECT(dt >= 250 && dt < 2000, "recv timed out after %ld ms, want about 300", dt);
	t0 = now_ms();
	r = read(fd, b, sizeof b);
	dt = now_ms() - t0;
	EXPECT(r < 0 && errno == EAGAIN && dt >= 250 && dt < 2000, "read: %zd %s after %ld ms, want EAGAIN after about 300 ms", r, r < 0 ? E : "", dt);
	close(fd);
}

static void rcvtimeo_accept(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	struct timeval tv = { 0, 300000 };
	EXPECT(setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "set SO_RCVTIMEO: %s", E);
	long t0 = now_ms();
	int c = accept(l, NULL, NULL);
	long dt = now_ms() - t0;
	EXPECT(c < 0 && errno == EAGAIN && dt >= 250 && dt < 2000, "accept: %d %s after %ld ms, want EAGAIN after about 300 ms", c, c < 0 ? E : "", dt);
	close(l);
}

static void sndtimeo_and_outq(void)
{
	int fd = peer("hold 8000");
	EXPECT(fd >= 0, "connect: %s", E);
	struct timeval tv = { 0, 300000 }, got;
	socklen_t gl = sizeof got;
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "set SO_SNDTIMEO: %s", E);
	EXPECT(getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &got, &gl) == 0 && got.tv_sec == 0 && got.tv_usec >= 290000 && got.tv_usec <= 310000,
	       "SO_SNDTIMEO reads back %ld.%06ld", (long)got.tv_sec, (long)got.tv_usec);
	static char buf[1 << 20];
	long total = 0, dt = 0;
	ssize_t r;
	long end = now_ms() + 6000;
	for (;;) {
		long t0 = now_ms();
		r = send(fd, buf, sizeof buf, 0);
		dt = now_ms() - t0;
		if (r <= 0 || now_ms() > end)
			break;
		total += r;
	}
	EXPECT(r < 0 && errno == EAGAIN, "blocking send to a peer that does not read: %zd %s after %ld bytes, want EAGAIN", r, r < 0 ? E : "", total);
	EXPECT(dt >= 250 && dt < 2000, "the EAGAIN send took %ld ms, want about 300", dt);
	int q = -1;
	EXPECT(ioctl(fd, SIOCOUTQ, &q) == 0, "SIOCOUTQ: %s", E);
	EXPECT(q > 0 && q <= total, "SIOCOUTQ %d with %ld bytes sent to a peer that does not read", q, total);
	close(fd);
}

static void inq(void)
{
	int fd = peer("send 1000");
	EXPECT(fd >= 0, "connect: %s", E);
	int n = -1;
	long end = now_ms() + 3000;
	while (now_ms() < end && ioctl(fd, FIONREAD, &n) == 0 && n < 1000)
		sleep_ms(5);
	EXPECT(n == 1000, "FIONREAD %d (%s), want 1000", n, E);
	EXPECT(ioctl(fd, SIOCINQ, &n) == 0 && n == 1000, "SIOCINQ %d, want 1000", n);
	char b[400];
	EXPECT(recv(fd, b, sizeof b, 0) == sizeof b, "recv: %s", E);
	EXPECT(ioctl(fd, FIONREAD, &n) == 0 && n == 600, "FIONREAD %d after reading 400, want 600", n);
	EXPECT(recv(fd, b, 10, MSG_PEEK) == 10, "peek: %s", E);
	EXPECT(ioctl(fd, SIOCINQ, &n) == 0 && n == 600, "SIOCINQ %d after MSG_PEEK, want 600", n);
	close(fd);
}

static void outq_drains(void)
{
	int fd = peer("echo");
	EXPECT(fd >= 0, "connect: %s", E);
	int n = -1;
	long end = now_ms() + 2000;
	while (now_ms() < end && ioctl(fd, SIOCOUTQ, &n) == 0 && n != 0)
		sleep_ms(5);
	EXPECT(n == 0, "SIOCOUTQ %d once the command line is acknowledged, want 0", n);
	static char b[50000], c[50000];
	EXPECT(send(fd, b, sizeof b, 0) == sizeof b, "send: %s", E);
	EXPECT(read_full(fd, c, sizeof c, 5000) == sizeof c, "echo");
	end = now_ms() + 2000;
	while (now_ms() < end && ioctl(fd, SIOCOUTQ, &n) == 0 && n != 0)
		sleep_ms(5);
	EXPECT(n == 0, "SIOCOUTQ %d after the peer echoed everything, want 0", n);
	EXPECT(ioctl(fd, FIONREAD, &n) == 0 && n == 0, "FIONREAD %d after reading everything, want 0", n);
	close(fd);
}

static void inq_listener_einval(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	int n = -1;
	int r = ioctl(l, SIOCINQ, &n);
	EXPECT(r < 0 && errno == EINVAL, "SIOCINQ on a listening socket: %d %s, want EINVAL", r, r < 0 ? E : "");
	close(l);
}

static const struct check checks[] = {
	{ "so_reuseaddr_rebind_after_close", reuseaddr_rebind, 0 },
	{ "no_so_reuseaddr_time_wait_eaddrinuse", no_reuseaddr_eaddrinuse, 0 },
	{ "bind_to_listening_port_eaddrinuse", listening_port_in_use, 0 },
	{ "so_rcvbuf_so_sndbuf_set_get", bufsizes, 0 },
	{ "so_rcvbuf_so_sndbuf_before_connect", bufsizes_before_connect, 0 },
	{ "so_rcvtimeo_recv_eagain", rcvtimeo, 0 },
	{ "so_rcvtimeo_accept_eagain", rcvtimeo_accept, 0 },
	{ "so_sndtimeo_send_eagain_siocoutq", sndtimeo_and_outq, 15 },
	{ "fionread_siocinq", inq, 0 },
	{ "siocoutq_drains_to_0", outq_drains, 0 },
	{ "siocinq_listener_einval", inq_listener_einval, 0 },
};
SEM_MAIN(checks)
