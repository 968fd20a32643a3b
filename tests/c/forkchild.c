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
 * Exit 0 on success; the child is bounded by alarm(4).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char greeting[] = "hello from the forked child";

static int child(int port, const char *host, const char *hport) {
	alarm(4);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0) { perror("child socket"); return 10; }
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("child connect loopback"); return 11; }
	if (write(s, greeting, sizeof greeting) != (ssize_t)sizeof greeting) { perror("child write"); return 12; }
	close(s);
	if (host) {
		int h = socket(AF_INET, SOCK_STREAM, 0);
		if (h < 0) { perror("child socket 2"); return 13; }
		struct sockaddr_in b = { .sin_family = AF_INET, .sin_port = htons(atoi(hport)) };
		if (inet_pton(AF_INET, host, &b.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); return 14; }
		if (connect(h, (struct sockaddr *)&b, sizeof b) < 0) { perror("child connect remote"); return 15; }
		const char req[] = "GET / HTTP/1.0\r\n\r\n";
		if (write(h, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) { perror("child write remote"); return 16; }
		char buf[4096];
		size_t got = 0;
		for (;;) {
			ssize_t n = read(h, buf + got, sizeof buf - 1 - got);
			if (n < 0 && errno == EINTR) continue;
			if (n < 0) { perror("child read remote"); return 17; }
			if (n == 0) break;
			got += n;
			if (got == sizeof buf - 1) break;
		}
		buf[got] = 0;
		if (strncmp(buf, "HTTP/1.", 7) != 0) { fprintf(stderr, "child: bad reply %.40s\n", buf); return 18; }
		close(h);
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc != 1 && argc != 3) { fprintf(stderr, "usage: forkchild [HOST PORT]\n"); return 2; }
	int warm = socket(AF_INET, SOCK_STREAM, 0);
	if (warm < 0) { perror("socket"); return 1; }
	close(warm);

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
	if (pid == 0) _exit(child(port, argc == 3 ? argv[1] : NULL, argc == 3 ? argv[2] : NULL));

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
	printf("forkchild ok\n");
	return 0;
}
