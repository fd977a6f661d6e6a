/* Unit tests for aggregator/loop_call.c: calls run on a real libuv loop in its own thread,
 * timeouts, the bounded queue, close, calls from the loop thread itself, bad configuration. */
#include "loop_call.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define MS INT64_C(1000000)

/* A loop running in its own thread, with the hand-off created there. */
typedef struct loop_thread {
    uv_loop_t loop;
    sn_loop_call *lc;
    sn_loop_call_config cfg;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
    int create_rc;
} loop_thread;

static void *loop_main(void *arg)
{
    loop_thread *t = arg;
    ck_assert_int_eq(uv_loop_init(&t->loop), 0);
    char err[128];
    int rc = sn_loop_call_create(&t->loop, &t->cfg, &t->lc, err, sizeof err);
    pthread_mutex_lock(&t->mu);
    t->create_rc = rc;
    t->ready = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (rc == 0)
        uv_run(&t->loop, UV_RUN_DEFAULT); /* until the hand-off is closed */
    return NULL;
}

static void start_loop(loop_thread *t, size_t max_queue, int64_t timeout_ns)
{
    memset(t, 0, sizeof *t);
    t->cfg.max_queue = max_queue;
    t->cfg.timeout_ns = timeout_ns;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    ck_assert_int_eq(pthread_create(&t->tid, NULL, loop_main, t), 0);
    pthread_mutex_lock(&t->mu);
    while (!t->ready)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    ck_assert_int_eq(t->create_rc, 0);
}

static void close_fn(void *arg)
{
    sn_loop_call_close(arg);
}

/* Closes the hand-off from the loop (which ends uv_run), joins and frees everything. */
static void stop_loop(loop_thread *t)
{
    ck_assert_int_eq(sn_loop_call_run(t->lc, close_fn, t->lc), 0);
    pthread_join(t->tid, NULL);
    ck_assert_int_eq(uv_loop_close(&t->loop), 0);
    sn_loop_call_destroy(t->lc);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
}

/* ---- a call that records the thread it ran on */

typedef struct probe {
    pthread_t ran_on;
    int runs;
} probe;

static void probe_fn(void *arg)
{
    probe *p = arg;
    p->ran_on = pthread_self();
    p->runs++;
}

START_TEST(runs_on_the_loop_thread_and_waits)
{
    loop_thread t;
    start_loop(&t, 0, 0);
    probe p = {0};
    ck_assert_int_eq(sn_loop_call_run(t.lc, probe_fn, &p), 0);
    ck_assert_int_eq(p.runs, 1); /* it has run by the time the call returns */
    ck_assert(pthread_equal(p.ran_on, t.tid));
    ck_assert(!pthread_equal(p.ran_on, pthread_self()));
    sn_loop_call_stats st;
    sn_loop_call_stats_get(t.lc, &st);
    ck_assert_uint_eq(st.calls, 1);
    ck_assert_uint_eq(st.refused, 0);
    ck_assert_uint_eq(st.timed_out, 0);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_int_eq(sn_loop_call_run(t.lc, NULL, NULL), -EINVAL);
    stop_loop(&t);
}
END_TEST

/* ---- many threads at once */

typedef struct shared_count {
    loop_thread *t;
    long total; /* only touched on the loop thread */
    atomic_int failures;
} shared_count;

static void add_one(void *arg)
{
    shared_count *s = arg;
    if (!pthread_equal(pthread_self(), s->t->tid))
        atomic_fetch_add(&s->failures, 1);
    s->total++;
}

static void *hammer(void *arg)
{
    shared_count *s = arg;
    for (int i = 0; i < 200; i++) {
        if (sn_loop_call_run(s->t->lc, add_one, s) != 0)
            atomic_fetch_add(&s->failures, 1);
    }
    return NULL;
}

START_TEST(many_threads_every_call_runs_once)
{
    loop_thread t;
    start_loop(&t, 64, 5000 * MS);
    shared_count s = {.t = &t, .total = 0};
    atomic_init(&s.failures, 0);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &s), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&s.failures), 0);
    ck_assert_int_eq(s.total, 8 * 200);
    sn_loop_call_stats st;
    sn_loop_call_stats_get(t.lc, &st);
    ck_assert_uint_eq(st.calls, 8 * 200);
    stop_loop(&t);
}
END_TEST

