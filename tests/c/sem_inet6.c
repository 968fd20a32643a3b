/*
 * sem_inet6: AF_INET6 sockets, TCP and UDP, as ipv6(7), RFC 3493 and RFC 4291 describe them
 * and Linux implements them: native IPv6 and IPv4-mapped addresses (::ffff:a.b.c.d) on one
 * socket, IPV6_V6ONLY, scope ids of link-local addresses, the address forms and lengths of
 * getsockname/getpeername/recvfrom (a 28-byte sockaddr_in6, flowinfo 0), IPV6_TCLASS and
 * IPV6_UNICAST_HOPS.
 *
 *   sem_inet6 PEER_IP PEER_PORT LOCAL_IP [CHECK]   (as every sem_* program, sem.h)
 *
 * with the IPv6 side of the topology in the environment:
 *
 *   SEM_PEER6    the peer's IPv6 address (sem_peer listens there too, v6-only, and echoes UDP)
 *   SEM_LOCAL6   the IPv6 address of the accelerated interface
 *   SEM_PEER_LL  the peer's link-local address (no zone)
 *   SEM_IFACE    the accelerated interface (the zone of SEM_PEER_LL)
 *
 * Nothing printed depends on the run (ports, addresses): only "ok NAME" / "FAIL NAME: ...".
 */
#include "sem.h"
#include <net/if.h>

static struct sockaddr_in6 peer6, local6, peer_ll, peer4m, local4m;
static unsigned ifindex;

static int v6(const char *ip, int port, struct sockaddr_in6 *a)
{
	*a = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_port = htons(port) };
	return inet_pton(AF_INET6, ip, &a->sin6_addr) == 1 ? 0 : -1;
}

/* mapped sets *a to ::ffff:ip4 (RFC 4291 2.5.5.2). */
static int mapped(const char *ip4, int port, struct sockaddr_in6 *a)
{
	char b[64];
	snprintf(b, sizeof b, "::ffff:%s", ip4);
	return v6(b, port, a);
}

static int sem6_init(int argc, char **argv)
{
	const char *p6 = getenv("SEM_PEER6"), *l6 = getenv("SEM_LOCAL6"), *ll = getenv("SEM_PEER_LL"), *ifn = getenv("SEM_IFACE");
	if (argc < 4 || !p6 || !l6 || !ll || !ifn) {
		fprintf(stderr, "usage: SEM_PEER6=.. SEM_LOCAL6=.. SEM_PEER_LL=.. SEM_IFACE=.. %s PEER_IP PEER_PORT LOCAL_IP [CHECK]\n", argv[0]);
		return -1;
	}
	int port = atoi(argv[2]);
	ifindex = if_nametoindex(ifn);
	if (v6(p6, port, &peer6) < 0 || v6(l6, 0, &local6) < 0 || v6(ll, port, &peer_ll) < 0 ||
	    mapped(argv[1], port, &peer4m) < 0 || mapped(argv[3], 0, &local4m) < 0 || ifindex == 0) {
		fprintf(stderr, "sem_inet6: bad address or interface\n");
		return -1;
	}
	return 0;
}

static int same_ip(const struct sockaddr_in6 *a, const struct sockaddr_in6 *b)
{
	return memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
}

static char *ip6(const struct sockaddr_in6 *a)
{
	static char bufs[4][INET6_ADDRSTRLEN];
	static int i;
	char *b = bufs[i++ % 4];
	inet_ntop(AF_INET6, &a->sin6_addr, b, INET6_ADDRSTRLEN);
	return b;
}

/* name6 checks the form of an address a getsockname/getpeername/accept/recvfrom returned:
 * a 28-byte sockaddr_in6 with ip's address, port (unless port < 0; 0: any but 0), flowinfo 0
 * and scope id scope. "" when right, else what is wrong. */
static const char *name6(const struct sockaddr_in6 *a, socklen_t len, const struct sockaddr_in6 *ip, int port, uint32_t scope)
{
	static char why[256];
	if (len != sizeof(struct sockaddr_in6))
		snprintf(why, sizeof why, "length %u, want %zu", (unsigned)len, sizeof(struct sockaddr_in6));
	else if (a->sin6_family != AF_INET6)
		snprintf(why, sizeof why, "family %d, want AF_INET6", a->sin6_family);
	else if (!same_ip(a, ip))
		snprintf(why, sizeof why, "address %s, want %s", ip6(a), ip6(ip));
	else if (port == 0 ? a->sin6_port == 0 : port > 0 && ntohs(a->sin6_port) != port)
		snprintf(why, sizeof why, "port %s", port == 0 ? "0" : "not the one connected to");
	else if (a->sin6_flowinfo != 0)
		snprintf(why, sizeof why, "flowinfo %u, want 0", ntohl(a->sin6_flowinfo));
	else if (a->sin6_scope_id != scope)
		snprintf(why, sizeof why, "scope id %u, want %u", a->sin6_scope_id, scope);
	else
		return "";
	return why;
}

/* peer_at connects a TCP socket of a's family to the peer at a (IPv4 or IPv6), sends the
 * command line and returns the socket. */
