/* What the Go part knows of the C front: the shared declarations, and the table it was handed. */
#ifndef USTACK_GOLIB_H
#define USTACK_GOLIB_H
#include "ustack.h"

extern struct ustack_shared *ustack_sh;

static inline void ustack_call_wake(int fd) { ustack_sh->wake_fd(fd); }
static inline void ustack_call_children_setup(void) { ustack_sh->children_setup(); }
static inline int ustack_call_children_alive(void) { return ustack_sh->children_alive(); }

#endif
