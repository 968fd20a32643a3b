/*
 * fork_peer: the kernel peer of tests/c/fork_server.c and tests/c/fork_exitsend.c,
 * run in the other namespace on the kernel.
 *
 *   fork_peer echo    HOST PORT BYTES   send BYTES of stream 3 while reading the echo, half-close,
 *                                       read to EOF: the echo must be the same bytes
 *   fork_peer turns   HOST PORT ROUNDS  read ROUNDS blocks (parent's even, child's odd; see
 *                                       fork_server.c), check each, answer "ACK i"; then EOF
 *   fork_peer udp     HOST PORT N       "hello", a burst of 16 datagrams, then N-16 one at a
 *                                       time; every reply must come back in order, none lost
 *                                       (5 s each); then "bye"
 *   fork_peer midxfer HOST PORT BYTES   send BYTES of stream 2 and receive BYTES of stream 1 at
 *                                       the same time, then EOF both ways
 *   fork_peer sink    PORT BYTES SEED   listen on PORT, accept one connection, read to EOF: want
 *                                       BYTES bytes of stream SEED
 *
 * Prints "ok ..." / "FAIL ..." lines and "fork_peer ok" at the end; exit 0 when every check passed.
 */
#include "fork.h"
#include <pthread.h>

/* ---- echo ---- */

struct sender {
	int fd;
	uint64_t size, seed;
	int err;
};

static void *send_stream(void *arg)
{
	struct sender *s = arg;
	static unsigned char b[65536];
	for (uint64_t off = 0; off < s->size;) {
		size_t k = s->size - off < sizeof b ? s->size - off : sizeof b;
		gen_fill(s->seed, off, b, k);
		if (write_all(s->fd, b, k) < 0) {
			s->err = errno;
			return NULL;
		}
		off += k;
	}
	if (shutdown(s->fd, SHUT_WR) != 0)
		s->err = errno;
	return NULL;
}

static void echo(const char *host, int port, uint64_t size)
{
	int s = dial(host, port);
	struct sender snd = { .fd = s, .size = size, .seed = 3 };
	pthread_t t;
	pthread_create(&t, NULL, send_stream, &snd);
	static unsigned char b[65536];
	sha256_ctx sha;
	sha256_init(&sha);
	uint64_t got = 0;
	int bad = 0;
	for (;;) {
		ssize_t n = recv(s, b, sizeof b, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			failf("echo: recv after %llu bytes: %s", (unsigned long long)got, E);
			break;
		}
		if (n == 0)
			break;
		long d = gen_check(3, got, b, n);
		if (d >= 0 && !bad++)
			failf("echo: differs from what was sent at byte %llu", (unsigned long long)(got + d));
		sha256_update(&sha, b, n);
		got += n;
	}
	pthread_join(t, NULL);
	if (snd.err)
		failf("echo: send: %s", strerror(snd.err));
	char h[65], want[65];
	sha256_hex(&sha, h);
	stream_sha(3, size, want);
	if (got != size || strcmp(h, want) != 0)
		failf("echo: %llu bytes back, sha256 %s; want %llu bytes, sha256 %s", (unsigned long long)got, h,
		      (unsigned long long)size, want);
	else
		okf("echo: %llu bytes sent and echoed back identical, then EOF, sha256 %s", (unsigned long long)got, h);
	close(s);
}

/* ---- turns ---- */

static unsigned blklen(int i) { return 1 + (unsigned)(i * 7919) % 65536; }

static void turns(const char *host, int port, int rounds)
{
	int s = dial(host, port);
	static unsigned char b[65536];
	sha256_ctx sha;
	sha256_init(&sha);
	uint64_t total = 0;
	int i;
	for (i = 0; i < rounds; i++) {
		char hdr[20] = { 0 }, want[48];
		unsigned n = blklen(i);
		snprintf(want, sizeof want, "BLK %05d %c %06u\n", i % 100000, i % 2 ? 'C' : 'P', n);
		ssize_t r = read_full(s, hdr, 19);
		if (r != 19 || memcmp(hdr, want, 19) != 0) {
			failf("turns: block %d: header %zd bytes \"%.18s\" (%s), want \"%.18s\"", i, r, hdr,
			      r < 0 ? E : "-", want);
			break;
		}
		r = read_full(s, b, n);
		long d = r == (ssize_t)n ? gen_check(1000 + i, 0, b, n) : 0;
		if (r != (ssize_t)n || d >= 0) {
			failf("turns: block %d: %zd of %u bytes, first difference at %ld", i, r, n, d);
			break;
		}
		sha256_update(&sha, hdr, 19);
		sha256_update(&sha, b, n);
		total += 19 + n;
		char ack[24];
		snprintf(ack, sizeof ack, "ACK %05d\n", i % 100000);
		if (write_all(s, ack, 10) < 0) {
			failf("turns: ack %d: %s", i, E);
			break;
		}
	}
	if (i == rounds) {
		char h[65];
		sha256_hex(&sha, h);
		okf("turns: %d blocks in order (parent's even, child's odd), %llu bytes, sha256 %s", rounds,
		    (unsigned long long)total, h);
		char x;
		ssize_t r = read_full(s, &x, 1);
		if (r != 0)
			failf("turns: want EOF after the last block, got %zd (%s)", r, r < 0 ? E : "data");
		else
			okf("turns: EOF after the last block");
	}
	close(s);
}