static int peer_at(const void *a, socklen_t alen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int peer_at(const void *a, socklen_t alen, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	int fd = socket(((const struct sockaddr *)a)->sa_family, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, a, alen) < 0 || send(fd, line, n, MSG_NOSIGNAL) != n) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* ask sends a command to the peer over IPv4 (v4) or IPv6 and returns its one-line reply. */
static const char *ask(int v4, const char *cmd)
{
	static char buf[256];
	int fd = v4 ? peer_at(&peer_addr, sizeof peer_addr, "%s", cmd) : peer_at(&peer6, sizeof peer6, "%s", cmd);
	if (fd < 0) {
		snprintf(buf, sizeof buf, "cannot reach the peer: %s", E);
		return buf;
	}
	read_line(fd, buf, sizeof buf, 5000);
	close(fd);
	return buf;
}

/* data_both_ways sends 1 MiB to the peer's "sink" and receives 1 MiB from its "send", on two
 * connections to a (alen); "" when both arrive intact, else what went wrong. */
static const char *data_both_ways(const void *a, socklen_t alen)
{
	static char why[256];
	enum { N = 1 << 20 };
	static unsigned char buf[N];
	for (size_t i = 0; i < N; i++)
		buf[i] = pat(i);
	int s = peer_at(a, alen, "sink");
	if (s < 0)
		return snprintf(why, sizeof why, "connect (sink): %s", E), why;
	size_t off = 0;
	while (off < N) {
		ssize_t r = send(s, buf + off, N - off, MSG_NOSIGNAL);
		if (r <= 0) {
			snprintf(why, sizeof why, "send: %s", E);
			close(s);
			return why;
		}
		off += r;
	}
	shutdown(s, SHUT_WR);
	char line[64], want[64];
	read_line(s, line, sizeof line, 10000);
	close(s);
	snprintf(want, sizeof want, "%d %08x", N, fnv(FNV_INIT, buf, N));
	if (strcmp(line, want) != 0)
		return snprintf(why, sizeof why, "the peer's sink got \"%s\", want \"%s\"", line, want), why;
	s = peer_at(a, alen, "send %d", N);
	if (s < 0)
		return snprintf(why, sizeof why, "connect (send): %s", E), why;
	memset(buf, 0, N);
	ssize_t got = read_full(s, buf, N, 10000);
	close(s);
	if (got != N || !pat_ok(buf, 0, N))
		return snprintf(why, sizeof why, "received %zd of %d pattern bytes (intact: %d)", got, N, got == N && pat_ok(buf, 0, N)), why;
	return "";
}

/* A TCP connection to the peer's IPv6 address carries data both ways. */
static void tcp_v6_data(void)
{
	const char *why = data_both_ways(&peer6, sizeof peer6);
	EXPECT(!*why, "to %s: %s", ip6(&peer6), why);
}

/* getsockname/getpeername of AF_INET6 TCP sockets: always a 28-byte sockaddr_in6 (ipv6(7)),
 * the unspecified address and port 0 before bind, flowinfo 0 (no IPV6_FLOWINFO_SEND), scope 0
 * for global addresses; the length is the full one even when the buffer was shorter (the
 * address truncated, accept(2)); getpeername unconnected: ENOTCONN. */
static void tcp_v6_names(void)
{
	int s = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a, any = { .sin6_family = AF_INET6 };
	socklen_t al = sizeof a;
	EXPECT(s >= 0, "socket: %s", E);
	memset(&a, 0x55, sizeof a);
	EXPECT(getsockname(s, (struct sockaddr *)&a, &al) == 0, "getsockname unbound: %s", E);
	EXPECT(!*name6(&a, al, &any, -1, 0) && a.sin6_port == 0, "getsockname unbound: %s, port %s", name6(&a, al, &any, -1, 0), a.sin6_port ? "not 0" : "0");
	al = sizeof a;
	errno = 0;
	EXPECT(getpeername(s, (struct sockaddr *)&a, &al) < 0 && errno == ENOTCONN, "getpeername unconnected: %s, want ENOTCONN", E);
	close(s);

	s = peer_at(&peer6, sizeof peer6, "name");
	EXPECT(s >= 0, "connect: %s", E);
	struct sockaddr_in6 me, him;
	socklen_t ml = sizeof me, hl = sizeof him;
	int ok = getsockname(s, (struct sockaddr *)&me, &ml) == 0 && getpeername(s, (struct sockaddr *)&him, &hl) == 0;
	char line[128], want[128];
	read_line(s, line, sizeof line, 5000);
	if (!ok) {
		close(s);
		FAILRET("getsockname/getpeername: %s", E);
	}
	const char *w = name6(&me, ml, &local6, 0, 0);
	if (*w) {
		close(s);
		FAILRET("getsockname: %s", w);
	}
	w = name6(&him, hl, &peer6, peer_port, 0);
	if (*w) {
		close(s);
		FAILRET("getpeername: %s", w);
	}
	snprintf(want, sizeof want, "%s:%d", ip6(&local6), ntohs(me.sin6_port));
	if (strcmp(line, want) != 0) {
		close(s);
		FAILRET("the peer sees this connection from another address or port than getsockname says");
	}
	/* a buffer of a sockaddr_in's size: truncated, the length says 28 */
	unsigned char small[sizeof(struct sockaddr_in6)];
	memset(small, 0xaa, sizeof small);
	socklen_t sl = sizeof(struct sockaddr_in);
	ok = getpeername(s, (struct sockaddr *)small, &sl) == 0;
	close(s);
	EXPECT(ok, "getpeername into 16 bytes: %s", E);
	EXPECT(sl == sizeof(struct sockaddr_in6), "getpeername into 16 bytes: length %u, want %zu", (unsigned)sl, sizeof(struct sockaddr_in6));
	EXPECT(memcmp(small, &him, sizeof(struct sockaddr_in)) == 0 && small[sizeof(struct sockaddr_in)] == 0xaa,
	       "getpeername into 16 bytes: not the first 16 bytes of the address, or wrote past them");
}

/* An AF_INET6 socket (IPV6_V6ONLY off, the default) connects to an IPv4 peer through its
 * IPv4-mapped address: the names are ::ffff: forms of the IPv4 addresses, in sockaddr_in6;
 * the peer sees a plain IPv4 connection; data flows both ways. */
static void tcp_v4mapped_connect(void)
{
	int s = peer_at(&peer4m, sizeof peer4m, "name");
	EXPECT(s >= 0, "connect to %s: %s", ip6(&peer4m), E);
	struct sockaddr_in6 me, him;
	socklen_t ml = sizeof me, hl = sizeof him;
	int ok = getsockname(s, (struct sockaddr *)&me, &ml) == 0 && getpeername(s, (struct sockaddr *)&him, &hl) == 0;
	char line[128], want[128];
	read_line(s, line, sizeof line, 5000);
	close(s);
	EXPECT(ok, "getsockname/getpeername: %s", E);
	const char *w = name6(&me, ml, &local4m, 0, 0);
	EXPECT(!*w, "getsockname: %s", w);
	w = name6(&him, hl, &peer4m, peer_port, 0);
	EXPECT(!*w, "getpeername: %s", w);
	EXPECT(IN6_IS_ADDR_V4MAPPED(&me.sin6_addr) && IN6_IS_ADDR_V4MAPPED(&him.sin6_addr), "not IN6_IS_ADDR_V4MAPPED");
	snprintf(want, sizeof want, "%s:%d", local_ip, ntohs(me.sin6_port));
	EXPECT(strcmp(line, want) == 0, "the peer does not see this connection as IPv4 from LOCAL_IP and getsockname's port");
	w = data_both_ways(&peer4m, sizeof peer4m);
	EXPECT(!*w, "data over the mapped address: %s", w);
}

/* listener6 makes an AF_INET6 listener on [::]:0 (v6only as given, -1: untouched) and
 * returns it; *port gets its port. */
static int listener6(int v6only, int *port)
{
	int l = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	socklen_t al = sizeof a;
	if (l < 0 || (v6only >= 0 && setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) ||
	    bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 8) < 0 || getsockname(l, (struct sockaddr *)&a, &al) < 0) {
		int e = errno;
		if (l >= 0)
			close(l);
		errno = e;
		return -1;
	}
	*port = ntohs(a.sin6_port);
	return l;
}

