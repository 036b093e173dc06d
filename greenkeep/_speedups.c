/*
 * greenkeep._speedups: the two steps of the restart path that pure Python cannot make cheap.
 * Optional: when it is not built (no C compiler at install time), greenkeep runs the same
 * steps in Python (greenkeep._worker, greenkeep._pool_run), with the same result;
 * tests/test_speedups.py checks that the two agree.
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
 * workers); here it is a few pointer reads.
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

static PyObject *
same_site(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "same_site() takes 4 arguments (exc, code, lasti, type), %zd given", nargs);
        return NULL;
    }
    PyObject *exc = args[0];
    if (!PyExceptionInstance_Check(exc)) {
        PyErr_Format(PyExc_TypeError,
                     "same_site() argument 'exc' must be an exception instance, not %.200s",
                     Py_TYPE(exc)->tp_name);
        return NULL;
    }
    if ((PyObject *)Py_TYPE(exc) != args[3]) {
        Py_RETURN_FALSE;
    }
    PyObject *tb = ((PyBaseExceptionObject *)exc)->traceback;
    if (tb == NULL || !PyTraceBack_Check(tb)) {
        Py_RETURN_FALSE;
    }
    PyTracebackObject *inner = (PyTracebackObject *)tb;
    while (inner->tb_next != NULL) {
        inner = inner->tb_next;
    }
    if (!PyLong_CheckExact(args[2])) {
        Py_RETURN_FALSE;
    }
    int overflow = 0;
    long lasti = PyLong_AsLongAndOverflow(args[2], &overflow);
    if (overflow || lasti != inner->tb_lasti) {
        Py_RETURN_FALSE;
    }
    PyCodeObject *code = PyFrame_GetCode(inner->tb_frame);
    int same = (PyObject *)code == args[1];
    Py_DECREF(code);
    if (same) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
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
static PyObject *one;

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

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
    for (int i = 0; i < 3; i++) {
        if (!PyType_Check(args[i])) {
            PyErr_Format(PyExc_TypeError, "configure() argument %d must be a class, not %.200s",
                         i + 1, Py_TYPE(args[i])->tp_name);
            return NULL;
        }
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
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL) {
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
    "The compiled steps of greenkeep's restart path (optional; see same_site, straight_run).",
    -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
