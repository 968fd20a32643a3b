/* Interposers for the calls that start another program: what it inherits must work there.
 *
 * A new program image gets the fds without FD_CLOEXEC, and a socket of ours is only a shadow in
 * the kernel until it moves there with its state (shim: moveToKernel). So before an exec, or a
 * spawn, the accelerated sockets the new program would inherit move to the kernel. An exec in the
 * process that owns the stack ends the stack with the image: everything moves, as at exit (the
 * fds with FD_CLOEXEC are then closed by the kernel, which sends their FINs). */
#include "intercept.h"
#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int (*real_execve)(const char *, char *const[], char *const[]);
static int (*real_execv)(const char *, char *const[]);
static int (*real_execvp)(const char *, char *const[]);
static int (*real_execvpe)(const char *, char *const[], char *const[]);
static int (*real_fexecve)(int, char *const[], char *const[]);
static int (*real_posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
			       char *const[], char *const[]);
static int (*real_posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
				char *const[], char *const[]);
static int (*real_system)(const char *);
static FILE *(*real_popen)(const char *, const char *);

/* NEXT resolves one real function on its first use: an exec'd child pays for that one only. */
#define NEXT(name)                                                                          \
	do {                                                                                \
		if (!__atomic_load_n(&real_##name, __ATOMIC_ACQUIRE))                        \
			__atomic_store_n(&real_##name, dlsym(RTLD_NEXT, #name), __ATOMIC_RELEASE); \
	} while (0)

/* inherited reports whether a new program would get fd. */
static int inherited(int fd)
{
	int fl = ustack_real.fcntl(fd, F_GETFD);
	return fl >= 0 && !(fl & FD_CLOEXEC);
}

/* move_inherited moves the accelerated sockets a new program would inherit; whole says the stack
 * ends with this image (an exec in the process that owns it). */
static void move_inherited(int whole)
{
	/* a process that never started the Go part has no accelerated socket: the common case of
	 * a shell starting programs costs two loads */
	if (!__atomic_load_n(&ustack_go_ready, __ATOMIC_ACQUIRE))
		return;
	USTACK_ENSURE();
	if (ustack_forked_child) {
		for (int fd = 0; fd < USTACK_FDMAX; fd++)
			if (ustack_sock(fd) && inherited(fd))
				ustack_child_move(fd);
		return;
	}
	if (!USTACK_GO_OK() || ustack_xsk_fd < 0)
		return;
	if (whole) {
		ustack_exec();
		return;
	}
	for (int fd = 0; fd < USTACK_FDMAX; fd++)
		if (ustack_sock(fd) && inherited(fd))
			ustack_move(fd);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
	move_inherited(1);
	NEXT(execve);
	return real_execve(path, argv, envp);
}

int execv(const char *path, char *const argv[])
{
	move_inherited(1);
	NEXT(execv);
	return real_execv(path, argv);
}

int execvp(const char *file, char *const argv[])
{
	move_inherited(1);
	NEXT(execvp);
	return real_execvp(file, argv);
}

int execvpe(const char *file, char *const argv[], char *const envp[])
{
	move_inherited(1);
	NEXT(execvpe);
	return real_execvpe(file, argv, envp);
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
	move_inherited(1);
	NEXT(fexecve);
	return real_fexecve(fd, argv, envp);
}

/* collect gathers the variadic arguments of the execl family after arg0 (and the envp after the
 * NULL for execle) into argv, as glibc does. */
#define COLLECT(arg0, ap, argv)                                              \
	size_t _n = 1;                                                       \
	va_start(ap, arg0);                                                  \
	while (va_arg(ap, const char *))                                     \
		_n++;                                                        \
	va_end(ap);                                                          \
	char *argv[_n + 1];                                                  \
	argv[0] = (char *)(arg0);                                            \
	va_start(ap, arg0);                                                  \
	for (size_t _i = 1; _i <= _n; _i++)                                  \
		argv[_i] = va_arg(ap, char *);

int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	COLLECT(arg, ap, argv);
	va_end(ap);
	return execv(path, argv);
}

int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	COLLECT(arg, ap, argv);
	va_end(ap);
	return execvp(file, argv);
}

int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	COLLECT(arg, ap, argv);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
		char *const argv[], char *const envp[])
{
	move_inherited(0);
	NEXT(posix_spawn);
	return real_posix_spawn(pid, path, fa, attr, argv, envp);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
		 char *const argv[], char *const envp[])
{
	move_inherited(0);
	NEXT(posix_spawnp);
	return real_posix_spawnp(pid, file, fa, attr, argv, envp);
}

int system(const char *cmd)
{
	if (cmd)
		move_inherited(0);
	NEXT(system);
	return real_system(cmd);
}

FILE *popen(const char *cmd, const char *mode)
{
	move_inherited(0);
	NEXT(popen);
	return real_popen(cmd, mode);
}
