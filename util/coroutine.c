/*
 * Coroutines: stacks, switching and the per-thread pool.
 *
 * Every I/O-path operation runs in a coroutine (see util/coroutine.h), so
 * creating and switching must be cheap:
 *   - a coroutine object owns its stack for its whole life and terminated
 *     coroutines go back to a bounded per-thread pool, so creating one is
 *     usually a list pop (no mmap, no makecontext);
 *   - a fresh stack is started once with makecontext/setcontext; after
 *     that every switch is sigsetjmp/siglongjmp without the signal mask,
 *     which makes no system call (swapcontext calls sigprocmask each time);
 *   - the trampoline at the bottom of each stack loops forever running
 *     entry functions, so a pooled coroutine is restarted by a plain jump.
 * Switches are announced to ASan (fiber API) and stacks to valgrind, so
 * both tools follow execution across stacks.
 */
/* Fortified longjmp refuses to jump to another stack. */
#undef _FORTIFY_SOURCE

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <glib.h>

#include "util/aio.h"
#include "util/coroutine.h"
#include "util/coroutine-int.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#define CO_ASAN 1
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CO_VALGRIND 1
#endif
#endif

/* Terminated coroutines kept per thread for reuse; the rest are freed. */
#define COROUTINE_POOL_MAX 64

/* Why a switch happened; the value passed through siglongjmp (never 0). */
typedef enum CoAction {
    CO_ACTION_ENTER = 1,
    CO_ACTION_YIELD,
    CO_ACTION_TERMINATE,
} CoAction;

/*
 * One coroutine and its stack.  Owned by whoever created it until it
 * terminates, then by the pool of the thread it terminated in.  Only the
 * thread currently running (or entering) it touches it, except "sched"
 * (util/coroutine-int.h) and "on_cpu", which are atomic.
 */
struct Coroutine {
    CoroutineEntry *entry;
    void *opaque;
    /* Who entered us and gets control back on yield; NULL when idle. */
    Coroutine *caller;
    /*
     * (atomic) Set while a thread executes on this stack.  It is cleared
     * only once the next coroutine runs, i.e. after the switch away is
     * complete, so a thread entering a coroutine that another thread has
     * just scheduled and is still yielding can wait for the stack.
     */
    int on_cpu;
    AioContext *ctx;
    CoSchedLink sched;
    sigjmp_buf env;
    /* Mapping (guard page + stack); NULL for a thread's leader. */
    void *map;
    size_t map_size;
    /* Usable stack, also reported to ASan on switches into it. */
    void *stack;
    size_t stack_size;
#ifdef CO_ASAN
    void *asan_fake_stack;
#endif
#ifdef CO_VALGRIND
    unsigned valgrind_id;
#endif
    /* Link in the free pool. */
    Coroutine *pool_next;
};

/*
 * Per-thread state.  The leader stands for the thread's own stack: it is
 * "the coroutine" that enters top-level coroutines, but coroutine_self()
 * reports NULL for it.
 */
typedef struct CoThread {
    Coroutine leader;
    Coroutine *current;
    /* Who switched to us last, so ASan can tell us its stack bounds. */
    Coroutine *switch_from;
    Coroutine *pool;
    size_t pool_size;
    uint64_t stacks_allocated;
} CoThread;

static __thread CoThread *co_thread;
static pthread_key_t co_thread_key;
static pthread_once_t co_thread_once = PTHREAD_ONCE_INIT;

static void coroutine_free(Coroutine *co);

void coroutine_panic(const char *what, const char *msg)
{
    fprintf(stderr, "%s: %s\n", what, msg);
    abort();
}

/* Thread exit: release the pooled coroutines and the thread state. */
static void co_thread_destroy(void *opaque)
{
    CoThread *t = opaque;
    Coroutine *co;

    while ((co = t->pool) != NULL) {
        t->pool = co->pool_next;
        coroutine_free(co);
    }
    co_thread = NULL;
    g_free(t);
}

