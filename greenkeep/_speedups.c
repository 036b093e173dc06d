/*
 * greenkeep._speedups: the steps of the restart path that pure Python cannot make cheap: a
 * worker posting its crash (post_crash) and the pool's manager restarting a run of crashes
 * (straight_run). Optional: when it is not built (no C compiler at install time),
 * greenkeep runs the same steps in Python (greenkeep._worker, greenkeep._pool_run), with
 * the same result; tests/test_speedups.py checks that the two agree.
 *
 * same_site(exc, code, lasti, type) -> bool
 *     Whether the exception instance *exc* is of exactly *type* and its innermost traceback
 *     entry is instruction offset *lasti* (as ``tb_lasti``) of the code object *code*: the
 *     crash site greenkeep keys a storm by (greenkeep._storm.crash_site). False for an
 *     exception without a traceback. Never raises for an exception instance; raises
 *     TypeError for anything else, or a wrong number of arguments.
 *
 * In Python the same check reads six attributes of traceback and frame objects, none of
 * which the interpreter specializes (about 200 ns a crash in a crash loop of 10,000
 * workers); here it is a few pointer reads. post_crash makes it, then posts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>

#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif
#ifndef Py_READONLY
#define Py_READONLY READONLY
#endif

/* Whether *exc* (an exception instance) is of exactly *type* and was raised at *lasti* of
 * *code* (its innermost traceback entry): 1 or 0, never an error. */
static int
matches(PyObject *exc, PyObject *code, PyObject *lasti, PyObject *type)
{
    if ((PyObject *)Py_TYPE(exc) != type) {
        return 0;
    }
    PyObject *tb = ((PyBaseExceptionObject *)exc)->traceback;
    if (tb == NULL || !PyTraceBack_Check(tb)) {
        return 0;
    }
    PyTracebackObject *inner = (PyTracebackObject *)tb;
    while (inner->tb_next != NULL) {
        inner = inner->tb_next;
    }
    if (!PyLong_CheckExact(lasti)) {
        return 0;
    }
    int overflow = 0;
    long offset = PyLong_AsLongAndOverflow(lasti, &overflow);
    if (overflow || offset != inner->tb_lasti) {
        return 0;
    }
    PyCodeObject *raised_in = PyFrame_GetCode(inner->tb_frame);
    int same = (PyObject *)raised_in == code;
    Py_DECREF(raised_in);
    return same;
}

static PyObject *
same_site(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "same_site() takes 4 arguments (exc, code, lasti, type), %zd given", nargs);
        return NULL;
    }
    if (!PyExceptionInstance_Check(args[0])) {
        PyErr_Format(PyExc_TypeError,
                     "same_site() argument 'exc' must be an exception instance, not %.200s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    return PyBool_FromLong(matches(args[0], args[1], args[2], args[3]));
}

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static PyObject *one;

static inline void
set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject *old = SLOT(obj, offset);
    Py_INCREF(value);
    SLOT(obj, offset) = value;
    Py_XDECREF(old);
}

static int
slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *offset)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL) {
        return -1;
    }
    int ok = Py_TYPE(descr) == &PyMemberDescr_Type;
    if (ok) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        ok = member->type == Py_T_OBJECT_EX && !(member->flags & Py_READONLY) &&
             member->offset >= (Py_ssize_t)sizeof(PyObject) &&
             member->offset + (Py_ssize_t)sizeof(PyObject *) <= type->tp_basicsize;
        *offset = member->offset;
    }
    Py_DECREF(descr);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "configure(): %.200s.%s is not a writable object slot",
                     type->tp_name, name);
        return -1;
    }
    return 0;
}

static int
check_classes(const char *function, PyObject *const *args, int count)
{
    for (int i = 0; i < count; i++) {
        if (!PyType_Check(args[i])) {
            PyErr_Format(PyExc_TypeError, "%s() argument %d must be a class, not %.200s",
                         function, i + 1, Py_TYPE(args[i])->tp_name);
            return -1;
        }
    }
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL) {
        return -1;
    }
    return 0;
}

