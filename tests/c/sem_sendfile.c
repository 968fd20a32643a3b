/*
 * sem_sendfile: sendfile from a regular file to a connected TCP socket, with
 * an explicit offset and with the file position. See sem.h.
 */
#include "sem.h"
#include <sys/sendfile.h>

#define FSIZE (1 << 20)
static unsigned char fdata[FSIZE];

static int make_file(void)
{
	char path[] = "/tmp/sem_sendfile.XXXXXX";
	int f = mkstemp(path);
	if (f < 0)
		return -1;
	unlink(path);
	for (size_t i = 0; i < FSIZE; i++)
		fdata[i] = (unsigned char)((i * 7 + (i >> 9)) & 0xff);
	if (write(f, fdata, FSIZE) != FSIZE)
		return -1;
	return f;
}

/* sink_check closes our side and reads the sink's "N HASH" line. */
static int sink_check(int fd, size_t off, size_t n)
{
	if (shutdown(fd, SHUT_WR) < 0)
		return -1;
	char line[64], want[64];
	read_line(fd, line, sizeof line, 5000);
	snprintf(want, sizeof want, "%zu %08x", n, fnv(FNV_INIT, fdata + off, n));
	if (strcmp(line, want) != 0) {
		failf("the peer received \"%s\", want \"%s\" (bytes, FNV-1a)", line, want);
		return -1;
	}
	return 0;
}

static void with_offset(void)
{
	int f = make_file();
	EXPECT(f >= 0, "temporary file: %s", E);
	EXPECT(lseek(f, 0, SEEK_SET) == 0, "lseek: %s", E);
	int fd = peer("sink");
	EXPECT(fd >= 0, "connect: %s", E);
	off_t off = 1000;
	size_t left = FSIZE - 1000;
	while (left > 0) {
		ssize_t r = sendfile(fd, f, &off, left);
		EXPECT(r > 0, "sendfile: %zd %s with %zu left", r, r < 0 ? E : "", left);
		left -= r;
	}
	EXPECT(off == FSIZE, "offset %ld after sendfile, want %d", (long)off, FSIZE);
	EXPECT(lseek(f, 0, SEEK_CUR) == 0, "the file position moved to %ld; sendfile with an offset must not move it", (long)lseek(f, 0, SEEK_CUR));
	if (sink_check(fd, 1000, FSIZE - 1000) < 0)
		return;
	close(fd);
	close(f);
}

static void with_position(void)
{
	int f = make_file();
	EXPECT(f >= 0, "temporary file: %s", E);
	EXPECT(lseek(f, 4096, SEEK_SET) == 4096, "lseek: %s", E);
	int fd = peer("sink");
	EXPECT(fd >= 0, "connect: %s", E);
	EXPECT(send(fd, fdata, 4096, 0) == 4096, "send: %s", E);
	size_t left = FSIZE - 4096;
	while (left > 0) {
		ssize_t r = sendfile(fd, f, NULL, left);
		EXPECT(r > 0, "sendfile: %zd %s with %zu left", r, r < 0 ? E : "", left);
		left -= r;
	}
	EXPECT(lseek(f, 0, SEEK_CUR) == FSIZE, "file position %ld after sendfile(NULL offset), want %d", (long)lseek(f, 0, SEEK_CUR), FSIZE);
	if (sink_check(fd, 0, FSIZE) < 0)
		return;
	close(fd);
	close(f);
}

static void nonblocking(void)
{
	int f = make_file();
	EXPECT(f >= 0, "temporary file: %s", E);
	int fd = peer("sink");
	EXPECT(fd >= 0, "connect: %s", E);
	EXPECT(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "F_SETFL: %s", E);
	off_t off = 0;
	long end = now_ms() + 8000;
	while (off < FSIZE && now_ms() < end) {
		ssize_t r = sendfile(fd, f, &off, FSIZE - off);
		if (r < 0 && errno == EAGAIN) {
			wait_fd(fd, POLLOUT, 1000);
			continue;
		}
		EXPECT(r > 0, "non-blocking sendfile: %zd %s", r, r < 0 ? E : "");
	}
	EXPECT(off == FSIZE, "sent %ld of %d bytes in 8 s", (long)off, FSIZE);
	EXPECT(fcntl(fd, F_SETFL, 0) == 0, "F_SETFL: %s", E);
	if (sink_check(fd, 0, FSIZE) < 0)
		return;
	close(fd);
	close(f);
}

static void after_shutdown_epipe(void)
{
	int f = make_file();
	EXPECT(f >= 0, "temporary file: %s", E);
	int fd = peer("sink");
	EXPECT(fd >= 0, "connect: %s", E);
	EXPECT(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", E);
	on_signal(SIGPIPE, 0);
	sig_count = 0;
	off_t off = 0;
	ssize_t r = sendfile(fd, f, &off, 100);
	EXPECT(r < 0 && errno == EPIPE, "sendfile after SHUT_WR: %zd %s, want EPIPE", r, r < 0 ? E : "");
	EXPECT(sig_count == 1, "SIGPIPE delivered %d times, want 1", (int)sig_count);
	close(fd);
	close(f);
}

static const struct check checks[] = {
	{ "sendfile_offset_1mb", with_offset, 0 },
	{ "sendfile_file_position_after_send", with_position, 0 },
	{ "sendfile_nonblocking_eagain_pollout", nonblocking, 0 },
	{ "sendfile_after_shut_wr_epipe_sigpipe", after_shutdown_epipe, 0 },
};
SEM_MAIN(checks)
