/*
 * greenkeep._speedups: the one check of a worker's crash path that pure Python cannot make
 * cheap. Optional: when it is not built (no C compiler at install time), greenkeep runs the
 * same check in Python (greenkeep._worker, with the same result; tests/test_speedups.py
 * checks that the two agree).
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

static PyMethodDef speedups_methods[] = {
    {"same_site", (PyCFunction)(void (*)(void))same_site, METH_FASTCALL,
     "same_site(exc, code, lasti, type) -> bool: whether exc (exactly of type) was raised at "
     "instruction offset lasti of code (its innermost traceback entry)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "greenkeep._speedups",
    "The compiled crash-site check of greenkeep's workers (optional; see same_site).",
    -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
