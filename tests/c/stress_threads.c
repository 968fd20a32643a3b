/*
 * stress_threads: many threads doing blocking and non-blocking calls on different and on the
 * same connection: no deadlock, no lost wake-up.
 *
 *   stress_threads HOST PORT [SECONDS]
 *
 * HOST:PORT is tests/c/sem_peer; every connection sends "echo". For SECONDS (default 3):
 *   blocking     threads 0-3, one connection each: send a chunk of 1..16000 bytes with
 *                blocking send, then read its echo with blocking recv
 *   nonblocking  threads 4-7, one connection each, 4-5 with O_NONBLOCK, 6-7 blocking sockets
 *                with MSG_DONTWAIT: poll for POLLIN|POLLOUT, send what fits (at most 64 KiB
 *                outstanding), read what is there
 *   shared       threads 8 and 9 share one connection: 8 sends with blocking send, 9 receives
 *                with blocking recv at the same time
 * Every stream is pseudo-random bytes (xorshift, one seed per stream). At the end each sender
 * shuts down its side and the receiver reads to EOF: the bytes received must equal the bytes
 * sent, in count, byte by byte and by FNV-1a checksum. Prints one line per check ("ok NAME" /
 * "FAIL NAME: detail"), an "info" line with the byte counts, and "stress_threads ok"; exit 0 on
 * success. alarm(SECONDS + 30) turns a deadlock into a failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host;
static int port;
static double deadline;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* gen is one stream's byte generator; the sender and the checker each run one from the same seed. */
struct gen {
	uint32_t x;
};

static void fill(struct gen *g, unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		g->x ^= g->x << 13;
		g->x ^= g->x >> 17;
		g->x ^= g->x << 5;
		b[i] = (unsigned char)(g->x >> 7);
	}
}

static uint32_t fnv(uint32_t h, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

struct stream {
	const char *kind;
	int idx;
	long sent, got, bad;
	uint32_t hsent, hgot;
	int eof;
	char err[96];
};

static void fail(struct stream *st, const char *what, int e)
{
	if (!st->err[0])
		snprintf(st->err, sizeof st->err, "%s: %s", what, e ? strerror(e) : "EOF");
}

static int dial(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, host, &a.sin_addr);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("connect");
		exit(1);
	}
	if (send(s, "echo\n", 5, MSG_NOSIGNAL) != 5) {
		perror("send");
		exit(1);
	}
	return s;
}

static int send_all(int s, const unsigned char *b, size_t n)
{
	while (n > 0) {
		ssize_t r = send(s, b, n, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= r;
	}
	return 0;
}

/* check compares received bytes with the checker generator. */
static void check(struct stream *st, struct gen *chk, const unsigned char *b, size_t n)
{
	unsigned char want[65536];
	while (n > 0) {
		size_t k = n < sizeof want ? n : sizeof want;
		fill(chk, want, k);
		for (size_t i = 0; i < k; i++)
			st->bad += b[i] != want[i];
		st->hgot = fnv(st->hgot, b, k);
		st->got += k;
		b += k;
		n -= k;
	}
}

/* eof reads to EOF after the sender's shutdown; anything more is counted and checked. */
static void read_eof(struct stream *st, int s, struct gen *chk)
{
	unsigned char b[4096];
	for (;;) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		if (poll(&p, 1, 5000) == 0) {
			fail(st, "no EOF within 5 s", ETIMEDOUT);
			return;
		}
		ssize_t r = recv(s, b, sizeof b, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0) {
			fail(st, "recv after shutdown", errno);
			return;
		}
		if (r == 0) {
			st->eof = 1;
			return;
		}
		check(st, chk, b, r);
	}
}

static void *blocking(void *arg)
{
	struct stream *st = arg;
	int s = dial();
	struct gen g = { 0x9e3779b9u * (st->idx + 1) }, chk = g, sz = { 0x1234567u + st->idx };
	unsigned char *out = malloc(16000), *in = malloc(16000);
	while (now() < deadline) {
		fill(&sz, in, 2);
		size_t n = 1 + (in[0] | in[1] << 8) % 16000;
		fill(&g, out, n);
		if (send_all(s, out, n) < 0) {
			fail(st, "send", errno);
			break;
		}
		st->hsent = fnv(st->hsent, out, n);
		st->sent += n;
		size_t got = 0;
		while (got < n) {
			ssize_t r = recv(s, in + got, n - got, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				fail(st, "recv", r < 0 ? errno : 0);
				goto out;
			}
			got += r;
		}
		check(st, &chk, in, n);
	}
out:
	shutdown(s, SHUT_WR);
	if (!st->err[0])
		read_eof(st, s, &chk);
	close(s);
	free(out);
	free(in);
	return NULL;
}

