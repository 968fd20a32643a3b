/*
 * sem_accept: accept and accept4 (SOCK_NONBLOCK, SOCK_CLOEXEC), the listen
 * backlog, and a listener on 0.0.0.0 accepting both from the peer (through
 * the accelerated interface) and from loopback. See sem.h.
 */
#include "sem.h"

/* dial asks the peer to open n connections to our port after delay ms. */
static int dial(int port, int n, int delay)
{
	int d = peer("dial %d %d %d", port, n, delay);
	if (d < 0)
		return -1;
	char line[64];
	read_line(d, line, sizeof line, 3000);
	close(d);
	return strcmp(line, "dialing") == 0 ? 0 : -1;
}

static void accept_plain(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	EXPECT(fcntl(l, F_SETFL, O_NONBLOCK) == 0, "F_SETFL: %s", E);
	int c = accept(l, NULL, NULL);
	EXPECT(c < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "accept on a non-blocking listener with nothing pending: %d %s, want EAGAIN",
	       c, c < 0 ? E : "");
	EXPECT(dial(port, 1, 0) == 0, "peer dial failed");
	EXPECT(wait_fd(l, POLLIN, 3000) == POLLIN, "listener not readable within 3 s");
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	c = accept(l, (struct sockaddr *)&from, &fl);
	EXPECT(c >= 0, "accept: %s", E);
	EXPECT(fl == sizeof from && from.sin_family == AF_INET && from.sin_addr.s_addr == peer_addr.sin_addr.s_addr,
	       "accept address %s (len %u), want %s:any", addr_str(&from), fl, peer_ip);
	EXPECT(!(fcntl(c, F_GETFL) & O_NONBLOCK), "accepted socket inherited O_NONBLOCK from the listener");
	EXPECT(!(fcntl(c, F_GETFD) & FD_CLOEXEC), "accepted socket has FD_CLOEXEC");
	struct sockaddr_in me, them;
	socklen_t ml = sizeof me, tl = sizeof them;
	EXPECT(getsockname(c, (struct sockaddr *)&me, &ml) == 0 && me.sin_addr.s_addr == local_addr.sin_addr.s_addr &&
	           ntohs(me.sin_port) == port, "accepted getsockname %s, want %s:%d", addr_str(&me), local_ip, port);
	EXPECT(getpeername(c, (struct sockaddr *)&them, &tl) == 0 && them.sin_addr.s_addr == from.sin_addr.s_addr &&
	           them.sin_port == from.sin_port, "accepted getpeername %s, want %s", addr_str(&them), addr_str(&from));
	char line[32];
	read_line(c, line, sizeof line, 3000);
	EXPECT(strcmp(line, "hello") == 0, "greeting \"%s\"", line);
	EXPECT(send(c, "ping\n", 5, 0) == 5, "send: %s", E);
	read_line(c, line, sizeof line, 3000);
	EXPECT(strcmp(line, "ping") == 0, "echo \"%s\"", line);
	close(c);
	close(l);
}

static void accept4_flags(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	EXPECT(dial(port, 2, 0) == 0, "peer dial failed");
	EXPECT(wait_fd(l, POLLIN, 3000) == POLLIN, "listener not readable within 3 s");
	int c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	EXPECT(c >= 0, "accept4: %s", E);
	EXPECT(fcntl(c, F_GETFL) & O_NONBLOCK, "accept4(SOCK_NONBLOCK): no O_NONBLOCK");
	EXPECT(fcntl(c, F_GETFD) & FD_CLOEXEC, "accept4(SOCK_CLOEXEC): no FD_CLOEXEC");
	char b[64];
	ssize_t r = read_full(c, b, 6, 3000);
	EXPECT(r == 6 && memcmp(b, "hello\n", 6) == 0, "greeting: %zd", r);
	r = recv(c, b, sizeof b, 0);
	EXPECT(r < 0 && errno == EAGAIN, "recv on the empty accept4(SOCK_NONBLOCK) socket: %zd %s, want EAGAIN", r, r < 0 ? E : "");
	EXPECT(wait_fd(l, POLLIN, 3000) == POLLIN, "second connection not pending within 3 s");
	int c2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	EXPECT(c2 >= 0, "accept4(SOCK_CLOEXEC): %s", E);
	EXPECT(!(fcntl(c2, F_GETFL) & O_NONBLOCK) && (fcntl(c2, F_GETFD) & FD_CLOEXEC), "accept4(SOCK_CLOEXEC): flags %#x fd flags %#x",
	       fcntl(c2, F_GETFL), fcntl(c2, F_GETFD));
	int bad = accept4(l, NULL, NULL, 0x40000000);
	EXPECT(bad < 0 && errno == EINVAL, "accept4 with an unknown flag: %d %s, want EINVAL", bad, bad < 0 ? E : "");
	close(c);
	close(c2);
	close(l);
}

