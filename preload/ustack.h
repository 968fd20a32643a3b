/* Shared declarations of the interposers (C) and the Go exports.
 *
 * The C side keeps a table indexed by fd that answers "is this fd ours?" without a
 * call into Go, and holds what a blocked thread waits on. Go fills it (shim.FDTable).
 */
#ifndef USTACK_H
#define USTACK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/select.h>
#include <sys/types.h>

#define USTACK_FDMAX 65536

/* Results of the Go exports besides >= 0 and -errno. Keep in step with shim/errno.go. */
#define USTACK_PASS (-100000) /* call the real function on this fd */
#define USTACK_WAIT (-100001) /* would block on a blocking socket: wait, then call again */

enum ustack_kind {
	USTACK_KIND_NONE = 0,
	USTACK_KIND_TCP = 1,
	USTACK_KIND_EPOLL = 2, /* an epoll fd that has accelerated members */
	USTACK_KIND_UDP = 3,
	USTACK_KIND_CAND = 4, /* a TCP or UDP socket made while the Go part did not run here (cand.c) */
};

/* One entry per fd. Go writes kind last when publishing and first when withdrawing. */
struct ustack_fd {
	int32_t kind;
	int32_t extra_fd;    /* listener, UDP: the kernel shadow (kernel connections, datagrams); epoll: the wake epoll fd */
	int32_t rcvtimeo_ms; /* SO_RCVTIMEO, 0 = none */
	int32_t sndtimeo_ms; /* SO_SNDTIMEO, 0 = none */
	int32_t sleepers;    /* epoll: threads asleep in it (the AF_XDP fd is in its wake epoll meanwhile) */
	uint32_t seq;        /* bumped by Go whenever the socket's readiness may have changed */
	int32_t rx_waiters;  /* threads registered to wait until it is readable (wait.c) */
	int32_t tx_waiters;  /* ... until it is writable */
	int32_t xsk_in;      /* epoll: the AF_XDP fd is in its wake epoll */
	int32_t nested;      /* epoll: the set is watched by another epoll set or by poll/select */
	int32_t ready;       /* epoll: Go has members to report (its eventfd is signalled meanwhile) */
	int32_t shadow_seen; /* listener, UDP: a real wait saw its kernel shadow readable since Go looked */
	/* a candidate (USTACK_KIND_CAND): */
	int32_t cand_type;   /* socket(2)'s type argument */
	int32_t cand_pid;    /* the process that made it */
	uint32_t cand_gen;   /* ustack_fork_gen then */
	int32_t cand_dup;    /* another fd refers to it too */
};

/* A thread that waits on accelerated sockets registers in a slot of its own and sleeps on the
 * slot's eventfd: one kernel object per waiting thread, none per socket. Go wakes the slots
 * registered on an fd (ustack_wake_fd) when its readiness changes. */
#define USTACK_MAX_WAITERS 1024
#define USTACK_WAIT_ANY (-2) /* the slot waits on several fds (poll, select) */
struct ustack_waiter {
	int32_t used;
	int32_t efd;
	int32_t fd; /* the fd waited on, USTACK_WAIT_ANY, or -1 */
	int32_t pad;
};
extern struct ustack_waiter ustack_waiters[USTACK_MAX_WAITERS];
struct ustack_waiter *ustack_self_waiter(void);
void ustack_wake_fd(int fd);
void ustack_waiter_done(struct ustack_waiter *w, int woken);

extern struct ustack_fd ustack_fds[USTACK_FDMAX];
static inline uint32_t ustack_seq(int fd) { return __atomic_load_n(&ustack_fds[fd].seq, __ATOMIC_SEQ_CST); }
extern volatile int ustack_xsk_fd;      /* the stack's AF_XDP fd, -1 when no stack runs */
extern int ustack_xsk_waiters;          /* threads sleeping with ustack_xsk_fd in their wait set */
extern int ustack_spin_us;              /* USTACK_SPIN_US: how long to poll before sleeping */
extern volatile int ustack_go_ready;    /* set by Go's init: exports may be called */
extern volatile int ustack_go_off;      /* set by Go's init when acceleration is off for good */
extern int ustack_log_debug;            /* USTACK_LOG=debug */
void ustack_debugf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern volatile int ustack_forked_child;/* we are a fork() child that did not exec: never call Go */
extern char ustack_owner_name[108];     /* where a fork child asks for an inherited socket (fork.c) */
extern int ustack_owner_pid;            /* the process whose stack owns the accelerated sockets */
extern volatile uint32_t ustack_fork_gen; /* forks this process made (shim: FDTable.ForkGen) */
int ustack_child_move(int fd);
/* cand.c */
void ustack_cand_new(int fd, int type);
int ustack_cand_take(int fd, int load);
void ustack_cand_drop(int fd);
void ustack_cand_dup(int oldfd, int newfd);
int ustack_cand_setsockopt(int fd, int level, int name);

