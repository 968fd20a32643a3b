/*
 * forkchild: fork without exec, then use kernel sockets in the child.
 *
 * Under LD_PRELOAD=libustack.so the parent first opens (and closes) an
 * AF_INET stream socket, so the Go runtime and the stack are up before the
 * fork. The child never execs: it must not call into Go, and the sockets it
 * opens must be plain kernel sockets that work.
 *
 *   forkchild [HOST PORT]
 *
 * The parent listens on 127.0.0.1 (loopback: always the kernel); the child
 * connects to it and sends a greeting. With HOST PORT, the child also sends
 * "GET / HTTP/1.0" to HOST:PORT (an HTTP server reached through the
 * accelerated interface's route) and expects a reply starting "HTTP/1.".
 * With HOST PORT the parent also connects a socket to HOST:PORT before the fork
 * (an accelerated one under ustack). The child writes to, polls and closes its
 * inherited copy and prints what it got: "write ok, poll POLLOUT, close 0",
 * under ustack as on the kernel (the child cannot drive the parent's stack, so
 * its first use has the parent move the connection to the kernel).
 * After the child is gone the parent still uses its copy for a request.
 * Exit 0 on success; the child is bounded by alarm(4).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char greeting[] = "hello from the forked child";

static int connect_to(const char *host, const char *hport) {
	int h = socket(AF_INET, SOCK_STREAM, 0);
	if (h < 0) { perror("socket"); return -1; }
	struct sockaddr_in b = { .sin_family = AF_INET, .sin_port = htons(atoi(hport)) };
	if (inet_pton(AF_INET, host, &b.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); return -1; }
	if (connect(h, (struct sockaddr *)&b, sizeof b) < 0) { perror("connect"); return -1; }
	return h;
}

/* http_get sends a request on h and checks that the reply starts like HTTP. */
static int http_get(int h, const char *who) {
	const char req[] = "GET / HTTP/1.0\r\n\r\n";
	if (write(h, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) { perror(who); return 1; }
	char buf[4096];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(h, buf + got, sizeof buf - 1 - got);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) { perror(who); return 1; }
		if (n == 0) break;
		got += n;
		if (got == sizeof buf - 1) break;
	}
	buf[got] = 0;
	if (strncmp(buf, "HTTP/1.", 7) != 0) { fprintf(stderr, "%s: bad reply %.40s\n", who, buf); return 1; }
	return 0;
}

/* inherited reports what the child gets from a socket the parent opened. */
static void inherited(int inh) {
	const char *w = "ok";
	if (send(inh, "", 0, MSG_NOSIGNAL) < 0)
		w = errno == EBADFD ? "EBADFD" : strerror(errno);
	struct pollfd p = { .fd = inh, .events = POLLOUT };
	const char *pr = "none";
	if (poll(&p, 1, 0) == 1)
		pr = (p.revents & POLLNVAL) ? "POLLNVAL" : (p.revents & POLLOUT) ? "POLLOUT" : "other";
	int c = close(inh);
	printf("inherited socket: write %s, poll %s, close %d\n", w, pr, c);
	fflush(stdout);
}

static int child(int port, const char *host, const char *hport, int inh) {
	alarm(4);
	if (inh >= 0)
		inherited(inh);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0) { perror("child socket"); return 10; }
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("child connect loopback"); return 11; }
	if (write(s, greeting, sizeof greeting) != (ssize_t)sizeof greeting) { perror("child write"); return 12; }
	close(s);
	if (host) {
		int h = connect_to(host, hport);
		if (h < 0) return 13;
		if (http_get(h, "child request")) return 16;
		close(h);
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc != 1 && argc != 3) { fprintf(stderr, "usage: forkchild [HOST PORT]\n"); return 2; }
	int warm = socket(AF_INET, SOCK_STREAM, 0);
	if (warm < 0) { perror("socket"); return 1; }
	close(warm);

	int inh = -1;
	if (argc == 3 && (inh = connect_to(argv[1], argv[2])) < 0)
		return 1;

	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0) { perror("socket"); return 1; }
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t alen = sizeof a;
	if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &alen) < 0) { perror("listen"); return 1; }
	int port = ntohs(a.sin_port);

	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) { perror("fork"); return 1; }
	if (pid == 0) _exit(child(port, argc == 3 ? argv[1] : NULL, argc == 3 ? argv[2] : NULL, inh));

	alarm(5);
	int c = accept(l, NULL, NULL);
	if (c < 0) { perror("accept"); return 3; }
	char buf[64] = {0};
	size_t got = 0;
	for (;;) {
		ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) break;
		got += n;
	}
	int st;
	if (waitpid(pid, &st, 0) < 0) { perror("waitpid"); return 4; }
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "child failed: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
		        WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		return 5;
	}
	if (got != sizeof greeting || memcmp(buf, greeting, sizeof greeting) != 0) {
		fprintf(stderr, "parent: got %zu bytes, want the greeting\n", got);
		return 6;
	}
	if (inh >= 0 && http_get(inh, "parent request on the socket the child closed"))
		return 7;
	printf("forkchild ok\n");
	return 0;
}