static void *nonblocking(void *arg)
{
	struct stream *st = arg;
	int s = dial();
	int dontwait = 0;
	if (st->idx % 2 == 0)
		fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	else
		dontwait = MSG_DONTWAIT;
	struct gen g = { 0x85ebca6bu * (st->idx + 1) }, chk = g, sz = { 0x7654321u + st->idx };
	unsigned char *out = malloc(65536), *in = malloc(65536);
	size_t pending = 0, off = 0; /* generated but not yet sent: out[off:pending] */
	int shut = 0;
	for (;;) {
		int sending = now() < deadline;
		if (!sending && !shut && off == pending) {
			shutdown(s, SHUT_WR);
			shut = 1;
		}
		if (shut && st->got == st->sent)
			break;
		struct pollfd p = { .fd = s, .events = POLLIN };
		if (!shut && (off < pending || (sending && st->sent - st->got < 65536)))
			p.events |= POLLOUT;
		int r = poll(&p, 1, 5000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			fail(st, "poll: nothing within 5 s", ETIMEDOUT);
			break;
		}
		if (p.revents & (POLLERR | POLLNVAL)) {
			fail(st, "poll: POLLERR/POLLNVAL", EIO);
			break;
		}
		if (p.revents & POLLOUT) {
			if (off == pending) {
				fill(&sz, in, 2);
				pending = 1 + (in[0] | in[1] << 8) % 20000;
				off = 0;
				fill(&g, out, pending);
				st->hsent = fnv(st->hsent, out, pending);
			}
			ssize_t k = send(s, out + off, pending - off, MSG_NOSIGNAL | dontwait);
			if (k < 0 && errno != EAGAIN && errno != EINTR) {
				fail(st, "send", errno);
				break;
			}
			if (k > 0) {
				off += k;
				st->sent += k;
			}
		}
		if (p.revents & (POLLIN | POLLHUP)) {
			ssize_t k = recv(s, in, 65536, dontwait);
			if (k < 0 && errno != EAGAIN && errno != EINTR) {
				fail(st, "recv", errno);
				break;
			}
			if (k == 0) {
				fail(st, "recv: early", 0);
				break;
			}
			if (k > 0)
				check(st, &chk, in, k);
		}
	}
	if (!st->err[0]) {
		fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
		read_eof(st, s, &chk);
	}
	close(s);
	free(out);
	free(in);
	return NULL;
}

/* The shared connection: one sender, one receiver. */
static int shared_fd;
static struct gen shared_seed = { 0xc2b2ae35u };

static void *shared_sender(void *arg)
{
	struct stream *st = arg;
	struct gen g = shared_seed, sz = { 0x2468aceu };
	static unsigned char out[32768];
	while (now() < deadline) {
		fill(&sz, out, 2);
		size_t n = 1 + (out[0] | out[1] << 8) % sizeof out;
		fill(&g, out, n);
		if (send_all(shared_fd, out, n) < 0) {
			fail(st, "send", errno);
			break;
		}
		st->hsent = fnv(st->hsent, out, n);
		st->sent += n;
	}
	shutdown(shared_fd, SHUT_WR);
	return NULL;
}

static void *shared_receiver(void *arg)
{
	struct stream *st = arg;
	struct gen chk = shared_seed;
	static unsigned char in[65536];
	for (;;) {
		ssize_t r = recv(shared_fd, in, sizeof in, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fail(st, "recv", errno);
			break;
		}
		if (r == 0) {
			st->eof = 1;
			break;
		}
		check(st, &chk, in, r);
	}
	return NULL;
}

static int report(const char *name, struct stream *sts, int n, const char *what)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		struct stream *st = &sts[i];
		if (st->err[0] || !st->eof || st->got != st->sent || st->bad || st->hgot != st->hsent || st->sent == 0) {
			printf("FAIL %s: stream %d: sent %ld got %ld, %ld bytes differ, checksum %08x vs %08x, EOF %s, error %s\n",
			       name, st->idx, st->sent, st->got, st->bad, st->hsent, st->hgot, st->eof ? "yes" : "no",
			       st->err[0] ? st->err : "none");
			bad = 1;
		}
	}
	if (!bad)
		printf("ok %s: %s\n", name, what);
	return bad;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: stress_threads HOST PORT [SECONDS]\n");
		return 2;
	}
	host = argv[1];
	port = atoi(argv[2]);
	int secs = argc == 4 ? atoi(argv[3]) : 3;
	alarm(secs + 30);
	deadline = now() + secs;

	struct stream own[8], sh[2];
	memset(own, 0, sizeof own);
	memset(sh, 0, sizeof sh);
	pthread_t th[10];
	for (int i = 0; i < 8; i++) {
		own[i].idx = i;
		own[i].hsent = own[i].hgot = 2166136261u;
		if (pthread_create(&th[i], NULL, i < 4 ? blocking : nonblocking, &own[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	shared_fd = dial();
	sh[0].hsent = sh[1].hgot = 2166136261u;
	if (pthread_create(&th[8], NULL, shared_sender, &sh[0]) != 0 ||
	    pthread_create(&th[9], NULL, shared_receiver, &sh[1]) != 0) {
		perror("pthread_create");
		return 1;
	}
	for (int i = 0; i < 10; i++)
		pthread_join(th[i], NULL);
	close(shared_fd);

	/* the shared connection's two halves make one stream */
	struct stream shared = sh[0];
	shared.got = sh[1].got;
	shared.bad = sh[1].bad;
	shared.hgot = sh[1].hgot;
	shared.eof = sh[1].eof;
	if (!shared.err[0] && sh[1].err[0])
		memcpy(shared.err, sh[1].err, sizeof shared.err);

	long tb = 0, tn = 0;
	for (int i = 0; i < 8; i++)
		*(i < 4 ? &tb : &tn) += own[i].sent;
	printf("info: echoed bytes: blocking %ld, nonblocking %ld, shared %ld\n", tb, tn, shared.sent);

	int fails = 0;
	fails += report("blocking", own, 4, "4 connections, blocking send/recv, every byte echoed intact");
	fails += report("nonblocking", own + 4, 4, "4 connections, O_NONBLOCK and MSG_DONTWAIT with poll, every byte echoed intact");
	fails += report("shared", &shared, 1, "one connection, a sending and a receiving thread, every byte echoed intact");
	if (fails)
		return 1;
	printf("stress_threads ok\n");
	return 0;
}