/* ---- udp ---- */

#define BURST 16

static int payload(int k, char *out)
{
	int h = snprintf(out, 32, "dgram %05d ", k);
	int n = 100 + (k * 37) % 1300;
	gen_fill(5000 + k, 0, (unsigned char *)out + h, n);
	return h + n;
}

/* await waits up to 5 s for a datagram on u equal to want (n bytes); 0 when it came. */
static int await(int u, const char *want, int n, const char *what)
{
	char b[2048];
	struct pollfd pf = { .fd = u, .events = POLLIN };
	int r = poll(&pf, 1, 5000);
	if (r != 1) {
		failf("udp: %s: no reply within 5 s", what);
		return -1;
	}
	ssize_t k = recv(u, b, sizeof b, 0);
	if (k != n || memcmp(b, want, n) != 0) {
		failf("udp: %s: got %zd bytes \"%.12s\" (%s), want %d bytes \"%.12s\"", what, k, b, k < 0 ? E : "-", n, want);
		return -1;
	}
	return 0;
}

static int reply_of(int k, char *want)
{
	memcpy(want, "re:", 3);
	return 3 + payload(k, want + 3);
}

static void udp(const char *host, int port, int n)
{
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = inaddr(host, port);
	if (u < 0 || connect(u, (struct sockaddr *)&a, sizeof a) < 0) {
		failf("udp: connect: %s", E);
		return;
	}
	/* hello, a few tries: the server may still be starting */
	int up = 0;
	for (int try = 0; try < 10 && !up; try++) {
		if (send(u, "hello", 5, 0) != 5) {
			usleep(200 * 1000);
			continue;
		}
		struct pollfd pf = { .fd = u, .events = POLLIN };
		char b[64];
		if (poll(&pf, 1, 1000) == 1 && recv(u, b, sizeof b, 0) == 9 && memcmp(b, "hello-ack", 9) == 0)
			up = 1;
	}
	if (!up) {
		failf("udp: no hello-ack");
		return;
	}
	char out[2048], want[2048], what[64];
	for (int k = 0; k < BURST; k++) {
		int m = payload(k, out);
		if (send(u, out, m, 0) != m) {
			failf("udp: send burst %d: %s", k, E);
			return;
		}
	}
	sha256_ctx sha;
	sha256_init(&sha);
	int k;
	for (k = 0; k < BURST; k++) {
		int m = reply_of(k, want);
		snprintf(what, sizeof what, "reply to burst datagram %d", k);
		if (await(u, want, m, what) < 0)
			break;
		sha256_update(&sha, want, m);
	}
	for (; k >= BURST && k < n; k++) {
		int m = payload(k, out);
		if (send(u, out, m, 0) != m) {
			failf("udp: send %d: %s", k, E);
			break;
		}
		m = reply_of(k, want);
		snprintf(what, sizeof what, "reply to datagram %d", k);
		if (await(u, want, m, what) < 0)
			break;
		sha256_update(&sha, want, m);
	}
	if (k == n) {
		char h[65];
		sha256_hex(&sha, h);
		okf("udp: %d datagrams (%d queued before the fork) answered in order, none lost, replies sha256 %s", n, BURST, h);
		if (send(u, "bye", 3, 0) != 3 || await(u, "bye-ack", 7, "bye") < 0)
			return;
		okf("udp: bye answered");
	}
	close(u);
}

/* ---- midxfer ---- */