/*
 * configure_worker(channel_type, runnable_type, storm_type, greenlet_type) -> None
 *     Tell post_crash and start_run the classes they work on (greenkeep._worker calls it
 *     once, at import): the run's channel, the child records workers run (any subclass),
 *     the storm, the worker greenlet. They read their __slots__ directly, at the offsets
 *     their slot descriptors give (each checked to be a writable object slot; TypeError
 *     otherwise).
 *
 * post_crash(channel, child, incarnation, exc) -> bool
 *     A worker's crash posted the cheap way, if it can be: with damping off
 *     (channel.damped is None) *exc* in full; else, if *exc* is the same crash as the one
 *     child.site records (same exact type, code object and instruction offset: see
 *     same_site) and that storm has not ended and holds its period's sample, the storm,
 *     counted in (storm.count one more). It posts ``(child, incarnation, what)`` with
 *     channel.post and returns True. Otherwise it does nothing and returns False: the
 *     worker's Python path posts the crash (greenkeep._worker.run_worker). Raises only
 *     what the post raises, if memory runs out, or before configure_worker.
 */

typedef struct {
    PyTypeObject *channel_type;
    PyTypeObject *runnable_type;
    PyTypeObject *storm_type;
    PyTypeObject *greenlet_type;
    Py_ssize_t damped, post, halted; /* channel slots */
    Py_ssize_t site, ran;            /* runnable slots */
    Py_ssize_t ended, sample, count; /* storm slots */
    Py_ssize_t child, incarnation;   /* greenlet slots */
} WorkerLayout;

static WorkerLayout worker_layout; /* all NULL and 0 until configure_worker */
static PyTypeObject *runnable_seen;

static PyObject *
configure_worker(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "configure_worker() takes 4 arguments (channel_type, runnable_type, "
                     "storm_type, greenlet_type), %zd given",
                     nargs);
        return NULL;
    }
    if (check_classes("configure_worker", args, 4) < 0) {
        return NULL;
    }
    WorkerLayout new = {0};
    new.channel_type = (PyTypeObject *)args[0];
    new.runnable_type = (PyTypeObject *)args[1];
    new.storm_type = (PyTypeObject *)args[2];
    new.greenlet_type = (PyTypeObject *)args[3];
    if (slot_offset(new.channel_type, "damped", &new.damped) < 0 ||
        slot_offset(new.channel_type, "post", &new.post) < 0 ||
        slot_offset(new.channel_type, "halted", &new.halted) < 0 ||
        slot_offset(new.runnable_type, "site", &new.site) < 0 ||
        slot_offset(new.runnable_type, "ran", &new.ran) < 0 ||
        slot_offset(new.storm_type, "ended", &new.ended) < 0 ||
        slot_offset(new.storm_type, "sample", &new.sample) < 0 ||
        slot_offset(new.storm_type, "count", &new.count) < 0 ||
        slot_offset(new.greenlet_type, "child", &new.child) < 0 ||
        slot_offset(new.greenlet_type, "incarnation", &new.incarnation) < 0) {
        return NULL;
    }
    Py_INCREF(new.channel_type);
    Py_INCREF(new.runnable_type);
    Py_INCREF(new.storm_type);
    Py_INCREF(new.greenlet_type);
    WorkerLayout old = worker_layout;
    worker_layout = new;
    Py_CLEAR(runnable_seen);
    Py_XDECREF(old.channel_type);
    Py_XDECREF(old.runnable_type);
    Py_XDECREF(old.storm_type);
    Py_XDECREF(old.greenlet_type);
    Py_RETURN_NONE;
}

/* Whether *child* is a runnable_type (any subclass). The record classes are few: the last
 * one found to be a subclass is remembered (runnable_seen), sparing the walk of its MRO. */
static inline int
is_runnable(PyObject *child)
{
    PyTypeObject *type = Py_TYPE(child);
    if (type == runnable_seen) {
        return 1;
    }
    if (!PyObject_TypeCheck(child, worker_layout.runnable_type)) {
        return 0;
    }
    Py_INCREF(type); /* (kept: a freed class's address could be reused by another) */
    Py_XSETREF(runnable_seen, type);
    return 1;
}