static void co_thread_key_init(void)
{
    if (pthread_key_create(&co_thread_key, co_thread_destroy) != 0) {
        coroutine_panic("coroutine", "cannot create thread key");
    }
}

/*
 * Re-reads this thread's state.  A coroutine can resume in another thread
 * than the one it left, so after a switch the TLS address must not be taken
 * from a register computed before it: hence a real call with a barrier.
 */
#ifdef __clang__
#define CO_NOINLINE __attribute__((noinline))      /* clang never clones */
#else
#define CO_NOINLINE __attribute__((noinline, noclone))
#endif

static CO_NOINLINE CoThread *co_thread_fresh(void)
{
    CoThread *t = co_thread;

    __asm__ volatile("" : : : "memory");
    return t;
}

static CoThread *co_thread_get(void)
{
    if (G_UNLIKELY(co_thread == NULL)) {
        pthread_once(&co_thread_once, co_thread_key_init);
        co_thread = g_new0(CoThread, 1);
        co_thread->current = &co_thread->leader;
        pthread_setspecific(co_thread_key, co_thread);
    }
    return co_thread;
}

/*
 * Runs first thing after every switch into "self": the coroutine we came
 * from is now completely off its stack (see on_cpu), and ASan learns that
 * the switch is complete.  When we came from the thread's own stack, ASan
 * tells us its bounds, which we need for switching back there.
 */
static inline void co_arrived(CoThread *t, Coroutine *self)
{
#ifdef CO_ASAN
    const void *bottom = NULL;
    size_t size = 0;

    __sanitizer_finish_switch_fiber(self->asan_fake_stack, &bottom, &size);
    if (t->switch_from == &t->leader) {
        t->leader.stack = (void *)bottom;
        t->leader.stack_size = size;
    }
#endif
    __atomic_store_n(&t->switch_from->on_cpu, 0, __ATOMIC_RELEASE);
}

/*
 * Switches from "from" to "to".  Returns (in "from", later) the action of
 * whoever switches back.  For CO_ACTION_TERMINATE "from" never resumes, and
 * ASan is told to drop its fake stack.
 */
static CoAction co_switch(CoThread *t, Coroutine *from, Coroutine *to,
                          CoAction action)
{
    int ret;

    t->current = to;
    t->switch_from = from;
    __atomic_store_n(&to->on_cpu, 1, __ATOMIC_RELAXED);
    ret = sigsetjmp(from->env, 0);
    if (ret == 0) {
#ifdef CO_ASAN
        __sanitizer_start_switch_fiber(
            action == CO_ACTION_TERMINATE ? NULL : &from->asan_fake_stack,
            to->stack, to->stack_size);
#endif
        siglongjmp(to->env, action);
    }
    /* Resumed: the thread may differ from the one we left in. */
    co_arrived(co_thread_fresh(), from);
    return ret;
}

/*
 * Bottom of every coroutine stack.  Runs entry functions forever: after
 * each one it switches away with TERMINATE, and the pool re-enters it with
 * a new entry later.
 */
static void G_NORETURN co_trampoline_loop(Coroutine *co)
{
    for (;;) {
        CoThread *t;

        co->entry(co->opaque);
        t = co_thread_fresh();
#ifdef CO_ASAN
        /* Its fake stack dies with this run; a re-entry starts afresh. */
        co->asan_fake_stack = NULL;
#endif
        co_switch(t, co, co->caller, CO_ACTION_TERMINATE);
    }
}