/* ustack_take_if_cand: a call that reaches the stack adopts a candidate fd first; load says
 * whether the call may start the Go part to do it. 1 when fd is an accelerated socket now. */
static inline int ustack_take_if_cand(int fd, int load);
static inline int ustack_sock_or_take(int fd, int load);
void ustack_epoll_nested(int epfd);
pid_t __vfork(void); /* glibc's vfork (fork.c jumps to it) */
void ustack_children_setup(void);
int ustack_children_alive(void);

/* data value of the wake epoll fd inside an application's epoll set */
#define USTACK_EPOLL_MAGIC 0x75737461636b7721ULL
/* data value of an accelerated listener's or UDP socket's kernel shadow inside an application's
 * epoll set: the tag in the high 48 bits, the fd in the low 16 (USTACK_FDMAX) */
#define USTACK_SHADOW_TAG 0x75736861646f0000ULL
#define USTACK_SHADOW_MASK 0xffffffffffff0000ULL

/* ustack_shadow_seen tells Go that a real wait found fd's kernel shadow readable: its next look
 * there is worth a system call. */
static inline void ustack_shadow_seen(int fd)
{
	if (fd >= 0 && fd < USTACK_FDMAX)
		__atomic_store_n(&ustack_fds[fd].shadow_seen, 1, __ATOMIC_RELEASE);
}

