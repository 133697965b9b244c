/*
 * fresh_copy(value, classes): a deep copy of a result held as a template, for a hit that
 * must hand out new objects (`llmcache._fresh.fresh_copy` is the Python reference).
 *
 *   - exact dict, list, tuple and set are copied; a dict's keys and a set's items are shared,
 *     and must be exact str or int (whose hash runs no Python code);
 *   - str, int, float, bool, None and bytes (subclasses too) are shared: immutable;
 *   - an instance whose exact type is in `classes` is copied without running any of its
 *     code: a new object of its type, its __dict__ and __slots__ copied by these rules;
 *   - anything else raises TypeError, as does nesting deeper than COPY_DEPTH_LIMIT.
 *
 * Why in C: a LangChain hit builds a ChatGeneration, its AIMessage and about ten dicts and
 * lists. Built in Python that cost more than the rest of the hit together (7 µs inside
 * `ChatOpenAI.invoke`); here it is a few hundred nanoseconds.
 */
#ifndef LLMCACHE_FRESH_COPY_H
#define LLMCACHE_FRESH_COPY_H

#include <Python.h>
#include <structmember.h>

#define COPY_DEPTH_LIMIT 64

static PyObject *copy_value(PyObject *value, PyObject *classes, int depth);

static int
copy_is_shared(PyObject *value)
{
    return value == Py_None || PyUnicode_Check(value) || PyLong_Check(value) ||
           PyFloat_Check(value) || PyBytes_Check(value);
}

/* A key or set item whose hash runs no Python code: exact str or int. */
static int
copy_is_plain_key(PyObject *key)
{
    if (PyUnicode_CheckExact(key) || PyLong_CheckExact(key)) {
        return 1;
    }
    PyErr_Format(PyExc_TypeError, "fresh_copy: cannot copy a dict key or set item of type %.200s",
                 Py_TYPE(key)->tp_name);
    return 0;
}

static PyObject *
copy_dict(PyObject *dict, PyObject *classes, int depth)
{
    /* A copy of the table at once (CPython clones a dict's keys without rehashing), then
       each value that is not shared replaced by its copy: several times quicker than
       inserting key by key. */
    PyObject *out = PyDict_Copy(dict);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t position = 0;
    PyObject *key, *item;
    while (PyDict_Next(dict, &position, &key, &item)) {
        if (!copy_is_plain_key(key)) {
            Py_DECREF(out);
            return NULL;
        }
        if (copy_is_shared(item)) {
            continue;
        }
        /* Held while copied: a collection during an allocation may run a finaliser. */
        Py_INCREF(key);
        Py_INCREF(item);
        PyObject *copied = copy_value(item, classes, depth);
        int failed = copied == NULL || PyDict_SetItem(out, key, copied) < 0;
        Py_XDECREF(copied);
        Py_DECREF(item);
        Py_DECREF(key);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *
copy_set(PyObject *set)
{
    PyObject *items = PyObject_GetIter(set); /* an exact set's iterator runs no Python code */
    if (items == NULL) {
        return NULL;
    }
    PyObject *item;
    while ((item = PyIter_Next(items)) != NULL) {
        int plain = copy_is_plain_key(item);
        Py_DECREF(item);
        if (!plain) {
            Py_DECREF(items);
            return NULL;
        }
    }
    Py_DECREF(items);
    return PyErr_Occurred() ? NULL : PySet_New(set);
}

/* Each slot of `type`'s own __slots__ (a heap type's object members), copied from `source`. */
static int
copy_slots(PyTypeObject *type, PyObject *source, PyObject *target, PyObject *classes, int depth)
{
    PyMemberDef *member = type->tp_members;
    if (member == NULL) {
        return 0;
    }
    for (; member->name != NULL; member++) {
        if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
            continue; /* __weakref__, __dictoffset__ and such: not state */
        }
        PyObject **from = (PyObject **)((char *)source + member->offset);
        PyObject **to = (PyObject **)((char *)target + member->offset);
        if (*from == NULL) {
            continue; /* an unset slot stays unset */
        }
        PyObject *held = Py_NewRef(*from);
        PyObject *copied = copy_value(held, classes, depth);
        Py_DECREF(held);
        if (copied == NULL) {
            return -1;
        }
        Py_XSETREF(*to, copied);
    }
    return 0;
}

/* Whether an instance of `type` is all __dict__ and __slots__: a Python class whose only
   built-in base is object (a subclass of dict, int or datetime has state we cannot copy). */
static int
copy_is_plain_class(PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || mro == NULL) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE) && base != &PyBaseObject_Type) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
copy_instance(PyObject *value, PyObject *classes, int depth)
{
    PyTypeObject *type = Py_TYPE(value);
    if (!copy_is_plain_class(type)) {
        PyErr_Format(PyExc_TypeError,
                     "fresh_copy: cannot copy a %.200s (a built-in type or a subclass of one)",
                     type->tp_name);
        return NULL;
    }
    PyObject *out = type->tp_alloc(type, 0);
    if (out == NULL) {
        return NULL;
    }
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if ((base->tp_flags & Py_TPFLAGS_HEAPTYPE) &&
            copy_slots(base, value, out, classes, depth) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    if (type->tp_dictoffset != 0) {
        PyObject *dict = PyObject_GenericGetDict(value, NULL);
        if (dict == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *copied = copy_dict(dict, classes, depth);
        Py_DECREF(dict);
        if (copied == NULL || PyObject_GenericSetDict(out, copied, NULL) < 0) {
            Py_XDECREF(copied);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(copied);
    }
    return out;
}

static PyObject *
copy_sequence(PyObject *value, PyObject *classes, int depth, int is_list)
{
    Py_ssize_t size = Py_SIZE(value);
    PyObject *out = is_list ? PyList_New(size) : PyTuple_New(size);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        /* A list is read afresh at each item: a finaliser run by a collection during an
           allocation could change it (a template is private, so none should). */
        if (is_list && i >= PyList_GET_SIZE(value)) {
            PyErr_SetString(PyExc_RuntimeError, "fresh_copy: a list changed size while copied");
            Py_DECREF(out);
            return NULL;
        }
        PyObject *item = Py_NewRef(is_list ? PyList_GET_ITEM(value, i) : PyTuple_GET_ITEM(value, i));
        PyObject *copied = copy_value(item, classes, depth);
        Py_DECREF(item);
        if (copied == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (is_list) {
            PyList_SET_ITEM(out, i, copied);
        }
        else {
            PyTuple_SET_ITEM(out, i, copied);
        }
    }
    return out;
}

static PyObject *
copy_value(PyObject *value, PyObject *classes, int depth)
{
    if (copy_is_shared(value)) {
        return Py_NewRef(value);
    }
    if (depth >= COPY_DEPTH_LIMIT) {
        PyErr_SetString(PyExc_TypeError, "fresh_copy: nested too deep");
        return NULL;
    }
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyDict_Type) {
        return copy_dict(value, classes, depth + 1);
    }
    if (type == &PyList_Type) {
        return copy_sequence(value, classes, depth + 1, 1);
    }
    if (type == &PyTuple_Type) {
        return copy_sequence(value, classes, depth + 1, 0);
    }
    if (type == &PySet_Type) {
        return copy_set(value);
    }
    int listed = PySet_Contains(classes, (PyObject *)type);
    if (listed < 0) {
        return NULL;
    }
    if (listed) {
        return copy_instance(value, classes, depth + 1);
    }
    PyErr_Format(PyExc_TypeError, "fresh_copy: cannot copy a %.200s (not in classes)",
                 type->tp_name);
    return NULL;
}

#endif /* LLMCACHE_FRESH_COPY_H */