static PyObject *
post_crash(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "post_crash() takes 4 arguments (channel, child, incarnation, exc), "
                     "%zd given",
                     nargs);
        return NULL;
    }
    if (worker_layout.channel_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "post_crash() called before configure_worker()");
        return NULL;
    }
    PyObject *channel = args[0], *child = args[1], *exc = args[3];
    if (Py_TYPE(channel) != worker_layout.channel_type ||
        !is_runnable(child) ||
        !PyExceptionInstance_Check(exc)) {
        Py_RETURN_FALSE;
    }
    PyObject *post = SLOT(channel, worker_layout.post);
    PyObject *damped = SLOT(channel, worker_layout.damped);
    if (post == NULL || damped == NULL) {
        Py_RETURN_FALSE;
    }
    PyObject *what = exc;
    if (damped != Py_None) {
        PyObject *site = SLOT(child, worker_layout.site);
        if (site == NULL || !PyTuple_CheckExact(site) || PyTuple_GET_SIZE(site) != 4) {
            Py_RETURN_FALSE;
        }
        PyObject *storm = PyTuple_GET_ITEM(site, 3);
        if (Py_TYPE(storm) != worker_layout.storm_type ||
            !matches(exc, PyTuple_GET_ITEM(site, 0), PyTuple_GET_ITEM(site, 1),
                     PyTuple_GET_ITEM(site, 2))) {
            Py_RETURN_FALSE;
        }
        PyObject *sample = SLOT(storm, worker_layout.sample);
        PyObject *count = SLOT(storm, worker_layout.count);
        if (SLOT(storm, worker_layout.ended) != Py_False || sample == NULL ||
            sample == Py_None || count == NULL) {
            Py_RETURN_FALSE; /* ended, or the period's first: the Python path renders it */
        }
        PyObject *more = PyNumber_Add(count, one);
        if (more == NULL) {
            return NULL;
        }
        set_slot(storm, worker_layout.count, more);
        Py_DECREF(more);
        what = storm;
    }
    PyObject *item = PyTuple_Pack(3, child, args[2], what);
    if (item == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_CallOneArg(post, item);
    Py_DECREF(item);
    if (result == NULL) {
        return NULL;
    }
    Py_DECREF(result);
    Py_RETURN_TRUE;
}

/*
 * configure(worker_type, greenlet_type, storm_type, running, abnormal) -> None
 *     Tell straight_run the classes it works on: the pool's worker record, the worker
 *     greenlet and the storm a crash is posted as, the RUNNING status and the reason a
 *     crash leaves ("abnormal"). It reads and writes their __slots__ directly, at the
 *     offsets their slot descriptors give (checked here: each must be a writable object
 *     slot), and only on objects of exactly these classes. Raises TypeError otherwise.
 *     greenkeep._pool_run calls it once, at import.
 *
 * straight_run(queue, handled, bound, now, reuse, resumes, starts, retirees, hub, run) -> int
 *     The bulk of PoolRun.drain (its Python twin, with the same arguments and result, is
 *     greenkeep._pool_run._straight_run_py): take exits from the head of the deque *queue*
 *     while each is a crash posted as its announced storm by the worker's live
 *     incarnation (no stop requested, nobody waiting for it, status RUNNING), and restart
 *     each at once, until the count *handled* reaches *bound* or the queue is empty. A
 *     worker restarted: reason "abnormal", incarnation and live one more, restarts one
 *     more, started at *now*, no stop event; in reuse mode its greenlet is appended to
 *     *resumes*, else a new greenlet ``greenlet_type(run, hub)`` for the new incarnation
 *     to *starts* (and the old one, if parked, to *retirees*). The first other item stays
 *     at the head. Returns the new count. Runs no Python code (nothing else runs
 *     meanwhile); raises only if memory runs out or it is called before configure.
 *
 * In Python each restart of that run is about a hundred bytecodes (a sixth of a reuse-mode
 * restart in the benchmark's crash loop); here it is a few pointer reads and writes.
 */