/* accept_from waits at most 5 s for a connection on l and checks its names: the peer is
 * want_peer, the local side want_local:port; it reads the dialer's "hello". */
static const char *accept_from(int l, const struct sockaddr_in6 *want_peer, const struct sockaddr_in6 *want_local, int port)
{
	static char why[300];
	if (wait_fd(l, POLLIN, 5000) <= 0)
		return "no connection to accept within 5 s";
	struct sockaddr_in6 from, me;
	socklen_t fl = sizeof from, ml = sizeof me;
	int c = accept(l, (struct sockaddr *)&from, &fl);
	if (c < 0)
		return snprintf(why, sizeof why, "accept: %s", E), why;
	char hello[16];
	int ok = getsockname(c, (struct sockaddr *)&me, &ml) == 0;
	read_line(c, hello, sizeof hello, 5000);
	close(c);
	const char *w = name6(&from, fl, want_peer, -1, 0);
	if (*w)
		return snprintf(why, sizeof why, "accept's address: %s", w), why;
	w = name6(&me, ml, want_local, port, 0);
	if (!ok || *w)
		return snprintf(why, sizeof why, "getsockname of the accepted socket: %s %s", ok ? "" : E, w), why;
	if (strcmp(hello, "hello") != 0)
		return "no \"hello\" from the dialer";
	return "";
}

/* A dual-stack listener ([::], IPV6_V6ONLY off) accepts IPv4 clients as ::ffff: peers and
 * IPv6 clients as themselves, each with the matching local address. */
