/*
 * many_client: the kernel-side client of TestManyConnections.
 *
 *   many_client IP PORT N [BATCH] [HOLD_S]
 *
 * Opens N connections to IP:PORT (tests/c/many_server.c) BATCH at a time (default
 * 200): non-blocking connects, then on each the request "q I\n" and its answer,
 * which must be exactly "a q I\n"; every connection stays open. A batch must
 * connect and be answered within 10 s; a batch that is not stops the opening
 * (bounded time when the server cannot keep up). Then it prints
 *
 *   answered A of N (connected C, failed F) in MS ms
 *   all N answered                      (when A == N)
 *   holding
 *
 * and holds every connection open until its standard input reaches EOF (or HOLD_S
 * seconds, default 120, pass). Then it asks again on every answered connection
 * ("r I\n", answer "a r I\n"), prints
 *
 *   round 2: answered A2 of A
 *   all N answered again                (when A2 == N)
 *
 * closes them all and exits 0 if every connection was answered twice, 1 otherwise.
 * Errors go to stderr, the first few in detail.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MS 10000

struct conn {
	int fd;
	int state; /* 3 connecting, 0 connected, 1 waiting for an answer, 2 answered, -1 failed */
	int got;
	char buf[64];
};

static struct conn *cs;
static int nerr;

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errf(const char *fmt, ...)
{
	if (nerr++ >= 10)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "many_client: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* ask sends "<c> I\n" on every connection of [lo, hi) in state from and waits,
 * at most until deadline, for each answer; those answered go to state 2. Returns
 * how many were answered. */
static int ask(int lo, int hi, int from, char c, long deadline)
{
	int want = 0, answered = 0;
	for (int i = lo; i < hi; i++) {
		if (cs[i].state != from)
			continue;
		char req[32];
		int n = snprintf(req, sizeof req, "%c %d\n", c, i);
		if (send(cs[i].fd, req, n, MSG_NOSIGNAL) != n) {
			errf("conn %d: send: %s", i, strerror(errno));
			cs[i].state = -1;
			continue;
		}
		cs[i].state = 1;
		cs[i].got = 0;
		want++;
	}
	struct pollfd *p = calloc(hi - lo, sizeof *p);
	int *idx = calloc(hi - lo, sizeof *idx);
	while (answered < want) {
		int np = 0;
		for (int i = lo; i < hi; i++)
			if (cs[i].state == 1) {
				p[np] = (struct pollfd){ .fd = cs[i].fd, .events = POLLIN };
				idx[np++] = i;
			}
		long left = deadline - now_ms();
		if (np == 0 || left <= 0)
			break;
		int r = poll(p, np, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int k = 0; k < np; k++) {
			if (!p[k].revents)
				continue;
			struct conn *x = &cs[idx[k]];
			ssize_t n = recv(x->fd, x->buf + x->got, sizeof x->buf - 1 - x->got, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n <= 0) {
				errf("conn %d: %s before the answer", idx[k], n == 0 ? "EOF" : strerror(errno));
				x->state = -1;
				continue;
			}
			x->got += n;
			x->buf[x->got] = 0;
			char *nl = memchr(x->buf, '\n', x->got);
			if (!nl) {
				if (x->got >= (int)sizeof x->buf - 1) {
					errf("conn %d: answer too long: %.40s", idx[k], x->buf);
					x->state = -1;
				}
				continue;
			}
			char want_s[32];
			snprintf(want_s, sizeof want_s, "a %c %d\n", c, idx[k]);
			if (strcmp(x->buf, want_s) != 0) {
				errf("conn %d: answer %.40s, want %.40s", idx[k], x->buf, want_s);
				x->state = -1;
				continue;
			}
			x->state = 2;
			answered++;
		}
	}
	for (int i = lo; i < hi; i++)
		if (cs[i].state == 1) {
			errf("conn %d: no answer in time", i);
			cs[i].state = -1;
		}
	free(p);
	free(idx);
	return answered;
}

/* open_batch connects [lo, hi) (non-blocking) and waits at most until
 * deadline; the connected ones go to state 0, the others to -1. Returns how
 * many connected. */
static int open_batch(int lo, int hi, const struct sockaddr_in *to, long deadline)
{
	int pending = 0, connected = 0;
	for (int i = lo; i < hi; i++) {
		cs[i].state = -1;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			errf("conn %d: socket: %s", i, strerror(errno));
			continue;
		}
		cs[i].fd = fd;
		if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS) {
			errf("conn %d: connect: %s", i, strerror(errno));
			close(fd);
			cs[i].fd = -1;
			continue;
		}
		cs[i].state = 3; /* connecting */
		pending++;
	}
	struct pollfd *p = calloc(hi - lo, sizeof *p);
	int *idx = calloc(hi - lo, sizeof *idx);
	while (pending > 0) {
		int np = 0;
		for (int i = lo; i < hi; i++)
			if (cs[i].state == 3) {
				p[np] = (struct pollfd){ .fd = cs[i].fd, .events = POLLOUT };
				idx[np++] = i;
			}
		long left = deadline - now_ms();
		if (left <= 0)
			break;
		int r = poll(p, np, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (int k = 0; k < np; k++) {
			if (!p[k].revents)
				continue;
			int err = 0;
			socklen_t l = sizeof err;
			getsockopt(p[k].fd, SOL_SOCKET, SO_ERROR, &err, &l);
			pending--;
			if (err) {
				errf("conn %d: connect: %s", idx[k], strerror(err));
				cs[idx[k]].state = -1;
			} else {
				cs[idx[k]].state = 0;
				connected++;
			}
		}
	}
	for (int i = lo; i < hi; i++)
		if (cs[i].state == 3) {
			errf("conn %d: connect not done in time", i);
			cs[i].state = -1;
		}
	free(p);
	free(idx);
	return connected;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: many_client IP PORT N [BATCH] [HOLD_S]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	int n = atoi(argv[3]);
	int batch = argc > 4 ? atoi(argv[4]) : 200;
	int hold = argc > 5 ? atoi(argv[5]) : 120;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (n <= 0 || batch <= 0 || inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
		fprintf(stderr, "many_client: bad arguments\n");
		return 2;
	}
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = (rlim_t)n + 64;
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) {
			fprintf(stderr, "many_client: RLIMIT_NOFILE hard limit %lu < %d connections + 64\n",
			        (unsigned long)rl.rlim_max, n);
			return 2;
		}
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			perror("many_client: setrlimit");
			return 2;
		}
	}
	cs = calloc(n, sizeof *cs);
	for (int i = 0; i < n; i++)
		cs[i].fd = -1;

	long t0 = now_ms();
	int connected = 0, answered = 0, failed = 0, lo = 0;
	for (; lo < n; lo += batch) {
		int hi = lo + batch < n ? lo + batch : n;
		long deadline = now_ms() + BATCH_MS;
		int c = open_batch(lo, hi, &to, deadline);
		int a = ask(lo, hi, 0, 'q', deadline);
		connected += c;
		answered += a;
		failed += (hi - lo) - a;
		if (a < hi - lo) {
			fprintf(stderr, "many_client: batch %d-%d: %d connected, %d answered within %d ms: stopping here\n",
			        lo, hi - 1, c, a, BATCH_MS);
			lo = hi;
			break;
		}
	}
	printf("answered %d of %d (connected %d, failed %d, not tried %d) in %ld ms\n", answered, n, connected,
	       failed, n - (lo < n ? lo : n), now_ms() - t0);
	if (answered == n)
		printf("all %d answered\n", n);
	printf("holding\n");

	struct pollfd in = { .fd = 0, .events = POLLIN };
	long until = now_ms() + hold * 1000L;
	for (;;) {
		long left = until - now_ms();
		if (left <= 0)
			break;
		int r = poll(&in, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		if (r > 0) {
			char b[64];
			ssize_t k = read(0, b, sizeof b);
			if (k <= 0 || memchr(b, '\n', k))
				break;
		}
	}

	long t1 = now_ms();
	int again = 0;
	for (int l = 0; l < n; l += batch) {
		int h = l + batch < n ? l + batch : n;
		again += ask(l, h, 2, 'r', now_ms() + BATCH_MS);
	}
	printf("round 2: answered %d of %d in %ld ms\n", again, answered, now_ms() - t1);
	if (again == n)
		printf("all %d answered again\n", n);
	for (int i = 0; i < n; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	printf("closed\n");
	return again == n ? 0 : 1;
}