/*
 * start_run(greenlets, channel, switch, killed_type) -> int
 *     The usual case of greenkeep._launch._start_all, the loop callback that starts new
 *     worker greenlets (each a greenlet_type whose child's channel is *channel*): for
 *     each greenlet in the list, in order, ``switch(greenlet, child, incarnation)`` (the
 *     raw greenlet switch: it runs the incarnation until it blocks, parks or ends). What
 *     the switch raises (thrown into it before it ever ran) is posted as that
 *     incarnation's exit with channel.notify; so is a ``killed_type()`` instance for one
 *     that was killed before it ever ran (dead, and its record's ``ran`` neither the
 *     incarnation nor minus it). Stops at the first greenlet it cannot start so (the
 *     channel halted: a stop began; not a greenlet_type) and returns its index, or the
 *     list's length: _start_all goes on from there. Raises only what channel.notify
 *     raises, if memory runs out, or before configure_worker.
 */
static int
post_exit(PyObject *channel, PyObject *child, PyObject *incarnation, PyObject *what)
{
    PyObject *item = PyTuple_Pack(3, child, incarnation, what);
    if (item == NULL) {
        return -1;
    }
    PyObject *notify = PyObject_GetAttrString(channel, "notify");
    PyObject *result = notify ? PyObject_CallOneArg(notify, item) : NULL;
    Py_XDECREF(notify);
    Py_DECREF(item);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Whether *ran* is *incarnation* or minus it: 1, 0, or -1 on an error. */
static int
ran_it(PyObject *ran, PyObject *incarnation)
{
    if (ran == incarnation) {
        return 1;
    }
    int overflow = 0;
    if (PyLong_CheckExact(ran) && PyLong_CheckExact(incarnation)) {
        long long r = PyLong_AsLongLongAndOverflow(ran, &overflow);
        if (!overflow) {
            long long i = PyLong_AsLongLongAndOverflow(incarnation, &overflow);
            if (!overflow && i != LLONG_MIN) {
                return r == i || r == -i;
            }
        }
    }
    int same = PyObject_RichCompareBool(ran, incarnation, Py_EQ);
    if (same != 0) {
        return same;
    }
    PyObject *minus = PyNumber_Negative(incarnation);
    if (minus == NULL) {
        return -1;
    }
    same = PyObject_RichCompareBool(ran, minus, Py_EQ);
    Py_DECREF(minus);
    return same;
}

static PyObject *
start_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "start_run() takes 4 arguments (greenlets, channel, switch, killed_type), "
                     "%zd given",
                     nargs);
        return NULL;
    }
    if (worker_layout.channel_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "start_run() called before configure_worker()");
        return NULL;
    }
    PyObject *greenlets = args[0], *channel = args[1], *switch_ = args[2];
    if (!PyList_Check(greenlets)) {
        PyErr_Format(PyExc_TypeError, "start_run() argument 1 must be a list, not %.200s",
                     Py_TYPE(greenlets)->tp_name);
        return NULL;
    }
    if (Py_TYPE(channel) != worker_layout.channel_type) {
        return PyLong_FromLong(0);
    }
    Py_ssize_t index = 0;
    for (; index < PyList_GET_SIZE(greenlets); index++) {
        PyObject *halted = SLOT(channel, worker_layout.halted);
        PyObject *greenlet = PyList_GET_ITEM(greenlets, index);
        if (halted != Py_False || Py_TYPE(greenlet) != worker_layout.greenlet_type) {
            break;
        }
        PyObject *child = SLOT(greenlet, worker_layout.child);
        PyObject *incarnation = SLOT(greenlet, worker_layout.incarnation);
        if (child == NULL || incarnation == NULL ||
            !is_runnable(child)) {
            break;
        }
        /* The greenlet, its child and incarnation stay referenced while it runs (the list
         * itself may change meanwhile). */
        Py_INCREF(greenlet);
        Py_INCREF(child);
        Py_INCREF(incarnation);
        PyObject *call[3] = {greenlet, child, incarnation};
        PyObject *result = PyObject_Vectorcall(switch_, call, 3, NULL);
        int failed = 0;
        if (result == NULL) { /* thrown into it before it ever ran: its exit */
#if PY_VERSION_HEX >= 0x030C0000
            PyObject *exc = PyErr_GetRaisedException();
#else
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (tb != NULL && value != NULL) {
                PyException_SetTraceback(value, tb);
            }
            Py_XDECREF(type);
            Py_XDECREF(tb);
            PyObject *exc = value;
#endif
            failed = exc == NULL ? -1 : post_exit(channel, child, incarnation, exc);
            Py_XDECREF(exc);
        }
        else {
            Py_DECREF(result);
            PyObject *ran = SLOT(child, worker_layout.ran);
            int started = ran == NULL ? 0 : ran_it(ran, incarnation);
            if (started == 0) { /* killed before it ever ran, if it is dead: its exit */
                PyObject *dead = PyObject_GetAttrString(greenlet, "dead");
                int is_dead = dead == NULL ? -1 : PyObject_IsTrue(dead);
                Py_XDECREF(dead);
                if (is_dead > 0) {
                    PyObject *killed = PyObject_CallNoArgs(args[3]);
                    failed = killed == NULL ? -1 : post_exit(channel, child, incarnation, killed);
                    Py_XDECREF(killed);
                }
                else if (is_dead < 0) {
                    failed = -1;
                }
            }
            else if (started < 0) {
                failed = -1;
            }
        }
        Py_DECREF(incarnation);
        Py_DECREF(child);
        Py_DECREF(greenlet);
        if (failed < 0) {
            return NULL;
        }
    }
    return PyLong_FromSsize_t(index);
}

