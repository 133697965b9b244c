/*
 * fresh_copy(value, classes): a deep copy of a result held as a template, for a hit that
 * must hand out new objects (`llmcache._fresh.fresh_copy` is the Python reference).
 *
 *   - exact dict, list, tuple and set are copied (a set's items and a dict's keys are shared:
 *     they are hashable, so nothing may change them in place);
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

static PyObject *
copy_dict(PyObject *dict, PyObject *classes, int depth)
{
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t position = 0;
    PyObject *key, *item;
    while (PyDict_Next(dict, &position, &key, &item)) {
        PyObject *copied = copy_value(item, classes, depth);
        if (copied == NULL || PyDict_SetItem(out, key, copied) < 0) {
            Py_XDECREF(copied);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(copied);
    }
    return out;
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
        PyObject *copied = copy_value(*from, classes, depth);
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
    PyObject **items = PySequence_Fast_ITEMS(value);
    for (Py_ssize_t i = 0; i < size; i++) {
        /* A list can change size if copying runs code: it runs none (see the rules). */
        PyObject *copied = copy_value(items[i], classes, depth);
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
        return PySet_New(value);
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