static void backlog(void)
{
	const int bl = 2, n = 6;
	int port;
	int l = listener(local_addr.sin_addr.s_addr, bl, &port);
	EXPECT(l >= 0, "listen: %s", E);
	EXPECT(dial(port, n, 0) == 0, "peer dial failed");
	sleep_ms(1500);
	EXPECT(fcntl(l, F_SETFL, O_NONBLOCK) == 0, "F_SETFL: %s", E);
	int queued = 0, fds[16];
	while (queued < n && (fds[queued] = accept(l, NULL, NULL)) >= 0)
		queued++;
	EXPECT(queued >= 1 && queued <= bl + 1, "%d connections were queued with listen backlog %d, want 1..%d", queued, bl, bl + 1);
	int total = queued;
	long end = now_ms() + 12000;
	while (total < n && now_ms() < end) {
		wait_fd(l, POLLIN, 200);
		int c = accept(l, NULL, NULL);
		if (c >= 0)
			fds[total++] = c;
	}
	EXPECT(total == n, "accepted %d of %d connections within 12 s once we accepted (the rest must be retried, not lost)", total, n);
	for (int i = 0; i < total; i++) {
		char line[16];
		read_line(fds[i], line, sizeof line, 3000);
		EXPECT(strcmp(line, "hello") == 0, "connection %d greeting \"%s\"", i, line);
		close(fds[i]);
	}
	close(l);
}

static void wildcard_peer_and_loopback(void)
{
	int port;
	int l = listener(htonl(INADDR_ANY), 8, &port);
	EXPECT(l >= 0, "listen on 0.0.0.0: %s", E);
	/* loopback first: connect completes in the kernel before accept */
	int lc = tcp_socket();
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	EXPECT(connect(lc, (struct sockaddr *)&lo, sizeof lo) == 0, "connect to 127.0.0.1:%d: %s", port, E);
	EXPECT(wait_fd(l, POLLIN, 3000) == POLLIN, "listener not readable for the loopback connection within 3 s");
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	int a = accept(l, (struct sockaddr *)&from, &fl);
	EXPECT(a >= 0, "accept (loopback): %s", E);
	EXPECT(from.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "loopback connection from %s", addr_str(&from));
	EXPECT(send(lc, "over lo", 7, 0) == 7, "send on lo: %s", E);
	char b[16] = {0};
	EXPECT(read_full(a, b, 7, 3000) == 7 && memcmp(b, "over lo", 7) == 0, "loopback data: \"%s\"", b);
	EXPECT(send(a, "back", 4, 0) == 4, "send back on lo: %s", E);
	EXPECT(read_full(lc, b, 4, 3000) == 4 && memcmp(b, "back", 4) == 0, "loopback reply");
	/* then the peer */
	EXPECT(dial(port, 1, 0) == 0, "peer dial failed");
	EXPECT(wait_fd(l, POLLIN, 3000) == POLLIN, "listener not readable for the peer's connection within 3 s");
	fl = sizeof from;
	int p = accept(l, (struct sockaddr *)&from, &fl);
	EXPECT(p >= 0, "accept (peer): %s", E);
	EXPECT(from.sin_addr.s_addr == peer_addr.sin_addr.s_addr, "peer connection from %s, want %s", addr_str(&from), peer_ip);
	struct sockaddr_in me;
	socklen_t ml = sizeof me;
	EXPECT(getsockname(p, (struct sockaddr *)&me, &ml) == 0 && me.sin_addr.s_addr == local_addr.sin_addr.s_addr,
	       "peer connection's getsockname %s, want %s", addr_str(&me), local_ip);
	char line[16];
	read_line(p, line, sizeof line, 3000);
	EXPECT(strcmp(line, "hello") == 0, "peer greeting \"%s\"", line);
	close(a);
	close(lc);
	close(p);
	close(l);
}

static void wildcard_both_pending(void)
{
	int port;
	int l = listener(htonl(INADDR_ANY), 8, &port);
	EXPECT(l >= 0, "listen on 0.0.0.0: %s", E);
	EXPECT(dial(port, 1, 0) == 0, "peer dial failed");
	int lc = tcp_socket();
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	EXPECT(connect(lc, (struct sockaddr *)&lo, sizeof lo) == 0, "connect to 127.0.0.1:%d: %s", port, E);
	sleep_ms(300);
	int got_lo = 0, got_peer = 0;
	for (int i = 0; i < 2; i++) {
		EXPECT(wait_fd(l, POLLIN, 3000) == POLLIN, "listener not readable for connection %d", i + 1);
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		int c = accept(l, (struct sockaddr *)&from, &fl);
		EXPECT(c >= 0, "accept %d: %s", i + 1, E);
		if (from.sin_addr.s_addr == htonl(INADDR_LOOPBACK))
			got_lo++;
		else if (from.sin_addr.s_addr == peer_addr.sin_addr.s_addr)
			got_peer++;
		close(c);
	}
	EXPECT(got_lo == 1 && got_peer == 1, "accepted %d loopback and %d peer connections, want 1 and 1", got_lo, got_peer);
	close(lc);
	close(l);
}

static void blocking_accept_waits(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	EXPECT(dial(port, 1, 300) == 0, "peer dial failed");
	long t0 = now_ms();
	int c = accept(l, NULL, NULL);
	long dt = now_ms() - t0;
	EXPECT(c >= 0, "blocking accept: %s", E);
	EXPECT(dt >= 200, "blocking accept returned after %ld ms; the peer dials after 300", dt);
	close(c);
	close(l);
}

static const struct check checks[] = {
	{ "accept_nonblocking_eagain_then_connection", accept_plain, 0 },
	{ "accept4_sock_nonblock_sock_cloexec", accept4_flags, 0 },
	{ "blocking_accept_waits_for_connection", blocking_accept_waits, 0 },
	{ "listen_backlog_limits_queue_and_loses_nothing", backlog, 20 },
	{ "listen_0000_accepts_loopback_and_peer", wildcard_peer_and_loopback, 0 },
	{ "listen_0000_loopback_and_peer_both_pending", wildcard_both_pending, 0 },
};
SEM_MAIN(checks)