static void midxfer(const char *host, int port, uint64_t size)
{
	int s = dial(host, port);
	set_nonblock(s);
	static unsigned char b[65536];
	uint64_t sent = 0, rcvd = 0;
	int eof = 0, shut = 0;
	sha256_ctx sha;
	sha256_init(&sha);
	while (!eof || !shut) {
		struct pollfd pf = { .fd = s, .events = (eof ? 0 : POLLIN) | (sent < size ? POLLOUT : 0) };
		int r = poll(&pf, 1, 60000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			failf("midxfer: %s (sent %llu, received %llu of %llu)", r < 0 ? E : "no progress for 60 s",
			      (unsigned long long)sent, (unsigned long long)rcvd, (unsigned long long)size);
			return;
		}
		if (sent < size && (pf.revents & (POLLOUT | POLLERR | POLLHUP))) {
			size_t k = size - sent < sizeof b ? size - sent : sizeof b;
			gen_fill(2, sent, b, k);
			ssize_t n = send(s, b, k, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				failf("midxfer: send at %llu: %s", (unsigned long long)sent, E);
				return;
			}
			if (n > 0)
				sent += n;
		}
		if (sent == size && !shut) {
			shutdown(s, SHUT_WR);
			shut = 1;
		}
		if (!eof && (pf.revents & (POLLIN | POLLERR | POLLHUP))) {
			ssize_t n = recv(s, b, sizeof b, 0);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				failf("midxfer: recv at %llu: %s", (unsigned long long)rcvd, E);
				return;
			}
			if (n == 0)
				eof = 1;
			if (n > 0) {
				long d = gen_check(1, rcvd, b, n);
				if (d >= 0 || rcvd + n > size) {
					failf("midxfer: received data differs from what was sent at byte %llu",
					      (unsigned long long)(rcvd + (d >= 0 ? d : 0)));
					return;
				}
				sha256_update(&sha, b, n);
				rcvd += n;
			}
		}
	}
	char h[65], want[65];
	sha256_hex(&sha, h);
	stream_sha(1, size, want);
	if (rcvd != size || strcmp(h, want) != 0)
		failf("midxfer: received %llu bytes, sha256 %s; want %llu, %s", (unsigned long long)rcvd, h,
		      (unsigned long long)size, want);
	else
		okf("midxfer: sent %llu bytes, received %llu bytes, sha256 %s", (unsigned long long)sent,
		    (unsigned long long)rcvd, h);
	close(s);
}

/* ---- sink ---- */

static void sink(int port, uint64_t size, uint64_t seed)
{
	int l = listen_on(port, SOCK_STREAM);
	int c = accept_one(l);
	static unsigned char b[65536];
	sha256_ctx sha;
	sha256_init(&sha);
	uint64_t got = 0;
	int bad = 0;
	double t0 = now_s();
	for (;;) {
		ssize_t n = recv(c, b, sizeof b, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			failf("sink: recv after %llu bytes: %s", (unsigned long long)got, E);
			break;
		}
		if (n == 0)
			break;
		long d = gen_check(seed, got, b, n);
		if (d >= 0 && !bad++)
			failf("sink: differs from what was sent at byte %llu", (unsigned long long)(got + d));
		sha256_update(&sha, b, n);
		got += n;
	}
	char h[65], want[65];
	sha256_hex(&sha, h);
	stream_sha(seed, size, want);
	infof("sink: %llu bytes in %.3f s, EOF at wall clock %lld ns", (unsigned long long)got, now_s() - t0,
	      (long long)wall_ns());
	if (got != size || strcmp(h, want) != 0)
		failf("sink: %llu bytes, sha256 %s; want %llu bytes, sha256 %s", (unsigned long long)got, h,
		      (unsigned long long)size, want);
	else
		okf("sink: %llu bytes, then EOF, sha256 %s", (unsigned long long)got, h);
	close(c);
	close(l);
}

int main(int argc, char **argv)
{
	fork_init("fork_peer");
	if (argc == 5 && strcmp(argv[1], "sink") == 0) {
		arm(1800, "sink");
		sink(atoi(argv[2]), strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
	} else if (argc == 5) {
		const char *mode = argv[1], *host = argv[2];
		int port = atoi(argv[3]);
		unsigned long long n = strtoull(argv[4], NULL, 10);
		arm(300, mode);
		if (strcmp(mode, "echo") == 0)
			echo(host, port, n);
		else if (strcmp(mode, "turns") == 0)
			turns(host, port, (int)n);
		else if (strcmp(mode, "udp") == 0)
			udp(host, port, (int)n);
		else if (strcmp(mode, "midxfer") == 0)
			midxfer(host, port, n);
		else {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
	} else {
		fprintf(stderr, "usage: fork_peer echo|turns|udp|midxfer HOST PORT N | fork_peer sink PORT BYTES SEED\n");
		return 2;
	}
	if (fails)
		return 1;
	printf("fork_peer ok\n");
	return 0;
}