typedef struct {
    PyTypeObject *worker_type;
    PyTypeObject *greenlet_type;
    PyTypeObject *storm_type;
    PyObject *running;
    PyObject *abnormal;
    /* worker slots */
    Py_ssize_t live, stop_requested, waiters, status, last_reason, incarnation, restarts,
        started_at, stop_event, greenlet;
    /* greenlet slots */
    Py_ssize_t child, greenlet_incarnation;
    /* storm slot */
    Py_ssize_t announced;
} Layout;

static Layout layout; /* all NULL and 0 until configure */

static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "configure() takes 5 arguments (worker_type, greenlet_type, storm_type, "
                     "running, abnormal), %zd given",
                     nargs);
        return NULL;
    }
    if (check_classes("configure", args, 3) < 0) {
        return NULL;
    }
    Layout new = {0};
    new.worker_type = (PyTypeObject *)args[0];
    new.greenlet_type = (PyTypeObject *)args[1];
    new.storm_type = (PyTypeObject *)args[2];
    PyTypeObject *w = new.worker_type;
    if (slot_offset(w, "live", &new.live) < 0 ||
        slot_offset(w, "stop_requested", &new.stop_requested) < 0 ||
        slot_offset(w, "waiters", &new.waiters) < 0 ||
        slot_offset(w, "status", &new.status) < 0 ||
        slot_offset(w, "last_reason", &new.last_reason) < 0 ||
        slot_offset(w, "incarnation", &new.incarnation) < 0 ||
        slot_offset(w, "restarts", &new.restarts) < 0 ||
        slot_offset(w, "started_at", &new.started_at) < 0 ||
        slot_offset(w, "stop_event", &new.stop_event) < 0 ||
        slot_offset(w, "greenlet", &new.greenlet) < 0 ||
        slot_offset(new.greenlet_type, "child", &new.child) < 0 ||
        slot_offset(new.greenlet_type, "incarnation", &new.greenlet_incarnation) < 0 ||
        slot_offset(new.storm_type, "announced", &new.announced) < 0) {
        return NULL;
    }
    new.running = args[3];
    new.abnormal = args[4];
    Py_INCREF(new.worker_type);
    Py_INCREF(new.greenlet_type);
    Py_INCREF(new.storm_type);
    Py_INCREF(new.running);
    Py_INCREF(new.abnormal);
    Layout old = layout;
    layout = new;
    Py_XDECREF(old.worker_type);
    Py_XDECREF(old.greenlet_type);
    Py_XDECREF(old.storm_type);
    Py_XDECREF(old.running);
    Py_XDECREF(old.abnormal);
    Py_RETURN_NONE;
}

