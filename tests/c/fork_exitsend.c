/*
 * fork_exitsend: a sender that writes, closes and exits at once (at exit, the
 * connections still delivering are handed to the kernel, which finishes them; exit returns at once).
 *
 *   fork_exitsend HOST PORT BYTES SEED [SNDBUF]
 *
 * Connects to HOST:PORT (tests/c/fork_peer sink), with SO_SNDBUF set to SNDBUF first if given (so
 * that much is still to be delivered when it closes), writes BYTES of stream SEED with blocking
 * sends, closes and calls exit(0) at once. Prints "ok ..." lines, then "info close_wall_ns N" (the
 * CLOCK_REALTIME when close() returned, for the Go side to measure how long the process lived
 * after its close), and from an atexit handler registered first (so it runs after every handler
 * registered later, ustack's included) "info atexit ... ms after close returned".
 */
#include "fork.h"

static double closed_at;

static void last_words(void)
{
	if (closed_at == 0)
		return;
	char b[128];
	int n = snprintf(b, sizeof b, "info atexit: the last atexit handler ran %.3f ms after close returned\n",
			 (now_s() - closed_at) * 1e3);
	if (write(1, b, n) < 0) {
	}
}

int main(int argc, char **argv)
{
	fork_init("fork_exitsend");
	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: fork_exitsend HOST PORT BYTES SEED [SNDBUF]\n");
		return 2;
	}
	atexit(last_words);
	uint64_t size = strtoull(argv[3], NULL, 10), seed = strtoull(argv[4], NULL, 10);
	arm(1800, "send");
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0) {
		failf("socket: %s", E);
		return 1;
	}
	if (argc == 6) {
		int sb = atoi(argv[5]);
		if (setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb) != 0) {
			failf("SO_SNDBUF %d: %s", sb, E);
			return 1;
		}
	}
	struct sockaddr_in a = inaddr(argv[1], atoi(argv[2]));
	if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
		failf("connect %s:%s: %s", argv[1], argv[2], E);
		return 1;
	}
	int sb = 0;
	socklen_t sl = sizeof sb;
	getsockopt(s, SOL_SOCKET, SO_SNDBUF, &sb, &sl);
	infof("SO_SNDBUF %d", sb);
	static unsigned char b[65536];
	double t0 = now_s();
	for (uint64_t off = 0; off < size;) {
		size_t k = size - off < sizeof b ? size - off : sizeof b;
		gen_fill(seed, off, b, k);
		if (write_all(s, b, k) < 0) {
			failf("send at %llu: %s", (unsigned long long)off, E);
			return 1;
		}
		off += k;
	}
	double t1 = now_s();
	okf("wrote %llu bytes", (unsigned long long)size);
	fflush(NULL);
	int r = close(s);
	closed_at = now_s();
	int64_t wall = wall_ns();
	if (r != 0)
		failf("close: %s", E);
	else
		okf("close 0");
	infof("writes took %.3f s, close %.3f ms", t1 - t0, (closed_at - t1) * 1e3);
	infof("close_wall_ns %lld", (long long)wall);
	alarm(0);
	exit(fails ? 1 : 0);
}
