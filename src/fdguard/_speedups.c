/*
 * fdguard._speedups: read every fd link of a process with the GIL released.
 *
 * Why C: a snapshot's floor is one readlinkat() per fd. From Python each call
 * also pays argument parsing and object creation while holding the GIL, which
 * serialises it with everything else. Here the whole readdir + readlinkat loop
 * runs without the GIL, so the socket-table dump that fdguard starts in a
 * thread at the same time really runs on the other core. Python objects are
 * built afterwards, in one pass.
 *
 * Semantics match ProcessDir.iter_fd_links: fds that vanish between readdir
 * and readlinkat (ENOENT) are skipped; any other error is raised as OSError
 * with its errno, for the caller to translate.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int fd;
    unsigned int off; /* offset of the target in the text buffer */
    unsigned int len;
} entry_t;

static PyObject *
read_fd_links(PyObject *self, PyObject *args)
{
    int dir_fd;
    if (!PyArg_ParseTuple(args, "i:read_fd_links", &dir_fd))
        return NULL;

    size_t cap = 1024, n = 0, text_cap = 1 << 16, text_len = 0;
    entry_t *entries = malloc(cap * sizeof(entry_t));
    char *text = malloc(text_cap);
    int err = 0;
    char failed[32] = "";
    if (entries == NULL || text == NULL) {
        free(entries);
        free(text);
        return PyErr_NoMemory();
    }

    Py_BEGIN_ALLOW_THREADS
    /* getdents64 on the caller's directory fd itself (rewound first): opening
     * a second fd here would show up in a snapshot of fdguard's own process. */
    char dents[32768];
    char buf[PATH_MAX];
    if (lseek(dir_fd, 0, SEEK_SET) < 0) {
        err = errno;
        goto out;
    }
    for (;;) {
        ssize_t got = getdents64(dir_fd, dents, sizeof(dents));
        if (got < 0) {
            err = errno;
            break;
        }
        if (got == 0)
            break;
        for (ssize_t pos = 0; pos < got;) {
            struct dirent64 *de = (struct dirent64 *)(dents + pos);
            pos += de->d_reclen;
            const char *name = de->d_name;
            if (name[0] < '0' || name[0] > '9')
                continue;
            ssize_t len = readlinkat(dir_fd, name, buf, sizeof(buf));
            if (len < 0) {
                if (errno == ENOENT)
                    continue; /* closed while being read */
                err = errno;
                snprintf(failed, sizeof(failed), "%s", name);
                goto out;
            }
            if (n == cap) {
                cap *= 2;
                entry_t *grown = realloc(entries, cap * sizeof(entry_t));
                if (grown == NULL) { err = ENOMEM; goto out; }
                entries = grown;
            }
            if (text_len + (size_t)len > text_cap) {
                while (text_len + (size_t)len > text_cap)
                    text_cap *= 2;
                char *grown = realloc(text, text_cap);
                if (grown == NULL) { err = ENOMEM; goto out; }
                text = grown;
            }
            memcpy(text + text_len, buf, (size_t)len);
            entries[n].fd = atoi(name);
            entries[n].off = (unsigned int)text_len;
            entries[n].len = (unsigned int)len;
            text_len += (size_t)len;
            n++;
        }
    }
out:
    Py_END_ALLOW_THREADS

    PyObject *result = NULL;
    if (err != 0) {
        errno = err;
        if (failed[0])
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, failed);
        else
            PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = PyList_New((Py_ssize_t)n);
    if (result == NULL)
        goto done;
    for (size_t i = 0; i < n; i++) {
        PyObject *target = PyUnicode_DecodeFSDefaultAndSize(
            text + entries[i].off, (Py_ssize_t)entries[i].len);
        PyObject *fd = target ? PyLong_FromLong(entries[i].fd) : NULL;
        PyObject *pair = fd ? PyTuple_Pack(2, fd, target) : NULL;
        Py_XDECREF(fd);
        Py_XDECREF(target);
        if (pair == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, pair);
    }
done:
    free(entries);
    free(text);
    return result;
}

static PyMethodDef methods[] = {
    {"read_fd_links", read_fd_links, METH_VARARGS,
     "read_fd_links(dir_fd) -> [(fd, target), ...]: readlinkat every entry of an open "
     "/proc/PID/fd directory, with the GIL released; vanished fds are skipped."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fdguard._speedups",
    "Optional C accelerator for reading fd links.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