static void tcp_v4mapped_accept(void)
{
	int port, l = listener6(-1, &port);
	EXPECT(l >= 0, "listener: %s", E);
	char cmd[64];
	snprintf(cmd, sizeof cmd, "dial %d 1 0", port);
	const char *r = ask(1, cmd), *w = "";
	if (strcmp(r, "dialing") != 0 || *(w = accept_from(l, &peer4m, &local4m, port))) {
		close(l);
		FAILRET("IPv4 client: %s", strcmp(r, "dialing") ? r : w);
	}
	r = ask(0, cmd);
	if (strcmp(r, "dialing") != 0 || *(w = accept_from(l, &peer6, &local6, port))) {
		close(l);
		FAILRET("IPv6 client: %s", strcmp(r, "dialing") ? r : w);
	}
	close(l);
}

static int v6only_of(int s)
{
	int v = -1;
	socklen_t vl = sizeof v;
	if (getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl) < 0)
		return -2;
	return v;
}

/* IPV6_V6ONLY: off by default (net.ipv6.bindv6only is 0), settable before bind and not after
 * (EINVAL); a v6-only listener refuses IPv4 clients (they get a RST) and takes IPv6 ones; a
 * v6-only socket cannot reach an IPv4-mapped address (ENETUNREACH). */
static void tcp_v6only_listener(void)
{
	int s = socket(AF_INET6, SOCK_STREAM, 0), one = 1;
	EXPECT(s >= 0, "socket: %s", E);
	EXPECT(v6only_of(s) == 0, "IPV6_V6ONLY of a new socket: %d, want 0", v6only_of(s));
	EXPECT(setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0 && v6only_of(s) == 1, "set IPV6_V6ONLY 1: %s, reads %d", E, v6only_of(s));
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	socklen_t al = sizeof a;
	EXPECT(bind(s, (struct sockaddr *)&a, sizeof a) == 0 && listen(s, 8) == 0 && getsockname(s, (struct sockaddr *)&a, &al) == 0, "bind/listen: %s", E);
	int zero = 0;
	errno = 0;
	EXPECT(setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0 && errno == EINVAL, "IPV6_V6ONLY after bind: %s, want EINVAL", E);
	char cmd[64];
	snprintf(cmd, sizeof cmd, "probe %d", ntohs(a.sin6_port));
	const char *r = ask(1, cmd);
	EXPECT(strcmp(r, "refused") == 0, "an IPv4 client of the v6-only listener: \"%s\", want \"refused\"", r);
	r = ask(0, cmd);
	EXPECT(strcmp(r, "connected") == 0, "an IPv6 client of the v6-only listener: \"%s\", want \"connected\"", r);
	EXPECT(wait_fd(s, POLLIN, 5000) > 0, "the IPv6 client's connection is not there to accept");
	struct sockaddr_in6 from;
	socklen_t fl = sizeof from;
	int c = accept(s, (struct sockaddr *)&from, &fl);
	EXPECT(c >= 0, "accept: %s", E);
	close(c);
	close(s);
	const char *w = name6(&from, fl, &peer6, -1, 0);
	EXPECT(!*w, "accepted: %s", w);
	/* nothing more: the refused IPv4 client left no connection behind */
	s = socket(AF_INET6, SOCK_STREAM, 0);
	EXPECT(s >= 0 && setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0, "socket: %s", E);
	errno = 0;
	int rc = connect(s, (struct sockaddr *)&peer4m, sizeof peer4m);
	int e = errno;
	close(s);
	EXPECT(rc < 0 && e == ENETUNREACH, "v6-only connect to %s: %s, want ENETUNREACH", ip6(&peer4m), rc < 0 ? strerror(e) : "connected");
}

/* bind_port binds a socket of fam/type (v6only as given, -1 untouched, AF_INET6 only) to the
 * wildcard address and port; returns the socket or -1 (errno). *port gets the bound port. */