/* Truth of a slot holding (normally) a bool: 1, 0, or -1 with an exception set. */
static inline int
truth(PyObject *value)
{
    if (value == Py_True) {
        return 1;
    }
    if (value == Py_False || value == NULL) {
        return 0;
    }
    return PyObject_IsTrue(value);
}

/* Whether *item* takes the straight path (see straight_run): 1, 0, or -1 on an error. */
static int
is_straight(PyObject *item)
{
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3) {
        return 0;
    }
    PyObject *worker = PyTuple_GET_ITEM(item, 0);
    PyObject *storm = PyTuple_GET_ITEM(item, 2);
    if (Py_TYPE(storm) != layout.storm_type || Py_TYPE(worker) != layout.worker_type) {
        return 0;
    }
    int yes = truth(SLOT(storm, layout.announced));
    if (yes <= 0) {
        return yes;
    }
    PyObject *live = SLOT(worker, layout.live);
    if (live == NULL || SLOT(worker, layout.restarts) == NULL ||
        SLOT(worker, layout.greenlet) == NULL || SLOT(worker, layout.waiters) != Py_None ||
        SLOT(worker, layout.status) != layout.running) {
        return 0;
    }
    yes = PyObject_RichCompareBool(live, PyTuple_GET_ITEM(item, 1), Py_EQ);
    if (yes <= 0) {
        return yes;
    }
    PyObject *stop_requested = SLOT(worker, layout.stop_requested);
    if (stop_requested == NULL) {
        return 0;
    }
    yes = truth(stop_requested);
    return yes < 0 ? -1 : !yes;
}

