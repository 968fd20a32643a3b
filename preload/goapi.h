/* The entry points of the Go part (preload/golib), found with dlsym once golib.c has loaded it.
 * Every one returns n >= 0, -errno, USTACK_PASS or USTACK_WAIT. The macros keep the call sites
 * reading as plain calls. Keep in step with preload/golib/exports.go. */
#ifndef USTACK_GOAPI_H
#define USTACK_GOAPI_H
#include "ustack.h"
#include <time.h>

struct ustack_goapi {
	long (*init)(struct ustack_shared *); /* first: it starts the Go part */
	long (*socket)(int, int, int); /* fd, domain, type */
	long (*adopt)(int, int, int);
	long (*bind)(int, void *, socklen_t);
	long (*listen)(int, int);
	long (*accept)(int, void *, socklen_t *, int);
	long (*connect)(int, void *, socklen_t);
	long (*connect_wait)(int);
	long (*shutdown)(int, int);
	long (*close)(int);
	long (*exit)(void);
	long (*dup)(int, int);
	long (*getsockname)(int, void *, socklen_t *);
	long (*getpeername)(int, void *, socklen_t *);
	long (*getsockopt)(int, int, int, void *, socklen_t *);
	long (*setsockopt)(int, int, int, void *, socklen_t);
	long (*recvmsg)(int, struct iovec *, int, int, void *, socklen_t *, int *);
	long (*sendmsg)(int, struct iovec *, int, int, void *, socklen_t);
	long (*fcntl)(int, int, long);
	long (*ioctl)(int, unsigned long, void *);
	long (*poll_check)(struct pollfd *, int);
	long (*epoll_ctl)(int, int, int, struct epoll_event *);
	long (*epoll_check)(int, struct epoll_event *, int);
	long (*epoll_close)(int);
	long (*epoll_adopt)(int);
	int (*is_go_thread)(void);
	long (*exec)(void);
	long (*move)(int);
	long (*resched)(void);
};
extern struct ustack_goapi ustack_go;

/* ustack_go_tick lets Go's scheduler see a thread that keeps calling in, every
 * USTACK_RESCHED_MS at most (see ustack_resched in preload/golib/exports.go). The data path's
 * calls go through it: one coarse clock read, a few nanoseconds. */
#define USTACK_RESCHED_MS 5
void ustack_go_tick_slow(long now_ms);
extern __thread long ustack_resched_ms __attribute__((tls_model("initial-exec")));
static inline void ustack_go_tick(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	long now = ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now - ustack_resched_ms >= USTACK_RESCHED_MS)
		ustack_go_tick_slow(now);
}

/* Every call that may queue frames ends with ustack_after (the kick, now or at the end of the
 * batch); the readiness checks are left to the waits that call them (epoll.c, poll.c), and the
 * calls that hand sockets on kick at once. */
#define USTACK_CALL(f, ...) ustack_after(ustack_go.f(__VA_ARGS__))
#define USTACK_CALL_NOW(f, ...) ({ long _k = ustack_go.f(__VA_ARGS__); ustack_kick(); _k; })
#define ustack_socket(...) ustack_go.socket(__VA_ARGS__)
#define ustack_bind(...) USTACK_CALL(bind, __VA_ARGS__)
#define ustack_listen(...) USTACK_CALL(listen, __VA_ARGS__)
#define ustack_accept(...) USTACK_CALL(accept, __VA_ARGS__)
#define ustack_connect(...) USTACK_CALL(connect, __VA_ARGS__)
#define ustack_connect_wait(...) USTACK_CALL(connect_wait, __VA_ARGS__)
#define ustack_shutdown(...) USTACK_CALL(shutdown, __VA_ARGS__)
#define ustack_close(...) USTACK_CALL(close, __VA_ARGS__)
#define ustack_exit() USTACK_CALL_NOW(exit)
#define ustack_dup(...) ustack_go.dup(__VA_ARGS__)
#define ustack_getsockname(...) ustack_go.getsockname(__VA_ARGS__)
#define ustack_getpeername(...) ustack_go.getpeername(__VA_ARGS__)
#define ustack_getsockopt(...) USTACK_CALL(getsockopt, __VA_ARGS__)
#define ustack_setsockopt(...) USTACK_CALL(setsockopt, __VA_ARGS__)
#define ustack_recvmsg(...) (ustack_go_tick(), USTACK_CALL(recvmsg, __VA_ARGS__))
#define ustack_sendmsg(...) (ustack_go_tick(), USTACK_CALL(sendmsg, __VA_ARGS__))
#define ustack_fcntl(...) USTACK_CALL(fcntl, __VA_ARGS__)
#define ustack_ioctl(...) USTACK_CALL(ioctl, __VA_ARGS__)
#define ustack_poll_check(...) (ustack_go_tick(), ustack_go.poll_check(__VA_ARGS__))
#define ustack_epoll_ctl(...) USTACK_CALL(epoll_ctl, __VA_ARGS__)
#define ustack_epoll_check(...) (ustack_go_tick(), ustack_go.epoll_check(__VA_ARGS__))
#define ustack_epoll_close(...) ustack_go.epoll_close(__VA_ARGS__)
#define ustack_epoll_adopt(...) ustack_go.epoll_adopt(__VA_ARGS__)
#define ustack_exec() USTACK_CALL_NOW(exec)
#define ustack_move(...) USTACK_CALL_NOW(move, __VA_ARGS__)

#endif