/* ---- a gate that holds the loop busy */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered;
    bool open;
} gate;

static void gate_init(gate *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

/* Runs on the loop: blocks it until the gate opens. */
static void gate_fn(void *arg)
{
    gate *g = arg;
    pthread_mutex_lock(&g->mu);
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_entered(gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

typedef struct blocked_call {
    loop_thread *t;
    sn_loop_fn fn;
    void *arg;
    int rc;
    pthread_t tid;
} blocked_call;

static void *call_thread(void *arg)
{
    blocked_call *b = arg;
    b->rc = sn_loop_call_run(b->t->lc, b->fn, b->arg);
    return NULL;
}

static void spawn(blocked_call *b, loop_thread *t, sn_loop_fn fn, void *arg)
{
    b->t = t;
    b->fn = fn;
    b->arg = arg;
    b->rc = 1;
    ck_assert_int_eq(pthread_create(&b->tid, NULL, call_thread, b), 0);
}

/* Waits until `n` calls are queued. */
static void wait_queued(loop_thread *t, size_t n)
{
    for (int i = 0; i < 5000; i++) {
        sn_loop_call_stats st;
        sn_loop_call_stats_get(t->lc, &st);
        if (st.queued == n)
            return;
        usleep(1000);
    }
    ck_abort_msg("never saw %zu queued calls", n);
}

START_TEST(a_busy_loop_times_out_and_the_call_never_runs)
{
    loop_thread t;
    start_loop(&t, 8, 100 * MS);
    gate g;
    gate_init(&g);
    blocked_call holder;
    spawn(&holder, &t, gate_fn, &g);
    gate_wait_entered(&g);

    probe p = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    ck_assert_int_eq(sn_loop_call_run(t.lc, probe_fn, &p), -ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double waited = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    ck_assert_msg(waited >= 0.09 && waited < 2.0, "waited %.3f s", waited);

    sn_loop_call_stats st;
    sn_loop_call_stats_get(t.lc, &st);
    ck_assert_uint_eq(st.timed_out, 1);
    ck_assert_uint_eq(st.queued, 0); /* taken back */

    gate_open(&g);
    pthread_join(holder.tid, NULL);
    ck_assert_int_eq(holder.rc, 0); /* the call already running was waited for */
    /* The timed-out call never runs, even once the loop is free again. */
    probe q = {0};
    ck_assert_int_eq(sn_loop_call_run(t.lc, probe_fn, &q), 0);
    ck_assert_int_eq(q.runs, 1);
    ck_assert_int_eq(p.runs, 0);
    stop_loop(&t);
}
END_TEST

START_TEST(a_full_queue_is_refused_at_once)
{
    loop_thread t;
    start_loop(&t, 2, 10000 * MS);
    gate g;
    gate_init(&g);
    blocked_call holder;
    spawn(&holder, &t, gate_fn, &g);
    gate_wait_entered(&g);

    probe p1 = {0}, p2 = {0}, p3 = {0};
    blocked_call c1, c2;
    spawn(&c1, &t, probe_fn, &p1);
    wait_queued(&t, 1);
    spawn(&c2, &t, probe_fn, &p2);
    wait_queued(&t, 2);
    ck_assert_int_eq(sn_loop_call_run(t.lc, probe_fn, &p3), -EAGAIN);
    ck_assert_int_eq(p3.runs, 0);
    sn_loop_call_stats st;
    sn_loop_call_stats_get(t.lc, &st);
    ck_assert_uint_eq(st.refused, 1);

    gate_open(&g);
    pthread_join(holder.tid, NULL);
    pthread_join(c1.tid, NULL);
    pthread_join(c2.tid, NULL);
    ck_assert_int_eq(c1.rc, 0);
    ck_assert_int_eq(c2.rc, 0);
    ck_assert_int_eq(p1.runs, 1);
    ck_assert_int_eq(p2.runs, 1);
    stop_loop(&t);
}
END_TEST

/* Runs on the loop: closes the hand-off while calls are queued behind the gate. */
typedef struct gate_then_close {
    gate *g;
    sn_loop_call *lc;
} gate_then_close;

static void gate_close_fn(void *arg)
{
    gate_then_close *x = arg;
    gate_fn(x->g);
    sn_loop_call_close(x->lc);
}

START_TEST(close_fails_queued_and_later_calls)
{
    loop_thread t;
    start_loop(&t, 8, 10000 * MS);
    gate g;
    gate_init(&g);
    gate_then_close x = {&g, t.lc};
    blocked_call holder;
    spawn(&holder, &t, gate_close_fn, &x);
    gate_wait_entered(&g);
    probe p = {0};
    blocked_call c;
    spawn(&c, &t, probe_fn, &p);
    wait_queued(&t, 1);

    gate_open(&g); /* the loop closes with c still queued */
    pthread_join(holder.tid, NULL);
    pthread_join(c.tid, NULL);
    ck_assert_int_eq(holder.rc, 0);
    ck_assert_int_eq(c.rc, -ESHUTDOWN);
    ck_assert_int_eq(p.runs, 0);
    ck_assert_int_eq(sn_loop_call_run(t.lc, probe_fn, &p), -ESHUTDOWN);
    ck_assert_int_eq(p.runs, 0);

    pthread_join(t.tid, NULL); /* uv_run returned: the handle is closed */
    ck_assert_int_eq(uv_loop_close(&t.loop), 0);
    sn_loop_call_close(t.lc); /* a second close is a no-op */
    sn_loop_call_destroy(t.lc);
}
END_TEST

/* ---- from the loop thread itself */

typedef struct nested {
    sn_loop_call *lc;
    probe inner;
    int rc;
} nested;

static void nested_fn(void *arg)
{
    nested *n = arg;
    n->rc = sn_loop_call_run(n->lc, probe_fn, &n->inner);
}

START_TEST(a_call_from_the_loop_runs_directly)
{
    loop_thread t;
    start_loop(&t, 1, 1000 * MS);
    nested n = {.lc = t.lc, .rc = 1};
    ck_assert_int_eq(sn_loop_call_run(t.lc, nested_fn, &n), 0);
    ck_assert_int_eq(n.rc, 0);
    ck_assert_int_eq(n.inner.runs, 1);
    ck_assert(pthread_equal(n.inner.ran_on, t.tid));
    stop_loop(&t);
}
END_TEST

START_TEST(bad_configuration)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    sn_loop_call *lc = (sn_loop_call *)&lc;
    char err[128] = "";
    sn_loop_call_config cfg = {.max_queue = SN_LOOP_CALL_QUEUE_LIMIT + 1};
    ck_assert_int_eq(sn_loop_call_create(&loop, &cfg, &lc, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(lc);
    ck_assert_ptr_nonnull(strstr(err, "max_queue"));
    cfg = (sn_loop_call_config){.timeout_ns = -1};
    ck_assert_int_eq(sn_loop_call_create(&loop, &cfg, &lc, err, sizeof err), -EINVAL);
    ck_assert_int_eq(sn_loop_call_create(NULL, NULL, &lc, NULL, 0), -EINVAL);
    /* Defaults, then a clean close without the loop ever running a call. */
    ck_assert_int_eq(sn_loop_call_create(&loop, NULL, &lc, err, sizeof err), 0);
    sn_loop_call_close(lc);
    uv_run(&loop, UV_RUN_DEFAULT);
    sn_loop_call_destroy(lc);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    sn_loop_call_close(NULL);
    sn_loop_call_destroy(NULL);
}
END_TEST

static Suite *loop_call_suite(void)
{
    Suite *s = suite_create("loop_call");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, runs_on_the_loop_thread_and_waits);
    tcase_add_test(tc, many_threads_every_call_runs_once);
    tcase_add_test(tc, a_busy_loop_times_out_and_the_call_never_runs);
    tcase_add_test(tc, a_full_queue_is_refused_at_once);
    tcase_add_test(tc, close_fails_queued_and_later_calls);
    tcase_add_test(tc, a_call_from_the_loop_runs_directly);
    tcase_add_test(tc, bad_configuration);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loop_call_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