/* makecontext passes only ints: the pointer arrives in two halves. */
static void co_trampoline(int lo, int hi)
{
    uintptr_t p = ((uintptr_t)(unsigned)hi << 32) | (unsigned)lo;
    Coroutine *co = (Coroutine *)p;
    /* The creator left its jump buffer in co->opaque (see co_start). */
    sigjmp_buf *creator = co->opaque;
#ifdef CO_ASAN
    const void *creator_stack = NULL;
    size_t creator_size = 0;

    __sanitizer_finish_switch_fiber(NULL, &creator_stack, &creator_size);
#endif

    if (sigsetjmp(co->env, 0) == 0) {
#ifdef CO_ASAN
        __sanitizer_start_switch_fiber(&co->asan_fake_stack, creator_stack,
                                       creator_size);
#endif
        siglongjmp(*creator, 1);
    }
    /* First real entry, through co_switch(). */
    co_arrived(co_thread_fresh(), co);
    co_trampoline_loop(co);
}

/*
 * Runs the trampoline on co's fresh stack until its first sigsetjmp, so
 * that from then on co can be entered with siglongjmp.  The one
 * setcontext here is the only ucontext switch a stack ever sees.
 */
static void co_start(Coroutine *co)
{
    ucontext_t uc;
    sigjmp_buf creator;
    uintptr_t p = (uintptr_t)co;
#ifdef CO_ASAN
    void *fake = NULL;
#endif

    if (getcontext(&uc) != 0) {
        coroutine_panic("coroutine_create", "getcontext failed");
    }
    uc.uc_link = NULL;
    uc.uc_stack.ss_sp = co->stack;
    uc.uc_stack.ss_size = co->stack_size;
    uc.uc_stack.ss_flags = 0;
    makecontext(&uc, (void (*)(void))co_trampoline, 2,
                (int)(uint32_t)p, (int)(uint32_t)(p >> 32));
    co->opaque = &creator;
    if (sigsetjmp(creator, 0) == 0) {
#ifdef CO_ASAN
        __sanitizer_start_switch_fiber(&fake, co->stack, co->stack_size);
#endif
        /* No way back through uc: the trampoline siglongjmps to creator. */
        setcontext(&uc);
    }
#ifdef CO_ASAN
    /* Back on our own stack via siglongjmp from the trampoline. */
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    co->opaque = NULL;
}

