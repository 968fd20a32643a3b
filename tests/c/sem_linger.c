/*
 * sem_linger: SO_LINGER. Zero linger makes close send a RST (the peer's read
 * fails with ECONNRESET); without it, or with a non-zero linger, the peer
 * sees an orderly EOF after all the data. See sem.h.
 */
#include "sem.h"

static void linger_opt_roundtrip(void)
{
	int fd = tcp_socket();
	EXPECT(fd >= 0, "socket: %s", E);
	struct linger l = { -1, -1 };
	socklen_t ll = sizeof l;
	EXPECT(getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &ll) == 0, "getsockopt: %s", E);
	EXPECT(ll == sizeof l && l.l_onoff == 0 && l.l_linger == 0, "default SO_LINGER {%d, %d}, want {0, 0}", l.l_onoff, l.l_linger);
	l = (struct linger){ 1, 0 };
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0, "setsockopt {1, 0}: %s", E);
	l = (struct linger){ -1, -1 };
	EXPECT(getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &ll) == 0, "getsockopt: %s", E);
	EXPECT(l.l_onoff == 1 && l.l_linger == 0, "SO_LINGER {%d, %d}, want {1, 0}", l.l_onoff, l.l_linger);
	l = (struct linger){ 1, 7 };
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0, "setsockopt {1, 7}: %s", E);
	EXPECT(getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &ll) == 0 && l.l_onoff == 1 && l.l_linger == 7,
	       "SO_LINGER {%d, %d}, want {1, 7}", l.l_onoff, l.l_linger);
	close(fd);
}

static void close_peer_sees(struct linger *l, int connected_first, const char *want_prefix, const char *want_exact)
{
	const char *t = tag("c");
	int fd;
	if (connected_first) {
		fd = peer("count %s", t);
		EXPECT(fd >= 0, "connect: %s", E);
		if (l)
			EXPECT(setsockopt(fd, SOL_SOCKET, SO_LINGER, l, sizeof *l) == 0, "setsockopt: %s", E);
	} else {
		fd = tcp_socket();
		EXPECT(fd >= 0, "socket: %s", E);
		if (l)
			EXPECT(setsockopt(fd, SOL_SOCKET, SO_LINGER, l, sizeof *l) == 0, "setsockopt before connect: %s", E);
		char line[160];
		int n = snprintf(line, sizeof line, "count %s\n", t);
		EXPECT(connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr) == 0, "connect: %s", E);
		EXPECT(send(fd, line, n, 0) == n, "send: %s", E);
	}
	static char buf[10000];
	memset(buf, 'z', sizeof buf);
	EXPECT(send(fd, buf, sizeof buf, 0) == sizeof buf, "send: %s", E);
	long t0 = now_ms();
	EXPECT(close(fd) == 0, "close: %s", E);
	EXPECT(now_ms() - t0 < 2000, "close took %ld ms", now_ms() - t0);
	const char *rec = report(t, 3000);
	if (want_exact)
		EXPECT(strcmp(rec, want_exact) == 0, "the peer saw \"%s\", want \"%s\"", rec, want_exact);
	else
		EXPECT(strncmp(rec, want_prefix, strlen(want_prefix)) == 0, "the peer saw \"%s\", want \"%s...\"", rec, want_prefix);
}

static void zero_linger_rst(void)
{
	struct linger l = { 1, 0 };
	close_peer_sees(&l, 1, "rst ", NULL);
}

static void zero_linger_before_connect_rst(void)
{
	struct linger l = { 1, 0 };
	close_peer_sees(&l, 0, "rst ", NULL);
}

static void no_linger_eof(void)
{
	close_peer_sees(NULL, 1, NULL, "eof 10000");
}

static void linger_off_eof(void)
{
	struct linger l = { 0, 0 };
	close_peer_sees(&l, 1, NULL, "eof 10000");
}

static void nonzero_linger_eof(void)
{
	struct linger l = { 1, 5 };
	close_peer_sees(&l, 1, NULL, "eof 10000");
}

static void zero_linger_rst_counted(void)
{
	/* The peer has shut down its side and waits for our EOF: a zero-linger
	 * close must end the connection with a RST, not a FIN. */
	const char *t = tag("c");
	int fd = peer("shutwr %s", t);
	EXPECT(fd >= 0, "connect: %s", E);
	char b[4];
	EXPECT(read_full(fd, b, 1, 3000) == 0 && errno == 0, "want EOF from the peer's SHUT_WR first");
	struct linger l = { 1, 0 };
	EXPECT(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0, "setsockopt: %s", E);
	EXPECT(close(fd) == 0, "close: %s", E);
	const char *rec = report(t, 3000);
	EXPECT(strcmp(rec, "rst 0") == 0, "the half-closed peer saw \"%s\", want \"rst 0\"", rec);
}

static const struct check checks[] = {
	{ "so_linger_set_get", linger_opt_roundtrip, 0 },
	{ "so_linger_zero_close_sends_rst", zero_linger_rst, 0 },
	{ "so_linger_zero_set_before_connect_rst", zero_linger_before_connect_rst, 0 },
	{ "so_linger_zero_after_peer_shutwr_rst", zero_linger_rst_counted, 0 },
	{ "no_linger_close_orderly_eof", no_linger_eof, 0 },
	{ "so_linger_off_close_orderly_eof", linger_off_eof, 0 },
	{ "so_linger_nonzero_close_orderly_eof", nonzero_linger_eof, 0 },
};
SEM_MAIN(checks)
