/*
 * loop_call.c -- run a function on the libuv loop thread and wait for it (see loop_call.h).
 *
 * Each call is a node on the caller's stack, linked into a FIFO guarded by `mu`. A node moves
 * QUEUED -> TAKEN (the loop detached the whole queue) -> DONE (fn returned), or QUEUED ->
 * unlinked by its caller at the deadline, or QUEUED/TAKEN-never -> FAILED by close. The caller
 * owns the node; it returns only once the node is DONE, FAILED or unlinked, so the loop never
 * touches a node after its caller is gone.
 */
#include "loop_call.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_SEC INT64_C(1000000000)

typedef enum call_state { CALL_QUEUED = 0, CALL_TAKEN, CALL_DONE, CALL_FAILED } call_state;

typedef struct call_node {
    sn_loop_fn fn;
    void *arg;
    call_state state;
    struct call_node *next;
} call_node;

struct sn_loop_call {
    uv_async_t wake;
    pthread_t loop_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    call_node *head, *tail;
    size_t len;
    size_t max_queue;
    int64_t timeout_ns;
    bool closed;        /* no more calls */
    bool handle_closed; /* the async handle's close callback ran */
    sn_loop_call_stats stats;
};

/* Loop thread: detaches the queue, then runs each call and wakes its caller. */
static void on_wake(uv_async_t *h)
{
    sn_loop_call *lc = h->data;
    pthread_mutex_lock(&lc->mu);
    call_node *n = lc->head;
    lc->head = lc->tail = NULL;
    lc->len = 0;
    for (call_node *x = n; x != NULL; x = x->next)
        x->state = CALL_TAKEN;
    pthread_mutex_unlock(&lc->mu);

    while (n != NULL) {
        call_node *next = n->next; /* n belongs to its caller again once DONE */
        n->fn(n->arg);
        pthread_mutex_lock(&lc->mu);
        n->state = CALL_DONE;
        lc->stats.calls++;
        pthread_cond_broadcast(&lc->cv);
        pthread_mutex_unlock(&lc->mu);
        n = next;
    }
}

int sn_loop_call_create(uv_loop_t *loop, const sn_loop_call_config *cfg, sn_loop_call **out,
                        char *err, size_t errlen)
{
    size_t max_queue = cfg && cfg->max_queue ? cfg->max_queue : SN_LOOP_CALL_DEFAULT_QUEUE;
    int64_t timeout = cfg && cfg->timeout_ns ? cfg->timeout_ns : SN_LOOP_CALL_DEFAULT_TIMEOUT;
    *out = NULL;
    if (loop == NULL || max_queue > SN_LOOP_CALL_QUEUE_LIMIT || timeout < 0) {
        snprintf(err, err ? errlen : 0, "loop_call: max_queue must be 1..%u, timeout >= 0",
                 SN_LOOP_CALL_QUEUE_LIMIT);
        return -EINVAL;
    }
    sn_loop_call *lc = calloc(1, sizeof *lc);
    if (lc == NULL) {
        snprintf(err, err ? errlen : 0, "loop_call: out of memory");
        return -ENOMEM;
    }
    lc->max_queue = max_queue;
    lc->timeout_ns = timeout;
    lc->loop_thread = pthread_self();
    int rc = pthread_mutex_init(&lc->mu, NULL);
    if (rc != 0)
        goto out_free_lc;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&lc->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        goto out_destroy_mu;
    rc = uv_async_init(loop, &lc->wake, on_wake);
    if (rc != 0) {
        snprintf(err, err ? errlen : 0, "loop_call: %s", uv_strerror(rc));
        pthread_cond_destroy(&lc->cv);
        pthread_mutex_destroy(&lc->mu);
        free(lc);
        return rc;
    }
    lc->wake.data = lc;
    *out = lc;
    return 0;

out_destroy_mu:
    pthread_mutex_destroy(&lc->mu);
out_free_lc:
    free(lc);
    snprintf(err, err ? errlen : 0, "loop_call: %s", strerror(rc));
    return -rc;
}

