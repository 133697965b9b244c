/*
 * memory_hit(state, fallback, fingerprint): `HotPath.memory_hit` (llmcache/_hot.py) in C for
 * its most common case, a memory hit on an entry whose value is shared (a str, bytes, a
 * number: every LangChain and LiteLLM entry, and every cached function returning text),
 * with no expiry, no observer and no ledger drain due. Any other case calls
 * `fallback(fingerprint)`, the Python method, which does the same work line for line
 * (tests/test_hot_path.py holds the two to the general flow).
 *
 * Why: inside a framework's call a hit runs cold, after a hundred microseconds of other
 * Python, and there each bytecode of the hit path costs several times what it costs in a
 * loop. These dozen steps took about 2 µs inside `ChatOpenAI.invoke` in Python.
 *
 * `state` is the HotPath's (entries, recent, counters, noted, name): the memory tier's dicts
 * and the site's counters, ledger list and namespace name, each changed in place only.
 * `configure_hits(...)` gives the module-wide constants once, at import of _hot.py.
 */
#ifndef LLMCACHE_MEMORY_HIT_H
#define LLMCACHE_MEMORY_HIT_H

#include <Python.h>
#include <math.h>

static PyObject *hit_not_shared;  /* _record.NOT_SHARED */
static PyObject *hit_observer;    /* _telemetry.OBSERVER, a one-item list */
static PyObject *hit_last;        /* _info.LAST, a ContextVar */
static Py_ssize_t hit_batch = -1; /* _ledger.HIT_BATCH */
static PyObject *str_shared, *str_expires, *str_memory_hits, *str_memory, *hit_one;

static PyObject *
configure_hits(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_Check(args[1]) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_hits(not_shared, observer_list, last_contextvar, hit_batch)");
        return NULL;
    }
    if (str_shared == NULL) {
        str_shared = PyUnicode_InternFromString("shared");
        str_expires = PyUnicode_InternFromString("expires");
        str_memory_hits = PyUnicode_InternFromString("memory_hits");
        str_memory = PyUnicode_InternFromString("memory");
        hit_one = PyLong_FromLong(1);
        if (!str_shared || !str_expires || !str_memory_hits || !str_memory || !hit_one) {
            return NULL;
        }
    }
    Py_XSETREF(hit_not_shared, Py_NewRef(args[0]));
    Py_XSETREF(hit_observer, Py_NewRef(args[1]));
    Py_XSETREF(hit_last, Py_NewRef(args[2]));
    hit_batch = PyLong_AsSsize_t(args[3]);
    if (hit_batch == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The shared value of a live, never-expiring record, new reference; NULL without an error
   when the Python method must take this hit. */
static PyObject *
hit_shared_value(PyObject *record)
{
    PyObject *shared = PyObject_GetAttr(record, str_shared);
    if (shared == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *expires = PyObject_GetAttr(record, str_expires);
    int forever = expires != NULL && PyFloat_CheckExact(expires) &&
                  isinf(PyFloat_AS_DOUBLE(expires)) && PyFloat_AS_DOUBLE(expires) > 0;
    Py_XDECREF(expires);
    if (expires == NULL) {
        PyErr_Clear();
    }
    if (!forever || shared == hit_not_shared) {
        Py_DECREF(shared);
        return NULL;
    }
    return shared;
}

static PyObject *
memory_hit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != 5) {
        PyErr_SetString(PyExc_TypeError, "memory_hit(state, fallback, fingerprint)");
        return NULL;
    }
    PyObject *state = args[0], *fallback = args[1], *fingerprint = args[2];
    PyObject *entries = PyTuple_GET_ITEM(state, 0), *recent = PyTuple_GET_ITEM(state, 1);
    PyObject *counters = PyTuple_GET_ITEM(state, 2), *noted = PyTuple_GET_ITEM(state, 3);
    PyObject *name = PyTuple_GET_ITEM(state, 4);
    if (hit_batch < 0 || !PyDict_Check(entries) || !PyDict_CheckExact(recent) ||
        !PyList_CheckExact(noted) || PyList_GET_SIZE(hit_observer) != 1 ||
        PyList_GET_ITEM(hit_observer, 0) != Py_None ||
        PyList_GET_SIZE(noted) + 1 >= hit_batch) {
        return PyObject_CallOneArg(fallback, fingerprint); /* the Python method's case */
    }
    /* `entries.get`: the memory tier's OrderedDict is read as the dict it is (no code runs). */
    PyObject *record = PyDict_GetItemWithError(entries, fingerprint); /* borrowed */
    if (record == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        return PyObject_CallOneArg(fallback, fingerprint); /* a miss: counted there */
    }
    Py_INCREF(record);
    PyObject *value = hit_shared_value(record);
    if (value == NULL) {
        Py_DECREF(record);
        return PyObject_CallOneArg(fallback, fingerprint);
    }
    /* `memory_hit`'s lines, in its order: recency, counter, ledger note, `llmcache.info`. */
    PyObject *hits = NULL, *more = NULL, *note = NULL, *described = NULL, *token = NULL;
    if (PyDict_SetItem(recent, fingerprint, Py_None) < 0 ||
        (hits = PyObject_GetAttr(counters, str_memory_hits)) == NULL ||
        (more = PyNumber_Add(hits, hit_one)) == NULL ||
        PyObject_SetAttr(counters, str_memory_hits, more) < 0 ||
        (note = PyTuple_Pack(2, name, record)) == NULL || PyList_Append(noted, note) < 0 ||
        (described = PyTuple_Pack(5, value, record, str_memory, Py_True, name)) == NULL ||
        (token = PyContextVar_Set(hit_last, described)) == NULL) {
        Py_CLEAR(value);
    }
    Py_XDECREF(hits);
    Py_XDECREF(more);
    Py_XDECREF(note);
    Py_XDECREF(described);
    Py_XDECREF(token);
    Py_DECREF(record);
    return value;
}

#endif /* LLMCACHE_MEMORY_HIT_H */
