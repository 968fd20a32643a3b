/*
 * sem_shutdown: shutdown(SHUT_WR / SHUT_RD / SHUT_RDWR) on a connected TCP
 * socket, the peer's half-close, and what poll reports. See sem.h.
 */
#include "sem.h"

static void shut_wr_half_close(void)
{
	int fd = peer("sink");
	EXPECT(fd >= 0, "connect: %s", E);
	EXPECT(send(fd, "hello", 5, 0) == 5, "send: %s", E);
	EXPECT(shutdown(fd, SHUT_WR) == 0, "shutdown(SHUT_WR): %s", E);
	char line[64];
	uint32_t h = fnv(FNV_INIT, (const unsigned char *)"hello", 5);
	char want[64];
	snprintf(want, sizeof want, "5 %08x", h);
	read_line(fd, line, sizeof line, 3000);
	EXPECT(strcmp(line, want) == 0, "after SHUT_WR the peer replied \"%s\", want \"%s\" (it reads to EOF, then replies)", line, want);
	char b[4];
	ssize_t r = read_full(fd, b, 1, 3000);
	EXPECT(r == 0 && errno == 0, "want EOF after the reply, got %zd (%s)", r, E);
	close(fd);
}

static void shut_wr_poll(void)
{
	int fd = peer("hold 3000");
	EXPECT(fd >= 0, "connect: %s", E);
	EXPECT(shutdown(fd, SHUT_WR) == 0, "shutdown(SHUT_WR): %s", E);
	sleep_ms(50);
	int rev = wait_fd(fd, POLLIN | POLLOUT | POLLRDHUP, 0);
	EXPECT(rev == POLLOUT, "revents %#x after our SHUT_WR (peer silent), want POLLOUT only", rev);
	close(fd);
}

static void shut_rd(void)
{
	const char *t = tag("c");
	int fd = peer("count %s", t);
	EXPECT(fd >= 0, "connect: %s", E);
	EXPECT(shutdown(fd, SHUT_RD) == 0, "shutdown(SHUT_RD): %s", E);
	char b[8];
	long t0 = now_ms();
	ssize_t r = recv(fd, b, sizeof b, 0);
	EXPECT(r == 0, "blocking recv after SHUT_RD: %zd %s, want 0 at once", r, r < 0 ? E : "");
	EXPECT(now_ms() - t0 < 500, "recv after SHUT_RD took %ld ms", now_ms() - t0);
	int rev = wait_fd(fd, POLLIN | POLLOUT | POLLRDHUP, 0);
	EXPECT(rev == (POLLIN | POLLOUT | POLLRDHUP), "revents %#x after SHUT_RD, want POLLIN|POLLOUT|POLLRDHUP", rev);
	EXPECT(send(fd, "1234567", 7, 0) == 7, "send after SHUT_RD: %s", E);
	close(fd);
	const char *rec = report(t, 3000);
	EXPECT(strcmp(rec, "eof 7") == 0, "the peer saw \"%s\", want \"eof 7\"", rec);
}

static void peer_shut_wr(void)
{
	const char *t = tag("c");
	int fd = peer("shutwr %s", t);
	EXPECT(fd >= 0, "connect: %s", E);
	char b[8];
	ssize_t r = read_full(fd, b, 1, 3000);
	EXPECT(r == 0 && errno == 0, "want EOF from the peer's SHUT_WR, got %zd (%s)", r, E);
	r = recv(fd, b, sizeof b, 0);
	EXPECT(r == 0, "recv again: %zd, want 0", r);
	int rev = wait_fd(fd, POLLIN | POLLOUT | POLLRDHUP, 0);
	EXPECT(rev == (POLLIN | POLLOUT | POLLRDHUP), "revents %#x after the peer's FIN, want POLLIN|POLLOUT|POLLRDHUP", rev);
	EXPECT(send(fd, "1234567", 7, 0) == 7, "send after the peer's FIN: %s", E);
	EXPECT(send(fd, "89", 2, 0) == 2, "second send: %s", E);
	close(fd);
	const char *rec = report(t, 3000);
	EXPECT(strcmp(rec, "eof 9") == 0, "the peer saw \"%s\", want \"eof 9\"", rec);
}

