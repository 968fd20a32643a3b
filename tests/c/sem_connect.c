/*
 * sem_connect: connect semantics, blocking and non-blocking, and the names of
 * a connected socket (getsockname/getpeername). See sem.h for how to run it.
 */
#include "sem.h"

/* nb_connect_to starts a non-blocking connect and expects EINPROGRESS. */
static int nb_connect_to(int fd, const struct sockaddr_in *to)
{
	int r = connect(fd, (const struct sockaddr *)to, sizeof *to);
	if (r == 0) {
		failf("non-blocking connect returned 0 at once, want -1 EINPROGRESS");
		return -1;
	}
	if (errno != EINPROGRESS) {
		failf("non-blocking connect: %s, want EINPROGRESS", E);
		return -1;
	}
	return 0;
}

static int so_error(int fd)
{
	int err = -1;
	socklen_t l = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		return -errno;
	return err;
}

static void nb_connect(void)
{
	int fd = tcp_socket();
	EXPECT(fd >= 0, "socket: %s", E);
	EXPECT(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0, "F_SETFL: %s", E);
	if (nb_connect_to(fd, &peer_addr) < 0)
		return;
	int rev = wait_fd(fd, POLLOUT, 3000);
	EXPECT(rev > 0, "no POLLOUT within 3 s (poll %d)", rev);
	EXPECT((rev & POLLOUT) && !(rev & (POLLERR | POLLHUP)), "revents %#x, want POLLOUT without POLLERR/POLLHUP", rev);
	int err = so_error(fd);
	EXPECT(err == 0, "SO_ERROR %d (%s), want 0", err, strerror(err < 0 ? -err : err));
	EXPECT(send(fd, "echo\nping", 9, 0) == 9, "send: %s", E);
	char buf[8] = {0};
	EXPECT(read_full(fd, buf, 4, 3000) == 4 && memcmp(buf, "ping", 4) == 0, "echo: got %.4s (%s)", buf, E);
	close(fd);
}

static void nb_connect_sock_nonblock_eisconn(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	EXPECT(fd >= 0, "socket: %s", E);
	EXPECT(fcntl(fd, F_GETFL) & O_NONBLOCK, "SOCK_NONBLOCK: F_GETFL has no O_NONBLOCK");
	if (nb_connect_to(fd, &peer_addr) < 0)
		return;
	int rev = wait_fd(fd, POLLOUT, 3000);
	EXPECT(rev > 0 && (rev & POLLOUT), "no POLLOUT within 3 s (%#x)", rev);
	EXPECT(so_error(fd) == 0, "SO_ERROR %d", so_error(fd));
	/* Linux: the connect after completion reports it (0), the next one EISCONN. */
	int r = connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr);
	EXPECT(r == 0, "second connect (after POLLOUT): %d %s, want 0", r, r < 0 ? E : "");
	r = connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr);
	EXPECT(r < 0 && errno == EISCONN, "third connect: %d %s, want -1 EISCONN", r, r < 0 ? E : "");
	close(fd);
}

static void nb_connect_refused(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	EXPECT(fd >= 0, "socket: %s", E);
	if (nb_connect_to(fd, &refused_addr) < 0)
		return;
	int rev = wait_fd(fd, POLLOUT, 3000);
	EXPECT(rev > 0, "no event within 3 s for a refused connection");
	EXPECT(rev & POLLERR, "revents %#x, want POLLERR", rev);
	int err = so_error(fd);
	EXPECT(err == ECONNREFUSED, "SO_ERROR %d (%s), want ECONNREFUSED", err, strerror(err < 0 ? -err : err));
	err = so_error(fd);
	EXPECT(err == 0, "second SO_ERROR %d, want 0 (reading it clears it)", err);
	close(fd);
}

static void blocking_connect_refused(void)
{
	int fd = tcp_socket();
	EXPECT(fd >= 0, "socket: %s", E);
	int r = connect(fd, (struct sockaddr *)&refused_addr, sizeof refused_addr);
	EXPECT(r < 0 && errno == ECONNREFUSED, "connect: %d %s, want -1 ECONNREFUSED", r, r < 0 ? E : "");
	close(fd);
}

