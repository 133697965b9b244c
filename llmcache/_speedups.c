/*
 * llmcache._speedups: the hit path's argument type scan, its key hash (XXH3-128, in
 * _xxh3.h), its memory hit on a shared value (_memory_hit.h) and the copy of a template
 * result (_fresh_copy.h), in C.
 *
 * `needs_tags(obj)` is `llmcache._canonical.needs_tags` (the Python reference), made with the
 * same exact-type tests: whether orjson's own bytes for `obj` could also be another value's,
 * so the hit path must take the long way. Plain JSON data needs none: exact str, int, bool,
 * None, finite float, and exact list, tuple and dict (a dict's values; its keys are not looked
 * at, orjson refuses non-str keys itself) of plain JSON data. Everything else does, subclasses
 * of those types included (orjson writes an Enum member as its value, a UUID as its text,
 * nan/inf as null, an orjson.Fragment as raw bytes).
 *
 * Nesting past either limit below answers True ("take the long way") instead of scanning on.
 * True is always safe: the long way gives the same bytes as the hit path for everything the
 * hit path takes. The limits are where the two scans stop meaning the same thing anyway:
 *   - more than 256 nested lists and dicts: orjson refuses more than 254, so the Python scan's
 *     False leads to the long way just the same;
 *   - more than 1024 nested tuples (orjson has no limit for tuples, and corrupts memory past
 *     about 2000 of them): the Python scan takes a call per tuple, so under the default
 *     recursion limit it raises RecursionError there (the long way again); only with a raised
 *     limit would it say False, and the C scan does not follow it there.
 * So the C stack stays bounded whatever sys.setrecursionlimit says, and a self-referential
 * list ends the scan instead of raising on the hit path.
 *
 * No Python code runs during the scan (only exact built-in types are looked into) and it
 * creates no object: it holds borrowed references only, so it cannot leak or see a container
 * change under it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

#include "_fresh_copy.h"
#include "_memory_hit.h"
#include "_xxh3.h"

/* orjson refuses more than 254 nested lists and dicts: past this, no hit path has bytes. */
#define SCAN_CONTAINER_LIMIT 256
/* A Python scan of more nested tuples exceeds the default recursion limit. */
#define SCAN_TUPLE_LIMIT 1024

#ifndef LLMCACHE_SPEEDUPS_SOURCE
#define LLMCACHE_SPEEDUPS_SOURCE "unknown"
#endif

static int scan_value(PyObject *value, int containers, int tuples);

/* 1 when any of `count` items needs tags, else 0; the counts are the items' enclosing lists
   and dicts, and tuples. */
static int
scan_items(PyObject *const *items, Py_ssize_t count, int containers, int tuples)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        if (scan_value(items[i], containers, tuples)) {
            return 1;
        }
    }
    return 0;
}

static int
scan_dict_values(PyObject *dict, int containers, int tuples)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &position, &key, &value)) {
        if (scan_value(value, containers, tuples)) {
            return 1;
        }
    }
    return 0;
}

/* 1 when `value` needs tags, else 0. */
static int
scan_value(PyObject *value, int containers, int tuples)
{
    PyTypeObject *kind = Py_TYPE(value);
    if (kind == &PyUnicode_Type || kind == &PyLong_Type || kind == &PyBool_Type ||
        value == Py_None) {
        return 0;
    }
    if (kind == &PyFloat_Type) {
        return !isfinite(PyFloat_AS_DOUBLE(value));
    }
    if (kind == &PyDict_Type) {
        return containers >= SCAN_CONTAINER_LIMIT ||
               scan_dict_values(value, containers + 1, tuples);
    }
    if (kind == &PyList_Type) {
        return containers >= SCAN_CONTAINER_LIMIT ||
               scan_items(PySequence_Fast_ITEMS(value), PyList_GET_SIZE(value), containers + 1,
                          tuples);
    }
    if (kind == &PyTuple_Type) {
        return tuples >= SCAN_TUPLE_LIMIT ||
               scan_items(PySequence_Fast_ITEMS(value), PyTuple_GET_SIZE(value), containers,
                          tuples + 1);
    }
    return 1; /* any other type, subclasses of the types above included */
}

