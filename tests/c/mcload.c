// mcload: a small memcached load client for make bench (Debian 12 has no memtier).
//
//   mcload HOST PORT get|set [CONNS [SECS [VALUE_BYTES [KEYS]]]]
//
// CONNS connections (default 50) on one epoll thread; each does request/response of the
// memcached text protocol in a loop for SECS seconds (default 8): `set kN 0 0 V` + value,
// answered "STORED", or `get kN`, answered "VALUE kN 0 V" + value + "END" (get first sets
// every key once). Every reply is checked byte for byte. Prints one line:
//   mcload: mode get conns 50 secs 8.000 requests 123456 rps 15432.0
// and exits 0; exits 1 on a protocol error (the reply is printed), 2 on a socket error.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXREQ 4096

struct conn {
	int fd;
	int key;
	char req[MAXREQ];
	size_t reqlen, sent;
	char exp[MAXREQ];
	size_t explen, got;
	int out; // registered for EPOLLOUT
};

static int nkeys = 100, vbytes = 32, getmode;
static char value[MAXREQ];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

// prepare fills c's request and the exact reply it expects, for key k.
static void prepare(struct conn *c, int k, int get)
{
	c->key = k;
	if (get) {
		c->reqlen = snprintf(c->req, MAXREQ, "get k%d\r\n", k);
		c->explen = snprintf(c->exp, MAXREQ, "VALUE k%d 0 %d\r\n%s\r\nEND\r\n", k, vbytes, value);
	} else {
		c->reqlen = snprintf(c->req, MAXREQ, "set k%d 0 0 %d\r\n%s\r\n", k, vbytes, value);
		c->explen = snprintf(c->exp, MAXREQ, "STORED\r\n");
	}
	c->sent = c->got = 0;
}

static int dial(struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (fd < 0 || connect(fd, (struct sockaddr *)sa, sizeof *sa) < 0) {
		perror("mcload: connect");
		exit(2);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

// roundtrip does one blocking request/response on c (used to populate the keys).
static void roundtrip(struct conn *c)
{
	while (c->sent < c->reqlen) {
		ssize_t n = write(c->fd, c->req + c->sent, c->reqlen - c->sent);
		if (n <= 0) {
			perror("mcload: write");
			exit(2);
		}
		c->sent += n;
	}
	char buf[MAXREQ];
	while (c->got < c->explen) {
		ssize_t n = read(c->fd, buf + c->got, c->explen - c->got);
		if (n <= 0) {
			fprintf(stderr, "mcload: read: %s\n", n ? strerror(errno) : "connection closed");
			exit(2);
		}
		c->got += n;
	}
	if (memcmp(buf, c->exp, c->explen)) {
		fprintf(stderr, "mcload: protocol error: sent %.*s, reply %.*s\n", (int)c->reqlen, c->req, (int)c->got, buf);
		exit(1);
	}
}

// push writes what is left of c's request without blocking; while some is left, c also waits
// for EPOLLOUT.
static int push(int ep, struct conn *c)
{
	ssize_t w = write(c->fd, c->req + c->sent, c->reqlen - c->sent);
	if (w < 0 && errno != EAGAIN && errno != EINTR) {
		perror("mcload: write");
		return -1;
	}
	if (w > 0)
		c->sent += w;
	int out = c->sent < c->reqlen;
	if (out != c->out) {
		struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		c->out = out;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4 || (strcmp(argv[3], "get") && strcmp(argv[3], "set"))) {
		fprintf(stderr, "usage: mcload HOST PORT get|set [CONNS [SECS [VALUE_BYTES [KEYS]]]]\n");
		return 2;
	}
	getmode = !strcmp(argv[3], "get");
	int nconn = argc > 4 ? atoi(argv[4]) : 50;
	double secs = argc > 5 ? atof(argv[5]) : 8;
	if (argc > 6)
		vbytes = atoi(argv[6]);
	if (argc > 7)
		nkeys = atoi(argv[7]);
	if (nconn < 1 || secs <= 0 || vbytes < 1 || vbytes > 1024 || nkeys < 1) {
		fprintf(stderr, "mcload: bad arguments\n");
		return 2;
	}
	for (int i = 0; i < vbytes; i++)
		value[i] = 'a' + i % 26;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "mcload: bad address %s\n", argv[1]);
		return 2;
	}
	struct conn *cs = calloc(nconn, sizeof *cs);
	for (int i = 0; i < nconn; i++)
		cs[i].fd = dial(&sa);
	if (getmode) // every key exists before the timed gets
		for (int k = 0; k < nkeys; k++) {
			prepare(&cs[0], k, 0);
			roundtrip(&cs[0]);
		}

	int ep = epoll_create1(0);
	for (int i = 0; i < nconn; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
		fcntl(cs[i].fd, F_SETFL, O_NONBLOCK);
		if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0) {
			perror("mcload: epoll_ctl");
			return 2;
		}
	}
	unsigned long long requests = 0;
	double t0 = now(), end = t0 + secs, t;
	for (int i = 0; i < nconn; i++) {
		prepare(&cs[i], (i * 7) % nkeys, getmode);
		if (push(ep, &cs[i]) < 0)
			return 2;
	}
	struct epoll_event evs[256];
	char buf[MAXREQ];
	while ((t = now()) < end) {
		int n = epoll_wait(ep, evs, 256, 100);
		if (n < 0 && errno != EINTR) {
			perror("mcload: epoll_wait");
			return 2;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
				fprintf(stderr, "mcload: connection error (events 0x%x)\n", evs[i].events);
				return 2;
			}
			if ((evs[i].events & EPOLLOUT) && c->sent < c->reqlen && push(ep, c) < 0)
				return 2;
			if (!(evs[i].events & EPOLLIN))
				continue;
			ssize_t r = read(c->fd, buf, sizeof buf);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				fprintf(stderr, "mcload: read: %s\n", r ? strerror(errno) : "connection closed by the server");
				return 2;
			}
			if (r < 0)
				continue;
			if (c->got + r > c->explen || memcmp(buf, c->exp + c->got, r)) {
				fprintf(stderr, "mcload: protocol error: sent %.*s, reply (after %zu bytes as expected) %.*s\n",
					(int)c->reqlen, c->req, c->got, (int)r, buf);
				return 1;
			}
			c->got += r;
			if (c->got == c->explen) {
				requests++;
				prepare(c, (c->key + 1) % nkeys, getmode);
				if (push(ep, c) < 0)
					return 2;
			}
		}
	}
	double el = t - t0;
	printf("mcload: mode %s conns %d secs %.3f requests %llu rps %.1f\n", argv[3], nconn, el, requests, requests / el);
	return 0;
}