static void names_connected(void)
{
	int fd = peer("name");
	EXPECT(fd >= 0, "connect: %s", E);
	struct sockaddr_in me, them;
	socklen_t ml = sizeof me, tl = sizeof them;
	EXPECT(getsockname(fd, (struct sockaddr *)&me, &ml) == 0, "getsockname: %s", E);
	EXPECT(getpeername(fd, (struct sockaddr *)&them, &tl) == 0, "getpeername: %s", E);
	EXPECT(ml == sizeof me && tl == sizeof them, "address lengths %u %u, want %zu", ml, tl, sizeof me);
	EXPECT(them.sin_family == AF_INET && them.sin_addr.s_addr == peer_addr.sin_addr.s_addr &&
	           them.sin_port == peer_addr.sin_port, "getpeername %s, want %s", addr_str(&them), addr_str(&peer_addr));
	EXPECT(me.sin_family == AF_INET && me.sin_addr.s_addr == local_addr.sin_addr.s_addr && me.sin_port != 0,
	       "getsockname %s, want %s:nonzero", addr_str(&me), local_ip);
	char line[64];
	read_line(fd, line, sizeof line, 3000);
	EXPECT(strcmp(line, addr_str(&me)) == 0, "the peer sees us as %s, getsockname says %s", line, addr_str(&me));
	close(fd);
}

static void names_unconnected(void)
{
	int fd = tcp_socket();
	EXPECT(fd >= 0, "socket: %s", E);
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	int r = getpeername(fd, (struct sockaddr *)&a, &al);
	EXPECT(r < 0 && errno == ENOTCONN, "getpeername: %d %s, want -1 ENOTCONN", r, r < 0 ? E : "");
	al = sizeof a;
	memset(&a, 0xff, sizeof a);
	EXPECT(getsockname(fd, (struct sockaddr *)&a, &al) == 0, "getsockname: %s", E);
	EXPECT(a.sin_family == AF_INET && a.sin_addr.s_addr == 0 && a.sin_port == 0, "getsockname %s, want 0.0.0.0:0", addr_str(&a));
	close(fd);
}

static void bind_then_connect(void)
{
	int fd = tcp_socket();
	EXPECT(fd >= 0, "socket: %s", E);
	struct sockaddr_in b = local_addr;
	socklen_t bl = sizeof b;
	EXPECT(bind(fd, (struct sockaddr *)&b, sizeof b) == 0, "bind %s: %s", local_ip, E);
	EXPECT(getsockname(fd, (struct sockaddr *)&b, &bl) == 0 && b.sin_port != 0, "getsockname after bind: %s", addr_str(&b));
	EXPECT(connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr) == 0, "connect: %s", E);
	struct sockaddr_in me;
	socklen_t ml = sizeof me;
	EXPECT(getsockname(fd, (struct sockaddr *)&me, &ml) == 0, "getsockname: %s", E);
	EXPECT(me.sin_port == b.sin_port && me.sin_addr.s_addr == b.sin_addr.s_addr,
	       "getsockname after connect %s, want the bound %s", addr_str(&me), addr_str(&b));
	EXPECT(send(fd, "name\n", 5, 0) == 5, "send: %s", E);
	char line[64];
	read_line(fd, line, sizeof line, 3000);
	EXPECT(strcmp(line, addr_str(&b)) == 0, "the peer sees us as %s, want the bound %s", line, addr_str(&b));
	close(fd);
}

static const struct check checks[] = {
	{ "nb_connect_einprogress_pollout_so_error_0", nb_connect, 0 },
	{ "nb_connect_sock_nonblock_connect_again_0_then_eisconn", nb_connect_sock_nonblock_eisconn, 0 },
	{ "nb_connect_refused_so_error_econnrefused", nb_connect_refused, 0 },
	{ "blocking_connect_refused_econnrefused", blocking_connect_refused, 0 },
	{ "getsockname_getpeername_connected", names_connected, 0 },
	{ "getsockname_getpeername_unconnected", names_unconnected, 0 },
	{ "bind_local_then_connect_keeps_port", bind_then_connect, 0 },
};
SEM_MAIN(checks)