static PyObject *
needs_tags(PyObject *module, PyObject *value)
{
    /* One check on entry, as a call of the Python reference would make: at the interpreter's
       recursion limit this raises RecursionError rather than go deeper into the C stack. */
    if (Py_EnterRecursiveCall(" while scanning a cache key's arguments")) {
        return NULL;
    }
    int answer = scan_value(value, 0, 0);
    Py_LeaveRecursiveCall();
    return PyBool_FromLong(answer);
}

PyDoc_STRVAR(needs_tags_doc,
             "needs_tags(obj, /)\n--\n\n"
             "Whether orjson's own output for obj could also be another value's: the C form of\n"
             "llmcache._canonical.needs_tags (True past 256 nested lists and dicts or 1024\n"
             "nested tuples).");

static PyObject *
xxh3_128(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "xxh3_128() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    uint64_t seed = PyLong_AsUnsignedLongLong(args[1]);
    if (seed == (uint64_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    xxh3_u128 digest;
    if (PyBytes_CheckExact(args[0])) { /* orjson's output: no buffer to acquire */
        digest = xxh3_128_seeded((const uint8_t *)PyBytes_AS_STRING(args[0]),
                                 (size_t)PyBytes_GET_SIZE(args[0]), seed);
    }
    else {
        Py_buffer view;
        if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        digest = xxh3_128_seeded((const uint8_t *)view.buf, (size_t)view.len, seed);
        PyBuffer_Release(&view);
    }
    /* The 128-bit value high:low, as xxhash's xxh3_128_intdigest gives it. */
    unsigned char bytes[16];
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(digest.low >> (8 * i));
        bytes[8 + i] = (unsigned char)(digest.high >> (8 * i));
    }
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromUnsignedNativeBytes(bytes, 16,
                                          Py_ASNATIVEBYTES_LITTLE_ENDIAN |
                                              Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
    return _PyLong_FromByteArray(bytes, 16, 1, 0);
#endif
}

PyDoc_STRVAR(xxh3_128_doc,
             "xxh3_128(data, seed, /)\n--\n\n"
             "XXH3-128 of data with a 64-bit seed, as an int: xxhash.xxh3_128_intdigest's\n"
             "value, from scalar code (no vector unit to wake; see _xxh3.h).");

static PyObject *
fresh_copy(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "fresh_copy() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyAnySet_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "fresh_copy(): classes must be a set or frozenset");
        return NULL;
    }
    return copy_value(args[0], args[1], 0);
}

PyDoc_STRVAR(fresh_copy_doc,
             "fresh_copy(value, classes, /)\n--\n\n"
             "A deep copy of value: the C form of llmcache._fresh.fresh_copy.");

PyDoc_STRVAR(memory_hit_doc,
             "memory_hit(state, fallback, fingerprint, /)\n--\n\n"
             "HotPath.memory_hit for a shared value (see _memory_hit.h); else fallback(fingerprint).");
PyDoc_STRVAR(configure_hits_doc,
             "configure_hits(not_shared, observer_list, last_contextvar, hit_batch, /)\n--\n\n"
             "The constants memory_hit needs, given once by llmcache._hot.");

static PyMethodDef speedups_methods[] = {
    {"memory_hit", (PyCFunction)(void (*)(void))memory_hit, METH_FASTCALL, memory_hit_doc},
    {"configure_hits", (PyCFunction)(void (*)(void))configure_hits, METH_FASTCALL,
     configure_hits_doc},
    {"fresh_copy", (PyCFunction)(void (*)(void))fresh_copy, METH_FASTCALL, fresh_copy_doc},
    {"needs_tags", needs_tags, METH_O, needs_tags_doc},
    {"xxh3_128", (PyCFunction)(void (*)(void))xxh3_128, METH_FASTCALL, xxh3_128_doc},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "SCAN_CONTAINER_LIMIT", SCAN_CONTAINER_LIMIT) < 0 ||
        PyModule_AddIntConstant(module, "SCAN_TUPLE_LIMIT", SCAN_TUPLE_LIMIT) < 0) {
        return -1;
    }
    /* The sha256 of this file when it was built: tests tell a stale build from a fresh one. */
    return PyModule_AddStringConstant(module, "SOURCE_SHA256", LLMCACHE_SPEEDUPS_SOURCE);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "llmcache._speedups",
    .m_doc = "C forms of llmcache's hit-path helpers; llmcache falls back to Python without it.",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