static void shut_rdwr(void)
{
	int fd = peer("hold 3000");
	EXPECT(fd >= 0, "connect: %s", E);
	EXPECT(shutdown(fd, SHUT_RDWR) == 0, "shutdown(SHUT_RDWR): %s", E);
	int rev = wait_fd(fd, POLLIN | POLLOUT | POLLRDHUP, 0);
	EXPECT(rev == (POLLIN | POLLOUT | POLLHUP | POLLRDHUP), "revents %#x after SHUT_RDWR, want POLLIN|POLLOUT|POLLHUP|POLLRDHUP", rev);
	char b[4];
	ssize_t r = recv(fd, b, sizeof b, 0);
	EXPECT(r == 0, "recv: %zd %s, want 0", r, r < 0 ? E : "");
	r = send(fd, "x", 1, MSG_NOSIGNAL);
	EXPECT(r < 0 && errno == EPIPE, "send: %zd %s, want EPIPE", r, r < 0 ? E : "");
	close(fd);
}

static void both_closed_pollhup(void)
{
	int fd = peer("sendclose 10");
	EXPECT(fd >= 0, "connect: %s", E);
	char b[16];
	EXPECT(read_full(fd, b, sizeof b, 3000) == 10 && errno == 0, "want 10 bytes then EOF");
	EXPECT(shutdown(fd, SHUT_WR) == 0, "shutdown(SHUT_WR): %s", E);
	sleep_ms(100);
	int rev = wait_fd(fd, POLLIN | POLLOUT | POLLRDHUP, 0);
	EXPECT((rev & (POLLIN | POLLHUP | POLLRDHUP)) == (POLLIN | POLLHUP | POLLRDHUP) && !(rev & POLLERR),
	       "revents %#x with both directions closed, want POLLIN|POLLHUP|POLLRDHUP without POLLERR", rev);
	close(fd);
}

static void shutdown_errors(void)
{
	int fd = tcp_socket();
	EXPECT(fd >= 0, "socket: %s", E);
	int r = shutdown(fd, SHUT_WR);
	EXPECT(r < 0 && errno == ENOTCONN, "shutdown of an unconnected socket: %d %s, want ENOTCONN", r, r < 0 ? E : "");
	close(fd);
	fd = peer("hold 2000");
	EXPECT(fd >= 0, "connect: %s", E);
	r = shutdown(fd, 7);
	EXPECT(r < 0 && errno == EINVAL, "shutdown(fd, 7): %d %s, want EINVAL", r, r < 0 ? E : "");
	close(fd);
}

static void shutdown_listener_wakes_accept(void)
{
	int port;
	int l = listener(local_addr.sin_addr.s_addr, 4, &port);
	EXPECT(l >= 0, "listen: %s", E);
	EXPECT(shutdown(l, SHUT_RD) == 0, "shutdown(listener, SHUT_RD): %s", E);
	int c = accept(l, NULL, NULL);
	EXPECT(c < 0 && errno == EINVAL, "accept after shutdown: %d %s, want -1 EINVAL", c, c < 0 ? E : "");
	close(l);
}

static const struct check checks[] = {
	{ "shut_wr_half_close_still_reads", shut_wr_half_close, 0 },
	{ "shut_wr_poll_pollout_only", shut_wr_poll, 0 },
	{ "shut_rd_recv_eof_send_works", shut_rd, 0 },
	{ "peer_shut_wr_eof_pollrdhup_send_works", peer_shut_wr, 0 },
	{ "shut_rdwr_pollhup_eof_epipe", shut_rdwr, 0 },
	{ "both_directions_closed_pollhup", both_closed_pollhup, 0 },
	{ "shutdown_enotconn_einval", shutdown_errors, 0 },
	{ "shutdown_listener_accept_einval", shutdown_listener_wakes_accept, 0 },
};
SEM_MAIN(checks)