/* Unlinks node n (still queued) from the FIFO. Called with mu held. */
static void unlink_node(sn_loop_call *lc, call_node *n)
{
    call_node **link = &lc->head, *prev = NULL;
    while (*link != NULL && *link != n) {
        prev = *link;
        link = &(*link)->next;
    }
    if (*link == NULL)
        return;
    *link = n->next;
    if (lc->tail == n)
        lc->tail = prev;
    lc->len--;
}

int sn_loop_call_run(sn_loop_call *lc, sn_loop_fn fn, void *arg)
{
    if (lc == NULL || fn == NULL)
        return -EINVAL;
    if (pthread_equal(pthread_self(), lc->loop_thread)) {
        if (lc->closed)
            return -ESHUTDOWN;
        fn(arg); /* waiting for ourselves would deadlock */
        pthread_mutex_lock(&lc->mu);
        lc->stats.calls++;
        pthread_mutex_unlock(&lc->mu);
        return 0;
    }
    call_node n = {.fn = fn, .arg = arg, .state = CALL_QUEUED, .next = NULL};

    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    int64_t ns = until.tv_nsec + lc->timeout_ns % NS_PER_SEC;
    until.tv_sec += (time_t)(lc->timeout_ns / NS_PER_SEC + ns / NS_PER_SEC);
    until.tv_nsec = (long)(ns % NS_PER_SEC);

    pthread_mutex_lock(&lc->mu);
    if (lc->closed) {
        pthread_mutex_unlock(&lc->mu);
        return -ESHUTDOWN;
    }
    if (lc->len >= lc->max_queue) {
        lc->stats.refused++;
        pthread_mutex_unlock(&lc->mu);
        return -EAGAIN;
    }
    bool was_empty = lc->head == NULL;
    if (lc->tail != NULL)
        lc->tail->next = &n;
    else
        lc->head = &n;
    lc->tail = &n;
    lc->len++;
    /* Sent under the lock so close (which takes it) cannot close the handle in between; when
     * the queue was not empty a wake-up is already pending and drains it all. */
    if (was_empty)
        uv_async_send(&lc->wake);

    int rc = 0;
    while (n.state != CALL_DONE) {
        if (n.state == CALL_FAILED) {
            rc = -ESHUTDOWN;
            break;
        }
        if (n.state == CALL_TAKEN) {
            pthread_cond_wait(&lc->cv, &lc->mu); /* running: always wait for it */
            continue;
        }
        if (pthread_cond_timedwait(&lc->cv, &lc->mu, &until) == ETIMEDOUT &&
            n.state == CALL_QUEUED) {
            unlink_node(lc, &n); /* the loop has not seen it and never will */
            lc->stats.timed_out++;
            rc = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&lc->mu);
    return rc;
}

/* libuv close callback of the async handle. */
static void on_closed(uv_handle_t *h)
{
    sn_loop_call *lc = h->data;
    lc->handle_closed = true;
}

void sn_loop_call_close(sn_loop_call *lc)
{
    if (lc == NULL)
        return;
    pthread_mutex_lock(&lc->mu);
    if (lc->closed) {
        pthread_mutex_unlock(&lc->mu);
        return;
    }
    lc->closed = true;
    for (call_node *x = lc->head; x != NULL; x = x->next)
        x->state = CALL_FAILED;
    lc->head = lc->tail = NULL;
    lc->len = 0;
    pthread_cond_broadcast(&lc->cv);
    pthread_mutex_unlock(&lc->mu);
    uv_close((uv_handle_t *)&lc->wake, on_closed);
}

void sn_loop_call_destroy(sn_loop_call *lc)
{
    if (lc == NULL)
        return;
    assert(lc->closed && lc->handle_closed);
    pthread_cond_destroy(&lc->cv);
    pthread_mutex_destroy(&lc->mu);
    free(lc);
}

void sn_loop_call_stats_get(sn_loop_call *lc, sn_loop_call_stats *out)
{
    pthread_mutex_lock(&lc->mu);
    *out = lc->stats;
    out->queued = lc->len;
    pthread_mutex_unlock(&lc->mu);
}
