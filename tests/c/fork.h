/*
 * fork.h: helpers shared by the fork test programs tests/c/fork_*.c:
 * a deterministic data stream, SHA-256, sockets, and the "ok NAME: ..." / "FAIL NAME: ..." lines
 * that tests/fork_test.go compares between the kernel run and the ustack run.
 *
 * The stream: byte i of stream `seed` is byte i%8 of splitmix64(seed * 2^32 + i/8), so a writer
 * and a checker agree on any part of it without sharing state, whatever the chunking.
 * tests/fork_test.go has the same generator (forkStreamSHA) and checks the sha256 the programs
 * print.
 *
 * The Makefile rebuilds the fork programs when a header in tests/c changes.
 */
#ifndef FORK_H
#define FORK_H
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wunused-function"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the data stream ---- */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* gen_fill writes bytes [off, off+n) of stream seed to b. */
static void gen_fill(uint64_t seed, uint64_t off, unsigned char *b, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint64_t pos = off + i, w = splitmix64((seed << 32) + pos / 8);
		for (unsigned k = pos % 8; k < 8 && i < n; k++, i++)
			b[i] = (unsigned char)(w >> (8 * k));
	}
}

/* gen_check returns the index of the first byte of b that differs from the stream at off, or -1. */
static long gen_check(uint64_t seed, uint64_t off, const unsigned char *b, size_t n)
{
	unsigned char tmp[4096];
	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof tmp ? n - done : sizeof tmp;
		gen_fill(seed, off + done, tmp, k);
		if (memcmp(tmp, b + done, k) != 0)
			for (size_t j = 0; j < k; j++)
				if (tmp[j] != b[done + j])
					return (long)(done + j);
		done += k;
	}
	return -1;
}

/* ---- SHA-256 (FIPS 180-4) ---- */

typedef struct {
	uint32_t h[8];
	uint64_t len;
	unsigned char buf[64];
	size_t nbuf;
} sha256_ctx;

static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define SHA_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256_ctx *c, const unsigned char *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = SHA_ROR(w[i - 15], 7) ^ SHA_ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = SHA_ROR(w[i - 2], 17) ^ SHA_ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (SHA_ROR(e, 6) ^ SHA_ROR(e, 11) ^ SHA_ROR(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
		uint32_t t2 = (SHA_ROR(a, 2) ^ SHA_ROR(a, 13) ^ SHA_ROR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
		h = g, g = f, f = e, e = d + t1, d = cc, cc = b, b = a, a = t1 + t2;
	}
	c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e, c->h[5] += f, c->h[6] += g, c->h[7] += h;
}

static void sha256_init(sha256_ctx *c)
{
	static const uint32_t h0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	memcpy(c->h, h0, sizeof h0);
	c->len = 0;
	c->nbuf = 0;
}

static void sha256_update(sha256_ctx *c, const void *data, size_t n)
{
	const unsigned char *p = data;
	c->len += n;
	if (c->nbuf) {
		size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
		memcpy(c->buf + c->nbuf, p, k);
		c->nbuf += k, p += k, n -= k;
		if (c->nbuf < 64)
			return;
		sha256_block(c, c->buf);
		c->nbuf = 0;
	}
	for (; n >= 64; p += 64, n -= 64)
		sha256_block(c, p);
	memcpy(c->buf, p, n);
	c->nbuf = n;
}

/* sha256_hex finishes c (a copy: c can go on) and writes 64 hex digits and a NUL to out. */
static void sha256_hex(const sha256_ctx *in, char out[65])
{
	sha256_ctx c = *in;
	uint64_t bits = c.len * 8;
	unsigned char pad[72] = { 0x80 };
	size_t padn = (c.nbuf < 56 ? 56 : 120) - c.nbuf;
	for (int i = 0; i < 8; i++)
		pad[padn + i] = (unsigned char)(bits >> (56 - 8 * i));
	sha256_update(&c, pad, padn + 8);
	for (int i = 0; i < 8; i++)
		snprintf(out + 8 * i, 9, "%08x", c.h[i]);
}

/* stream_sha writes the sha256 of bytes [0, n) of stream seed to out. */
static void stream_sha(uint64_t seed, uint64_t n, char out[65])
{
	sha256_ctx c;
	unsigned char b[65536];
	sha256_init(&c);
	for (uint64_t off = 0; off < n;) {
		size_t k = n - off < sizeof b ? (size_t)(n - off) : sizeof b;
		gen_fill(seed, off, b, k);
		sha256_update(&c, b, k);
		off += k;
	}
	sha256_hex(&c, out);
}

/* ---- result lines ---- */

/* Lines go to rep (stdout, or the pipe a child reports through to its parent, which prints them
 * after the child is gone, so the order of the output never depends on scheduling). */
static FILE *rep;
static int rep_fd = 1;
static int fails;
static const char *prog = "fork";

static void okf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void okf(const char *fmt, ...)
{
	va_list ap;
	fputs("ok ", rep);
	va_start(ap, fmt);
	vfprintf(rep, fmt, ap);
	va_end(ap);
	fputc('\n', rep);
	fflush(rep);
}

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
	va_list ap;
	fputs("FAIL ", rep);
	va_start(ap, fmt);
	vfprintf(rep, fmt, ap);
	va_end(ap);
	fputc('\n', rep);
	fflush(rep);
	fails++;
}