/* real libc entry points */
struct ustack_real {
	int (*socket)(int, int, int);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*shutdown)(int, int);
	int (*close)(int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*getsockname)(int, struct sockaddr *, socklen_t *);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
	int (*fcntl)(int, int, ...);
	int (*ioctl)(int, unsigned long, ...);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
	int (*epoll_create)(int);
	int (*epoll_create1)(int);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	int (*epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
	int (*close_range)(unsigned int, unsigned int, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
};
extern struct ustack_real ustack_real;
void ustack_resolve(void);

/* ustack_kind is fd's kind in the table (USTACK_KIND_*). In a fork child an inherited accelerated
 * socket keeps its kind: the interposer has it moved to the kernel first (ustack_child_move). */
static inline int ustack_kind(int fd)
{
	if (fd < 0 || fd >= USTACK_FDMAX)
		return USTACK_KIND_NONE;
	return __atomic_load_n(&ustack_fds[fd].kind, __ATOMIC_ACQUIRE);
}

long ustack_now_ms(void);
long ustack_now_us(void);

/* Bracket a sleep whose wait set holds the AF_XDP fd: while one does, the poller leaves the
 * frames to the sleeper. */
static inline void ustack_sleep_begin(void) { __atomic_add_fetch(&ustack_xsk_waiters, 1, __ATOMIC_RELAXED); }
static inline void ustack_sleep_end(void) { __atomic_sub_fetch(&ustack_xsk_waiters, 1, __ATOMIC_RELAXED); }

/* The Go part (build/libustack-go.so, preload/golib) is loaded by golib.c on the first socket
 * that could be accelerated. What it shares with the C front, it reaches through this table,
 * handed to its ustack_init: the Go part links against nothing of the front. */
struct ustack_shared {
	struct ustack_fd *fds;
	volatile int *xsk_fd;
	int *xsk_waiters;
	int *spin_us;
	volatile int *go_off;
	void (*wake_fd)(int fd);
	int (*is_go_thread)(void); /* set by the Go part: is the calling thread one of Go's? */
	char *owner_name;          /* fork.c: where a fork child asks for an inherited socket */
	int *owner_pid;
	volatile uint32_t *fork_gen;
	void (*children_setup)(void);
	int (*children_alive)(void);
	struct ustack_txkick *txkick;
};

/* golib.c: loads the Go part once; 1 when it runs (ustack_go_ready), 0 when it cannot */
int ustack_load_go(void);
void ustack_go_started(void); /* init.c: what a process running the Go part needs at fork and exit */
extern char ustack_golib_path[4096];

/* signal.c: did the handler that interrupted this thread's last wait ask for SA_RESTART? */
void ustack_signal_wait_begin(void);
int ustack_signal_seen(void);
int ustack_wait_interrupted(void);

static inline void ustack_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* ustack_spinning tells a wait loop whether USTACK_SPIN_US says to look again instead of
 * sleeping; *end starts at 0 and holds the end of the spin. While a thread spins it counts as
 * sleeping on the AF_XDP fd (it drives the stack itself); ustack_spin_done ends that. */
static inline int ustack_spinning(long *end)
{
	if (ustack_spin_us <= 0)
		return 0;
	long now = ustack_now_us();
	if (*end == 0) {
		*end = now + ustack_spin_us;
		ustack_sleep_begin();
	}
	if (now < *end) {
		ustack_cpu_relax();
		return 1;
	}
	return 0;
}

static inline void ustack_spin_done(long end)
{
	if (end != 0)
		ustack_sleep_end();
}

/* ustack_sock reports whether fd is an accelerated socket (TCP or UDP). */
static inline int ustack_sock(int fd)
{
	int k = ustack_kind(fd);
	return k == USTACK_KIND_TCP || k == USTACK_KIND_UDP;
}

static inline int ustack_take_if_cand(int fd, int load)
{
	return ustack_kind(fd) == USTACK_KIND_CAND && ustack_cand_take(fd, load);
}

/* ustack_sock_or_take: fd is an accelerated socket, or a candidate taken now (one load of the
 * table for the fds that are neither: every read and write of a file comes here). */
static inline int ustack_sock_or_take(int fd, int load)
{
	int k = ustack_kind(fd);
	if (k == USTACK_KIND_TCP || k == USTACK_KIND_UDP)
		return 1;
	return k == USTACK_KIND_CAND && ustack_cand_take(fd, load);
}

/* TX kicks. In copy mode the sendto that tells the kernel about frames on the TX ring transmits
 * them in the calling thread; it is the dearest system call of the data path. Go queues the
 * frames and sets pending; the front makes the kick after the call into Go: at once for a thread
 * outside an event batch, at the end of the batch (the thread's next epoll_wait, poll, select or
 * sleep) for a thread handling the events a wait returned, so a batch of replies costs one kick.
 * A kick waits for the batch's end only while the poller has promised to look within a
 * millisecond (defer_ok), which bounds the delay for a thread that goes off to other work.
 * Keep in step with shim.TxKick. */
struct ustack_txkick {
	int32_t pending;  /* frames are on the TX ring and the kernel was not told */
	int32_t defer_ok; /* the poller looks (and kicks) within a millisecond */
	uint64_t batched; /* calls in a batch that had a kick to make (read by the poller) */
	uint64_t refused; /* ... that made it at once: defer_ok was 0 */
	uint64_t kicks;   /* kicks made by the front */
	uint64_t busy;    /* ... answered EAGAIN or EBUSY (pending is set again) */
};
extern struct ustack_txkick ustack_txkick;
/* the calling thread is handling what its last wait returned */
extern __thread int ustack_in_batch __attribute__((tls_model("initial-exec")));
void ustack_kick_slow(void);
void ustack_kick_or_defer(void);

/* ustack_kick tells the kernel about the frames Go queued, if there are any. */
static inline void ustack_kick(void)
{
	if (__atomic_load_n(&ustack_txkick.pending, __ATOMIC_RELAXED))
		ustack_kick_slow();
}

/* ustack_after ends a call into Go from the application: its kick waits for the end of the
 * thread's batch where it may. */
static inline long ustack_after(long r)
{
	if (__atomic_load_n(&ustack_txkick.pending, __ATOMIC_RELAXED))
		ustack_kick_or_defer();
	return r;
}

/* ustack_batch_end: the thread is about to wait, or returns no events (kick first). */
static inline void ustack_batch_end(void)
{
	ustack_in_batch = 0;
	ustack_kick();
}

/* ustack_batch_begin: the thread returns events to the application. */
static inline void ustack_batch_begin(void)
{
	ustack_in_batch = 1;
	ustack_after(0);
}

/* helpers shared by the interposer files */
int ustack_wait(int fd, int events, int timeout_ms, const sigset_t *mask, uint32_t seq);
int ustack_ret(long r); /* -errno -> -1 with errno set */
int ustack_poll_impl(struct pollfd *fds, nfds_t nfds, int timeout_ms, const sigset_t *mask);

#define USTACK_ENSURE() do { if (!ustack_real.socket) ustack_resolve(); } while (0)
/* Go may be called: the runtime is up and we are not a fork child. */
#define USTACK_GO_OK() (ustack_go_ready && !ustack_forked_child)

#endif