/* Maps a stack with a PROT_NONE guard page below it (stacks grow down). */
static Coroutine *coroutine_alloc(CoThread *t)
{
    Coroutine *co = g_new0(Coroutine, 1);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    co->map_size = COROUTINE_STACK_SIZE + page;
    co->map = mmap(NULL, co->map_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (co->map == MAP_FAILED) {
        coroutine_panic("coroutine_create", "cannot map a coroutine stack");
    }
    if (mprotect(co->map, page, PROT_NONE) != 0) {
        coroutine_panic("coroutine_create", "cannot protect the guard page");
    }
    co->stack = (char *)co->map + page;
    co->stack_size = COROUTINE_STACK_SIZE;
#ifdef CO_VALGRIND
    co->valgrind_id = VALGRIND_STACK_REGISTER(co->stack,
                                              (char *)co->stack + co->stack_size);
#endif
    t->stacks_allocated++;
    co_start(co);
    return co;
}

static void coroutine_free(Coroutine *co)
{
#ifdef CO_VALGRIND
    VALGRIND_STACK_DEREGISTER(co->valgrind_id);
#endif
    munmap(co->map, co->map_size);
    g_free(co);
}

Coroutine *coroutine_create(CoroutineEntry *entry, void *opaque)
{
    CoThread *t = co_thread_get();
    Coroutine *co = t->pool;

    if (co != NULL) {
        t->pool = co->pool_next;
        t->pool_size--;
        co->pool_next = NULL;
    } else {
        co = coroutine_alloc(t);
    }
    co->entry = entry;
    co->opaque = opaque;
    co->caller = NULL;
    co->ctx = NULL;
    return co;
}

/* A terminated coroutine: keep it for reuse unless the pool is full. */
static void coroutine_release(CoThread *t, Coroutine *co)
{
    co->entry = NULL;
    co->opaque = NULL;
    co->ctx = NULL;
    if (t->pool_size < COROUTINE_POOL_MAX) {
        co->pool_next = t->pool;
        t->pool = co;
        t->pool_size++;
    } else {
        coroutine_free(co);
    }
}

/*
 * A coroutine may schedule itself into another context and then yield
 * (to move to another thread).  That thread can try to enter it while it
 * is still switching away; wait for it.  If it is on our own chain it is
 * a genuine re-entry; if it stays busy, the caller broke the rules.
 */
static void co_wait_off_cpu(CoThread *t, Coroutine *co)
{
    Coroutine *c;
    unsigned spins;

    if (G_LIKELY(!__atomic_load_n(&co->on_cpu, __ATOMIC_ACQUIRE))) {
        return;
    }
    for (c = t->current; c != NULL; c = c->caller) {
        if (c == co) {
            coroutine_panic("coroutine_enter",
                            "coroutine re-entered while it is running");
        }
    }
    /* Spin briefly, then yield the CPU, then sleep; give up after ~1 s. */
    for (spins = 0; __atomic_load_n(&co->on_cpu, __ATOMIC_ACQUIRE); spins++) {
        if (spins > 1000) {
            g_usleep(spins > 2000 ? 1000 : 0);
        }
        if (spins > 3000) {
            coroutine_panic("coroutine_enter", "coroutine re-entered while it "
                            "is running in another thread");
        }
    }
}

void coroutine_enter_ctx(Coroutine *co, AioContext *ctx)
{
    CoThread *t = co_thread_get();
    Coroutine *self = t->current;
    CoAction ret;

    co_wait_off_cpu(t, co);
    if (co->caller != NULL) {
        coroutine_panic("coroutine_enter",
                        "coroutine re-entered while it is running");
    }
    if (__atomic_load_n(&co->sched.scheduled, __ATOMIC_ACQUIRE)) {
        coroutine_panic("coroutine_enter",
                        "coroutine entered while it is scheduled");
    }
    if (co->entry == NULL) {
        coroutine_panic("coroutine_enter", "coroutine entered after it ended");
    }
    co->caller = self;
    co->ctx = ctx;
    ret = co_switch(t, self, co, CO_ACTION_ENTER);
    if (ret == CO_ACTION_TERMINATE) {
        co->caller = NULL;
        coroutine_release(co_thread_fresh(), co);
    }
}

void coroutine_enter(Coroutine *co)
{
    coroutine_enter_ctx(co, current_aio_context());
}

void coroutine_enter_if_inactive(Coroutine *co)
{
    if (co->caller == NULL &&
        !__atomic_load_n(&co->sched.scheduled, __ATOMIC_ACQUIRE)) {
        coroutine_enter(co);
    }
}

void coroutine_fn coroutine_yield(void)
{
    CoThread *t = co_thread_get();
    Coroutine *self = t->current;
    Coroutine *to = self->caller;

    if (self == &t->leader) {
        coroutine_panic("coroutine_yield", "called outside coroutine context");
    }
    self->caller = NULL;
    co_switch(t, self, to, CO_ACTION_YIELD);
}

Coroutine *coroutine_self(void)
{
    CoThread *t = co_thread_get();

    return t->current == &t->leader ? NULL : t->current;
}

bool in_coroutine(void)
{
    return coroutine_self() != NULL;
}

bool coroutine_entered(Coroutine *co)
{
    return co->caller != NULL;
}

AioContext *coroutine_get_ctx(Coroutine *co)
{
    return co->ctx;
}

size_t coroutine_pool_size(void)
{
    return co_thread_get()->pool_size;
}

uint64_t coroutine_stacks_allocated(void)
{
    return co_thread_get()->stacks_allocated;
}

CoSchedLink *coroutine_sched_link(Coroutine *co)
{
    return &co->sched;
}

Coroutine *coroutine_from_sched_link(CoSchedLink *link)
{
    return (Coroutine *)((char *)link - offsetof(Coroutine, sched));
}