/* infof: a line that may differ between runs (timings); not compared. */
static void infof(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void infof(const char *fmt, ...)
{
	va_list ap;
	fputs("info ", rep);
	va_start(ap, fmt);
	vfprintf(rep, fmt, ap);
	va_end(ap);
	fputc('\n', rep);
	fflush(rep);
}

#define E strerror(errno)

static const char *watchdog_what = "startup";

static void watchdog(int sig)
{
	(void)sig;
	char b[300];
	int n = snprintf(b, sizeof b, "FAIL %s: watchdog: %s hung (pid %d)\n", prog, watchdog_what, (int)getpid());
	if (write(rep_fd, b, n) < 0) {
	}
	_exit(3);
}

/* arm bounds what follows by secs seconds: then "FAIL PROG: watchdog: WHAT hung" and exit 3. */
static void arm(int secs, const char *what)
{
	watchdog_what = what;
	signal(SIGALRM, watchdog);
	alarm(secs);
}

static void fork_init(const char *name)
{
	prog = name;
	rep = stdout;
	rep_fd = 1;
	signal(SIGPIPE, SIG_IGN);
}

/* child_reporting makes a child report through the pipe p (its parent prints the lines). */
static void child_reporting(int p[2])
{
	close(p[0]);
	rep = fdopen(p[1], "w");
	rep_fd = p[1];
	fails = 0;
}

/* reap waits for the child pid, prints what it reported through the pipe p and checks that it
 * exited 0. */
static void reap(pid_t pid, int p[2], const char *who)
{
	close(p[1]);
	int st;
	pid_t w;
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	char buf[4096];
	ssize_t n;
	while ((n = read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			fwrite(buf, 1, n, rep);
	close(p[0]);
	fflush(rep);
	if (w != pid)
		failf("%s: waitpid: %s", who, E);
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		failf("%s: %s %d", who, WIFEXITED(st) ? "exited with" : "killed by signal",
		      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	else
		okf("%s: exited 0", who);
}

/* ---- sockets ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct sockaddr_in inaddr(const char *host, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (!host)
		a.sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "bad IPv4 address %s\n", host);
		exit(2);
	}
	return a;
}

/* dial connects a TCP socket to host:port, or exits 1 with a FAIL line. */
static int dial(const char *host, int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = inaddr(host, port);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		failf("connect %s:%d: %s", host, port, E);
		exit(1);
	}
	return s;
}

/* listen_on binds a socket of type on 0.0.0.0:port (and listens, for TCP), or exits 1. */
static int listen_on(int port, int type)
{
	int s = socket(AF_INET, type, 0), one = 1;
	struct sockaddr_in a = inaddr(NULL, port);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(s, (struct sockaddr *)&a, sizeof a) < 0 || (type == SOCK_STREAM && listen(s, 128) < 0)) {
		failf("listen on port %d: %s", port, E);
		exit(1);
	}
	return s;
}

static int accept_one(int l)
{
	int c;
	while ((c = accept(l, NULL, NULL)) < 0 && errno == EINTR)
		;
	if (c < 0) {
		failf("accept: %s", E);
		exit(1);
	}
	return c;
}

/* write_all sends all of b; -1 (errno set) on an error. */
static int write_all(int fd, const void *b, size_t n)
{
	const char *p = b;
	while (n > 0) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			struct pollfd pf = { .fd = fd, .events = POLLOUT };
			poll(&pf, 1, 1000);
			continue;
		}
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

/* read_full reads exactly n bytes; returns n, or the bytes read before EOF, or -1 on an error. */
static ssize_t read_full(int fd, void *b, size_t n)
{
	char *p = b;
	size_t got = 0;
	while (got < n) {
		ssize_t r = recv(fd, p + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += r;
	}
	return got;
}

/* read_pipe reads exactly n bytes from a pipe; returns n, or the bytes read before EOF, or -1. */
static ssize_t read_pipe(int fd, void *b, size_t n)
{
	char *p = b;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += r;
	}
	return got;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		failf("fcntl O_NONBLOCK: %s", E);
		exit(1);
	}
}

#endif