static PyObject *
straight_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_Format(PyExc_TypeError,
                     "straight_run() takes 10 arguments (queue, handled, bound, now, reuse, "
                     "resumes, starts, retirees, hub, run), %zd given",
                     nargs);
        return NULL;
    }
    if (layout.worker_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "straight_run() called before configure()");
        return NULL;
    }
    Py_ssize_t handled = PyLong_AsSsize_t(args[1]);
    if (handled == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t bound = PyLong_AsSsize_t(args[2]);
    if (bound == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *now = args[3];
    int reuse = PyObject_IsTrue(args[4]);
    if (reuse < 0) {
        return NULL;
    }
    PyObject *resumes = args[5], *starts = args[6], *retirees = args[7];
    for (int i = 5; i < 8; i++) {
        if (!PyList_Check(args[i])) {
            PyErr_Format(PyExc_TypeError,
                         "straight_run() argument %d must be a list, not %.200s", i + 1,
                         Py_TYPE(args[i])->tp_name);
            return NULL;
        }
    }
    PyObject *new_args[2] = {args[9], args[8]}; /* greenlet_type(run, hub) */
    if (handled >= bound) {
        return PyLong_FromSsize_t(handled);
    }
    PyObject *popleft = PyObject_GetAttrString(args[0], "popleft");
    if (popleft == NULL) {
        return NULL;
    }
    PyObject *item = NULL, *next = NULL;
    while (handled < bound) {
        Py_ssize_t length = PyObject_Length(args[0]);
        if (length <= 0) {
            if (length < 0) {
                goto error;
            }
            break;
        }
        item = PyObject_CallNoArgs(popleft);
        if (item == NULL) {
            goto error;
        }
        int straight = is_straight(item);
        if (straight <= 0) { /* in its place: the caller handles it next */
            PyObject *appendleft = PyObject_GetAttrString(args[0], "appendleft");
            PyObject *result = appendleft ? PyObject_CallOneArg(appendleft, item) : NULL;
            Py_XDECREF(appendleft);
            Py_CLEAR(item);
            if (result == NULL || straight < 0) {
                Py_XDECREF(result);
                goto error;
            }
            Py_DECREF(result);
            break;
        }
        PyObject *worker = PyTuple_GET_ITEM(item, 0);
        next = PyNumber_Add(PyTuple_GET_ITEM(item, 1), one);
        if (next == NULL) {
            goto error;
        }
        PyObject *restarts = PyNumber_Add(SLOT(worker, layout.restarts), one);
        if (restarts == NULL) {
            goto error;
        }
        handled++;
        set_slot(worker, layout.last_reason, layout.abnormal);
        set_slot(worker, layout.incarnation, next);
        set_slot(worker, layout.live, next);
        set_slot(worker, layout.restarts, restarts);
        Py_DECREF(restarts);
        set_slot(worker, layout.started_at, now);
        set_slot(worker, layout.stop_event, Py_None);
        PyObject *old = SLOT(worker, layout.greenlet);
        if (reuse) {
            if (PyList_Append(resumes, old) < 0) {
                goto error;
            }
        }
        else {
            int parked = PyObject_IsTrue(old);
            if (parked < 0 || (parked && PyList_Append(retirees, old) < 0)) {
                goto error;
            }
            PyObject *greenlet =
                PyObject_Vectorcall((PyObject *)layout.greenlet_type, new_args, 2, NULL);
            if (greenlet == NULL) {
                goto error;
            }
            if (Py_TYPE(greenlet) != layout.greenlet_type) {
                PyErr_Format(PyExc_TypeError, "straight_run(): %.200s() made a %.200s",
                             layout.greenlet_type->tp_name, Py_TYPE(greenlet)->tp_name);
                Py_DECREF(greenlet);
                goto error;
            }
            set_slot(worker, layout.greenlet, greenlet); /* (drops an ended one) */
            set_slot(greenlet, layout.child, worker);
            set_slot(greenlet, layout.greenlet_incarnation, next);
            int failed = PyList_Append(starts, greenlet);
            Py_DECREF(greenlet);
            if (failed < 0) {
                goto error;
            }
        }
        Py_CLEAR(next);
        Py_CLEAR(item);
    }
    Py_DECREF(popleft);
    return PyLong_FromSsize_t(handled);
error:
    Py_XDECREF(next);
    Py_XDECREF(item);
    Py_DECREF(popleft);
    return NULL;
}

static PyMethodDef speedups_methods[] = {
    {"same_site", (PyCFunction)(void (*)(void))same_site, METH_FASTCALL,
     "same_site(exc, code, lasti, type) -> bool: whether exc (exactly of type) was raised at "
     "instruction offset lasti of code (its innermost traceback entry)."},
    {"configure_worker", (PyCFunction)(void (*)(void))configure_worker, METH_FASTCALL,
     "configure_worker(channel_type, runnable_type, storm_type) -> None: the classes "
     "post_crash works on."},
    {"post_crash", (PyCFunction)(void (*)(void))post_crash, METH_FASTCALL,
     "post_crash(channel, child, incarnation, exc) -> bool: post a worker's crash the cheap "
     "way (in full with damping off, else as the storm of its last site), if it can be."},
    {"start_run", (PyCFunction)(void (*)(void))start_run, METH_FASTCALL,
     "start_run(greenlets, channel, switch, killed_type) -> int: start new worker greenlets "
     "in order (greenkeep._launch._start_all); the index of the first it did not start."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(worker_type, greenlet_type, storm_type, running, abnormal) -> None: the "
     "classes straight_run works on."},
    {"straight_run", (PyCFunction)(void (*)(void))straight_run, METH_FASTCALL,
     "straight_run(queue, handled, bound, now, reuse, resumes, starts, retirees, hub, run) "
     "-> int: restart the straight-path crashes at the head of queue (PoolRun.drain)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "greenkeep._speedups",
    "The compiled steps of greenkeep's restart path (optional; see post_crash, straight_run).",
    -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
