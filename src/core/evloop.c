#include "evloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

struct watch {
	int fd;
	evloop_fn fn;
	void *opaque;
	struct watch *next;
};

struct evloop {
	int epfd;
	int stopfd; /* eventfd written by evloop_stop() */
	atomic_bool stop;
	pthread_mutex_t lock; /* guards watches and retired */
	struct watch *watches;
	struct watch *retired; /* removed, freed by the loop thread between batches */
};

static void free_list(struct watch *w)
{
	while (w) {
		struct watch *next = w->next;
		free(w);
		w = next;
	}
}

struct evloop *evloop_new(void)
{
	struct evloop *loop = calloc(1, sizeof(*loop));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!loop)
		return NULL;
	pthread_mutex_init(&loop->lock, NULL);
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ev.data.ptr = NULL;
	if (loop->epfd < 0 || loop->stopfd < 0 || epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->stopfd, &ev) < 0) {
		log_error("cannot create event loop: %s", strerror(errno));
		evloop_free(loop);
		return NULL;
	}
	return loop;
}

void evloop_free(struct evloop *loop)
{
	if (!loop)
		return;
	free_list(loop->watches);
	free_list(loop->retired);
	if (loop->epfd >= 0)
		close(loop->epfd);
	if (loop->stopfd >= 0)
		close(loop->stopfd);
	free(loop);
}

int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_fn fn, void *opaque)
{
	struct watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = events };

	if (!w)
		return -1;
	*w = (struct watch){ fd, fn, opaque, NULL };
	ev.data.ptr = w;
	pthread_mutex_lock(&loop->lock);
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		pthread_mutex_unlock(&loop->lock);
		free(w);
		return -1;
	}
	w->next = loop->watches;
	loop->watches = w;
	pthread_mutex_unlock(&loop->lock);
	return 0;
}

static struct watch *find_watch(struct evloop *loop, int fd)
{
	for (struct watch *w = loop->watches; w; w = w->next)
		if (w->fd == fd)
			return w;
	return NULL;
}

int evloop_modify(struct evloop *loop, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events };
	int rc = -1;

	pthread_mutex_lock(&loop->lock);
	ev.data.ptr = find_watch(loop, fd);
	if (ev.data.ptr)
		rc = epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
	pthread_mutex_unlock(&loop->lock);
	return rc;
}

/*
 * A removed watch is unlinked and its fd dropped from epoll at once, but
 * its memory is kept on the retired list until the loop thread starts its
 * next batch: events already fetched for it in the current batch find
 * fn == NULL and are ignored.
 */
void evloop_del(struct evloop *loop, int fd)
{
	struct watch **pp;

	pthread_mutex_lock(&loop->lock);
	for (pp = &loop->watches; *pp; pp = &(*pp)->next) {
		if ((*pp)->fd == fd) {
			struct watch *w = *pp;
			epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
			*pp = w->next;
			w->fn = NULL;
			w->fd = -1;
			w->next = loop->retired;
			loop->retired = w;
			break;
		}
	}
	pthread_mutex_unlock(&loop->lock);
}

static void free_retired(struct evloop *loop)
{
	struct watch *retired;

	pthread_mutex_lock(&loop->lock);
	retired = loop->retired;
	loop->retired = NULL;
	pthread_mutex_unlock(&loop->lock);
	free_list(retired);
}

int evloop_run(struct evloop *loop)
{
	struct epoll_event events[32];

	while (!atomic_load(&loop->stop)) {
		int n;
		free_retired(loop);
		n = epoll_wait(loop->epfd, events, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("event loop: %s", strerror(errno));
			return -1;
		}
		for (int i = 0; i < n; i++) {
			struct watch *w = events[i].data.ptr;
			evloop_fn fn;
			void *opaque;
			if (!w)
				continue; /* the stop eventfd */
			pthread_mutex_lock(&loop->lock);
			fn = w->fn;
			opaque = w->opaque;
			pthread_mutex_unlock(&loop->lock);
			if (fn)
				fn(opaque, events[i].events);
		}
	}
	return 0;
}

void evloop_stop(struct evloop *loop)
{
	uint64_t one = 1;

	atomic_store(&loop->stop, true);
	if (write(loop->stopfd, &one, sizeof(one)) < 0) {
		/* The counter is already non-zero: the loop will wake anyway. */
	}
}