static int bind_port(int fam, int type, int v6only, int *port)
{
	int s = socket(fam, type, 0);
	if (s < 0)
		return -1;
	if (fam == AF_INET6 && v6only >= 0 && setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) {
		close(s);
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof ss);
	if (fam == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(*port);
		sl = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(*port);
		sl = sizeof *a;
	}
	if (bind(s, (struct sockaddr *)&ss, sl) < 0 || getsockname(s, (struct sockaddr *)&ss, &sl) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	*port = fam == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return s;
}

/* The port space an AF_INET socket shares with AF_INET6 ones (ipv6(7), IPV6_V6ONLY), TCP
 * and UDP alike, without SO_REUSEADDR: a dual-stack [::] bind conflicts with 0.0.0.0 on the
 * same port both ways (EADDRINUSE), a v6-only one does not; a v6-only socket cannot bind an
 * IPv4-mapped address (EINVAL), a dual-stack one can and reports it; an AF_INET socket has
 * no IPPROTO_IPV6 options (Linux: getsockopt EOPNOTSUPP, setsockopt ENOPROTOOPT). */
static void bind_v6only_interplay(void)
{
	for (int t = 0; t < 2; t++) {
		int type = t ? SOCK_DGRAM : SOCK_STREAM;
		const char *tn = t ? "UDP" : "TCP";
		int p = 0, q, four = bind_port(AF_INET, type, -1, &p);
		EXPECT(four >= 0, "%s: bind 0.0.0.0:0: %s", tn, E);
		q = p;
		errno = 0;
		int dual = bind_port(AF_INET6, type, 0, &q);
		int e = errno;
		if (dual >= 0)
			close(dual);
		q = p;
		int only = bind_port(AF_INET6, type, 1, &q);
		int e2 = errno;
		if (only >= 0)
			close(only);
		close(four);
		EXPECT(dual < 0 && e == EADDRINUSE, "%s: dual-stack [::] on the port of 0.0.0.0: %s, want EADDRINUSE", tn, dual < 0 ? strerror(e) : "bound");
		EXPECT(only >= 0, "%s: v6-only [::] on the port of 0.0.0.0: %s, want bound", tn, strerror(e2));

		p = 0;
		dual = bind_port(AF_INET6, type, 0, &p);
		EXPECT(dual >= 0, "%s: bind [::]:0: %s", tn, E);
		q = p;
		errno = 0;
		four = bind_port(AF_INET, type, -1, &q);
		e = errno;
		if (four >= 0)
			close(four);
		close(dual);
		EXPECT(four < 0 && e == EADDRINUSE, "%s: 0.0.0.0 on the port of a dual-stack [::]: %s, want EADDRINUSE", tn, four < 0 ? strerror(e) : "bound");

		p = 0;
		only = bind_port(AF_INET6, type, 1, &p);
		EXPECT(only >= 0, "%s: bind v6-only [::]:0: %s", tn, E);
		q = p;
		four = bind_port(AF_INET, type, -1, &q);
		e = errno;
		if (four >= 0)
			close(four);
		close(only);
		EXPECT(four >= 0, "%s: 0.0.0.0 on the port of a v6-only [::]: %s, want bound", tn, strerror(e));

		int s = socket(AF_INET6, type, 0), one = 1;
		struct sockaddr_in6 a = local4m, got;
		socklen_t gl = sizeof got;
		EXPECT(s >= 0 && setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0, "%s: socket: %s", tn, E);
		errno = 0;
		int rc = bind(s, (struct sockaddr *)&a, sizeof a);
		e = errno;
		close(s);
		EXPECT(rc < 0 && e == EINVAL, "%s: v6-only bind to %s: %s, want EINVAL", tn, ip6(&a), rc < 0 ? strerror(e) : "bound");
		s = socket(AF_INET6, type, 0);
		EXPECT(s >= 0, "%s: socket: %s", tn, E);
		rc = bind(s, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(s, (struct sockaddr *)&got, &gl) == 0;
		close(s);
		EXPECT(rc, "%s: dual-stack bind to %s: %s", tn, ip6(&a), E);
		const char *w = name6(&got, gl, &local4m, 0, 0);
		EXPECT(!*w, "%s: getsockname after binding %s: %s", tn, ip6(&a), w);

		s = socket(AF_INET, type, 0);
		int v = 0;
		socklen_t vl = sizeof v;
		errno = 0;
		rc = getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl);
		e = errno;
		int rc2 = setsockopt(s, IPPROTO_IPV6, IPV6_TCLASS, &one, sizeof one);
		int e3 = errno;
		close(s);
		EXPECT(rc < 0 && e == EOPNOTSUPP, "%s: IPV6_V6ONLY of an AF_INET socket: %s, want EOPNOTSUPP", tn, rc < 0 ? strerror(e) : "read");
		EXPECT(rc2 < 0 && e3 == ENOPROTOOPT, "%s: IPV6_TCLASS on an AF_INET socket: %s, want ENOPROTOOPT", tn, rc2 < 0 ? strerror(e3) : "set");
	}
}

/* A link-local peer has a zone (RFC 4007, ipv6(7)): a TCP connect with sin6_scope_id = the
 * interface works and the names carry the scope id; a TCP connect without it is EINVAL (the
 * kernel does not guess the link); an address shorter than the RFC 2133 sockaddr_in6 (24 bytes)
 * is EINVAL. UDP is laxer on Linux: a sendto without the scope id goes out by the route to
 * fe80::/64 (here only the accelerated interface has one), and the echo comes back from the
 * peer with the interface's scope id, as it does with the scope id given. */
static void scope_link_local(void)
{
	struct sockaddr_in6 a = peer_ll;
	int s = socket(AF_INET6, SOCK_STREAM, 0);
	EXPECT(s >= 0, "socket: %s", E);
	errno = 0;
	int rc = connect(s, (struct sockaddr *)&a, sizeof a);
	int e = errno;
	close(s);
	EXPECT(rc < 0 && e == EINVAL, "TCP connect to a link-local address without a scope id: %s, want EINVAL", rc < 0 ? strerror(e) : "connected");

	s = socket(AF_INET6, SOCK_STREAM, 0);
	errno = 0;
	rc = connect(s, (struct sockaddr *)&peer6, 16);
	e = errno;
	close(s);
	EXPECT(rc < 0 && e == EINVAL, "TCP connect with a 16-byte address: %s, want EINVAL", rc < 0 ? strerror(e) : "connected");

	a.sin6_scope_id = ifindex;
	s = peer_at(&a, sizeof a, "name");
	EXPECT(s >= 0, "TCP connect to the link-local peer with its scope id: %s", E);
	struct sockaddr_in6 me, him;
	socklen_t ml = sizeof me, hl = sizeof him;
	int ok = getsockname(s, (struct sockaddr *)&me, &ml) == 0 && getpeername(s, (struct sockaddr *)&him, &hl) == 0;
	char line[128], want[128];
	read_line(s, line, sizeof line, 5000);
	close(s);
	EXPECT(ok, "getsockname/getpeername: %s", E);
	EXPECT(IN6_IS_ADDR_LINKLOCAL(&me.sin6_addr), "local address %s is not link-local", ip6(&me));
	const char *w = name6(&me, ml, &me, 0, ifindex);
	EXPECT(!*w, "getsockname: %s", w);
	w = name6(&him, hl, &peer_ll, peer_port, ifindex);
	EXPECT(!*w, "getpeername: %s", w);
	snprintf(want, sizeof want, "%s:%d", ip6(&me), ntohs(me.sin6_port));
	EXPECT(strcmp(line, want) == 0, "the peer sees this connection from another address or port than getsockname says");
	w = data_both_ways(&a, sizeof a);
	EXPECT(!*w, "data over the link-local address: %s", w);

	int u = socket(AF_INET6, SOCK_DGRAM, 0);
	EXPECT(u >= 0, "UDP socket: %s", E);
	for (int scoped = 0; scoped < 2; scoped++) {
		const char *how = scoped ? "with its scope id" : "without a scope id";
		const struct sockaddr_in6 *to = scoped ? &a : &peer_ll;
		rc = sendto(u, "ll", 2, 0, (const struct sockaddr *)to, sizeof *to);
		char buf[256];
		struct sockaddr_in6 from;
		socklen_t fl = sizeof from;
		ssize_t n = rc == 2 && wait_fd(u, POLLIN, 3000) > 0 ? recvfrom(u, buf, sizeof buf - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &fl) : -1;
		if (n <= 0) {
			close(u);
			FAILRET("UDP to the link-local peer %s: %s", how, rc != 2 ? "sendto failed" : "no echo");
		}
		buf[n] = 0;
		w = name6(&from, fl, &peer_ll, peer_port, ifindex);
		if (*w || strncmp(buf, "ll from fe80:", 13) != 0) {
			close(u);
			FAILRET("UDP to the link-local peer %s: recvfrom's address: %s; %s", how, w,
				strncmp(buf, "ll from fe80:", 13) ? "the peer saw it from a non link-local address" : "");
		}
	}
	close(u);
}

static int intopt(int s, int name)
{
	int v = -100;
	socklen_t vl = sizeof v;
	if (getsockopt(s, IPPROTO_IPV6, name, &v, &vl) < 0 || vl != sizeof v)
		return -100;
	return v;
}

/* roundtrip checks the IPv6 int option name of s as ipv6(7) says: default def, a value set
 * reads back, -1 restores the default, out of range (>255, < -1) is EINVAL. */
static const char *roundtrip(int s, int name, const char *what, int def, int val)
{
	static char why[200];
	int v, bad[] = { 256, -2 };
	if ((v = intopt(s, name)) != def)
		return snprintf(why, sizeof why, "%s: default %d, want %d", what, v, def), why;
	if (setsockopt(s, IPPROTO_IPV6, name, &val, sizeof val) < 0 || (v = intopt(s, name)) != val)
		return snprintf(why, sizeof why, "%s: set %d: %s, reads %d", what, val, E, intopt(s, name)), why;
	for (int i = 0; i < 2; i++) {
		errno = 0;
		if (setsockopt(s, IPPROTO_IPV6, name, &bad[i], sizeof bad[i]) == 0 || errno != EINVAL)
			return snprintf(why, sizeof why, "%s: set %d: %s, want EINVAL", what, bad[i], E), why;
	}
	if ((v = intopt(s, name)) != val)
		return snprintf(why, sizeof why, "%s: %d after refused sets, want %d", what, v, val), why;
	int m1 = -1;
	if (setsockopt(s, IPPROTO_IPV6, name, &m1, sizeof m1) < 0 || (v = intopt(s, name)) != def)
		return snprintf(why, sizeof why, "%s: set -1: %s, reads %d, want the default %d", what, E, v, def), why;
	if (setsockopt(s, IPPROTO_IPV6, name, &val, sizeof val) < 0)
		return snprintf(why, sizeof why, "%s: set %d again: %s", what, val, E), why;
	return "";
}

/* IPV6_TCLASS (default 0) and IPV6_UNICAST_HOPS (default: the route's, 64) round-trip on TCP
 * and UDP sockets; a TCP connection made with them set works and keeps them; a UDP datagram
 * leaves with them (the peer reports the traffic class and hop limit it received). */
static void tclass_hops(void)
{
	for (int t = 0; t < 2; t++) {
		int s = socket(AF_INET6, t ? SOCK_DGRAM : SOCK_STREAM, 0);
		EXPECT(s >= 0, "socket: %s", E);
		const char *w = roundtrip(s, IPV6_TCLASS, t ? "UDP IPV6_TCLASS" : "TCP IPV6_TCLASS", 0, 0x28);
		if (!*w)
			w = roundtrip(s, IPV6_UNICAST_HOPS, t ? "UDP IPV6_UNICAST_HOPS" : "TCP IPV6_UNICAST_HOPS", 64, 9);
		if (*w) {
			close(s);
			FAILRET("%s", w);
		}
		if (t == 0) {
			int rc = connect(s, (struct sockaddr *)&peer6, sizeof peer6) == 0 && send(s, "echo\nabc", 8, MSG_NOSIGNAL) == 8;
			char buf[4] = "";
			ssize_t n = rc ? read_full(s, buf, 3, 5000) : -1;
			int tc = intopt(s, IPV6_TCLASS), hops = intopt(s, IPV6_UNICAST_HOPS);
			close(s);
			EXPECT(n == 3 && memcmp(buf, "abc", 3) == 0, "TCP echo with the options set: %s", E);
			EXPECT(tc == 0x28 && hops == 9, "connected: IPV6_TCLASS %d IPV6_UNICAST_HOPS %d, want 40 and 9", tc, hops);
			continue;
		}
		char buf[256];
		ssize_t n = -1;
		if (sendto(s, "tc", 2, 0, (struct sockaddr *)&peer6, sizeof peer6) == 2 && wait_fd(s, POLLIN, 3000) > 0)
			n = recv(s, buf, sizeof buf - 1, MSG_DONTWAIT);
		close(s);
		EXPECT(n > 0, "UDP echo: none (%s)", E);
		buf[n] = 0;
		char want[160];
		snprintf(want, sizeof want, "tc from %s tclass 40 hops 9", ip6(&local6));
		EXPECT(strcmp(buf, want) == 0, "the peer received the datagram with other traffic class or hop limit than set (\"%s\")",
		       strstr(buf, " tclass") ? strstr(buf, " tclass") + 1 : buf);
	}
}

/* udp_echo sends msg from u to a (alen) and checks the echo: from want_from (28 bytes, port
 * peer_port), and the peer saw the datagram from seen. */
static const char *udp_echo(int u, const char *msg, const void *a, socklen_t alen, const struct sockaddr_in6 *want_from, const char *seen)
{
	static char why[300];
	int len = strlen(msg);
	if (sendto(u, msg, len, 0, a, alen) != len)
		return snprintf(why, sizeof why, "sendto: %s", E), why;
	if (wait_fd(u, POLLIN, 3000) <= 0)
		return "no echo within 3 s";
	char buf[512];
	struct sockaddr_in6 from;
	memset(&from, 0x55, sizeof from);
	socklen_t fl = sizeof from;
	ssize_t n = recvfrom(u, buf, sizeof buf - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
	if (n < 0)
		return snprintf(why, sizeof why, "recvfrom: %s", E), why;
	buf[n] = 0;
	const char *w = name6(&from, fl, want_from, peer_port, 0);
	if (*w)
		return snprintf(why, sizeof why, "recvfrom's address: %s", w), why;
	char want[256];
	snprintf(want, sizeof want, "%s from %s ", msg, seen);
	if (strncmp(buf, want, strlen(want)) != 0)
		return snprintf(why, sizeof why, "the peer saw \"%s\" from another address than %s", msg, seen), why;
	return "";
}

/* One dual-stack AF_INET6 UDP socket talks to a native IPv6 peer and to an IPv4 peer through
 * its mapped address (and through a plain sockaddr_in, which Linux takes on an AF_INET6 UDP
 * socket): recvfrom gives 28-byte sockaddr_in6 both times, ::ffff: for the IPv4 peer; the peer
 * sees our IPv6 address, and our IPv4 one as ::ffff: on its dual-stack socket. A connected one
 * sends and receives with send/recv; a v6-only one cannot send to a mapped address
 * (ENETUNREACH). */
static void udp_v6_and_mapped(void)
{
	int u = socket(AF_INET6, SOCK_DGRAM, 0);
	struct sockaddr_in6 any = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	EXPECT(u >= 0 && bind(u, (struct sockaddr *)&any, sizeof any) == 0, "socket/bind [::]:0: %s", E);
	char seen4[64];
	snprintf(seen4, sizeof seen4, "::ffff:%s", local_ip);
	const char *w = udp_echo(u, "native", &peer6, sizeof peer6, &peer6, ip6(&local6));
	if (!*w)
		w = udp_echo(u, "mapped", &peer4m, sizeof peer4m, &peer4m, seen4);
	if (!*w)
		w = udp_echo(u, "inet", &peer_addr, sizeof peer_addr, &peer4m, seen4);
	close(u);
	EXPECT(!*w, "%s", w);

	u = socket(AF_INET6, SOCK_DGRAM, 0);
	EXPECT(u >= 0 && connect(u, (struct sockaddr *)&peer6, sizeof peer6) == 0, "connect: %s", E);
	struct sockaddr_in6 him, me;
	socklen_t hl = sizeof him, ml = sizeof me;
	char buf[256];
	ssize_t n = -1;
	int ok = getpeername(u, (struct sockaddr *)&him, &hl) == 0 && getsockname(u, (struct sockaddr *)&me, &ml) == 0;
	if (ok && send(u, "conn", 4, 0) == 4 && wait_fd(u, POLLIN, 3000) > 0)
		n = recv(u, buf, sizeof buf - 1, MSG_DONTWAIT);
	close(u);
	EXPECT(ok, "getpeername/getsockname: %s", E);
	w = name6(&him, hl, &peer6, peer_port, 0);
	EXPECT(!*w, "getpeername: %s", w);
	w = name6(&me, ml, &local6, 0, 0);
	EXPECT(!*w, "getsockname: %s", w);
	EXPECT(n > 0, "connected UDP: no echo (%s)", E);

	int one = 1;
	u = socket(AF_INET6, SOCK_DGRAM, 0);
	EXPECT(u >= 0 && setsockopt(u, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0, "socket: %s", E);
	errno = 0;
	int rc = sendto(u, "x", 1, 0, (struct sockaddr *)&peer4m, sizeof peer4m);
	int e = errno;
	close(u);
	EXPECT(rc < 0 && e == ENETUNREACH, "v6-only sendto %s: %s, want ENETUNREACH", ip6(&peer4m), rc < 0 ? strerror(e) : "sent");
}

/* A UDP socket that asks for each datagram's destination address (IPV6_RECVPKTINFO, ipv6(7);
 * IP_PKTINFO, ip(7), for an IPv4 peer on a dual-stack socket) finds it in recvmsg's control
 * messages: our IPv6 address and the interface's index for the native peer, our IPv4 address
 * for the IPv4 one (as DNS servers bound to :: read it to answer from the right address). */
static void udp_pktinfo(void)
{
	int one = 1;
	int u = socket(AF_INET6, SOCK_DGRAM, 0);
	EXPECT(u >= 0 && setsockopt(u, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) == 0 &&
		       setsockopt(u, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0,
	       "socket/IPV6_RECVPKTINFO/IP_PKTINFO: %s", E);
	for (int v4 = 0; v4 < 2; v4++) {
		const struct sockaddr_in6 *to = v4 ? &peer4m : &peer6;
		EXPECT(sendto(u, "pi", 2, 0, (const struct sockaddr *)to, sizeof *to) == 2, "sendto: %s", E);
		EXPECT(wait_fd(u, POLLIN, 3000) > 0, "%s peer: no echo within 3 s", v4 ? "IPv4" : "IPv6");
		char buf[512], ctl[256];
		struct iovec io = { buf, sizeof buf };
		struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
		EXPECT(recvmsg(u, &m, MSG_DONTWAIT) > 0, "recvmsg: %s", E);
		int found = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (!v4 && c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
				struct in6_pktinfo pi;
				memcpy(&pi, CMSG_DATA(c), sizeof pi);
				EXPECT(memcmp(&pi.ipi6_addr, &local6.sin6_addr, 16) == 0 && pi.ipi6_ifindex != 0,
				       "IPV6_PKTINFO: not our address or no interface");
				found = 1;
			}
			if (v4 && c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
				struct in_pktinfo pi;
				memcpy(&pi, CMSG_DATA(c), sizeof pi);
				char a[INET_ADDRSTRLEN];
				inet_ntop(AF_INET, &pi.ipi_addr, a, sizeof a);
				EXPECT(strcmp(a, local_ip) == 0 && pi.ipi_ifindex != 0, "IP_PKTINFO: destination %s, want %s", a, local_ip);
				found = 1;
			}
		}
		EXPECT(found, "%s peer: recvmsg gave no %s control message", v4 ? "IPv4" : "IPv6", v4 ? "IP_PKTINFO" : "IPV6_PKTINFO");
	}
	close(u);
}

static const struct check checks[] = {
	{ "tcp_v6_data", tcp_v6_data, 30 },
	{ "tcp_v6_names", tcp_v6_names, 0 },
	{ "tcp_v4mapped_connect", tcp_v4mapped_connect, 30 },
	{ "tcp_v4mapped_accept", tcp_v4mapped_accept, 0 },
	{ "tcp_v6only_listener", tcp_v6only_listener, 0 },
	{ "bind_v6only_interplay", bind_v6only_interplay, 0 },
	{ "scope_link_local", scope_link_local, 30 },
	{ "tclass_hops", tclass_hops, 0 },
	{ "udp_v6_and_mapped", udp_v6_and_mapped, 0 },
	{ "udp_pktinfo", udp_pktinfo, 0 },
};

int main(int argc, char **argv)
{
	if (sem6_init(argc, argv) < 0)
		return 2;
	return sem_run(argc, argv, checks, sizeof checks / sizeof *checks);
}
