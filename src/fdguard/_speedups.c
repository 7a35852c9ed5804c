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
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int fd;
    unsigned int off; /* offset of the target in the text buffer */
    unsigned int len;
    unsigned int mode; /* st_mode of the object behind a path fd (tagged mode), else 0 */
    unsigned long long ino;
} entry_t;

static PyObject *
read_fd_links(PyObject *self, PyObject *args)
{
    int dir_fd;
    int tagged = 0;
    if (!PyArg_ParseTuple(args, "i|p:read_fd_links", &dir_fd, &tagged))
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
            entries[n].mode = 0;
            entries[n].ino = 0;
            if (tagged && len > 0 && buf[0] == '/' &&
                !(len >= 7 && memcmp(buf, "/memfd:", 7) == 0)) {
                /* A path's type cannot be read from its text: stat the object
                 * behind the fd (following the magic link), here without the GIL. */
                struct stat st;
                if (fstatat(dir_fd, name, &st, 0) < 0) {
                    if (errno == ENOENT || errno == ENXIO)
                        continue; /* closed while being read */
                    err = errno;
                    snprintf(failed, sizeof(failed), "%s", name);
                    goto out;
                }
                entries[n].mode = (unsigned int)st.st_mode;
                entries[n].ino = (unsigned long long)st.st_ino;
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
        const char *t = text + entries[i].off;
        size_t tlen = entries[i].len;
        PyObject *target = PyUnicode_DecodeFSDefaultAndSize(t, (Py_ssize_t)tlen);
        PyObject *fd = target ? PyLong_FromLong(entries[i].fd) : NULL;
        PyObject *item = NULL;
        if (fd != NULL && !tagged) {
            item = PyTuple_Pack(2, fd, target);
        } else if (fd != NULL) {
            /* tag: 1 socket:[N], 2 pipe:[N], 3 a path (not a memfd), 0 anything else */
            long tag = 0;
            size_t skip = 0;
            if (tlen > 9 && memcmp(t, "socket:[", 8) == 0) {
                tag = 1;
                skip = 8;
            } else if (tlen > 7 && memcmp(t, "pipe:[", 6) == 0) {
                tag = 2;
                skip = 6;
            } else if (entries[i].mode != 0) {
                tag = 3;
            }
            PyObject *inode = NULL;
            if (skip) {
                unsigned long long v = 0;
                size_t j = skip;
                while (j < tlen && t[j] >= '0' && t[j] <= '9')
                    v = v * 10 + (unsigned long long)(t[j++] - '0');
                if (j == tlen - 1 && t[j] == ']' && j > skip)
                    inode = PyLong_FromUnsignedLongLong(v);
                else
                    tag = 0; /* not the shape the kernel prints: let Python decide */
            }
            PyObject *mode = Py_None;
            Py_INCREF(mode);
            if (tag == 3) {
                inode = PyLong_FromUnsignedLongLong(entries[i].ino);
                Py_SETREF(mode, PyLong_FromUnsignedLong(entries[i].mode));
            }
            if (inode == NULL && !PyErr_Occurred()) {
                inode = Py_None;
                Py_INCREF(inode);
            }
            PyObject *tagobj = inode && mode ? PyLong_FromLong(tag) : NULL;
            item = tagobj ? PyTuple_Pack(5, fd, target, tagobj, inode, mode) : NULL;
            Py_XDECREF(tagobj);
            Py_XDECREF(inode);
            Py_XDECREF(mode);
        }
        Py_XDECREF(fd);
        Py_XDECREF(target);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }
done:
    free(entries);
    free(text);
    return result;
}


/*
 * parse_inet_dump(data, wanted, entry_type, kind4, kind6, states) -> {inode: SocketEntry}
 *
 * The hot part of parsing a sock_diag inet dump: walk the netlink messages,
 * read each row's inode, and decode only the wanted rows. Endpoints are
 * formatted like the Python parser does ("1.2.3.4:80", "[::1]:80"; remote
 * None when its port is 0). Raises ValueError on a truncated message and
 * OSError on a netlink error reply; the caller maps those to fdguard errors.
 */
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <sys/socket.h>

static PyObject *
format_endpoint(int family, const unsigned char *addr, const unsigned char *port)
{
    char host[INET6_ADDRSTRLEN];
    char out[INET6_ADDRSTRLEN + 16];
    if (family != AF_INET)
        family = AF_INET6; /* as the Python parser: anything but v4 reads as v6 */
    unsigned int p = ((unsigned int)port[0] << 8) | port[1];
    if (inet_ntop(family, addr, host, sizeof(host)) == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    int len = family == AF_INET6 ? snprintf(out, sizeof(out), "[%s]:%u", host, p)
                                 : snprintf(out, sizeof(out), "%s:%u", host, p);
    return PyUnicode_FromStringAndSize(out, len);
}

static PyObject *
parse_inet_dump(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    PyObject *wanted;
    PyTypeObject *entry_type;
    PyObject *kind4, *kind6, *states;
    if (!PyArg_ParseTuple(args, "y*OO!OOO!:parse_inet_dump", &buf, &wanted, &PyType_Type,
                          &entry_type, &kind4, &kind6, &PyTuple_Type, &states))
        return NULL;
    if (!PyType_IsSubtype(entry_type, &PyTuple_Type) || PyTuple_GET_SIZE(states) != 256) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_TypeError, "entry_type must be a tuple type, states a 256-tuple");
        return NULL;
    }
    PyObject *out = PyDict_New();
    if (out == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    const unsigned char *data = buf.buf;
    size_t end = (size_t)buf.len, off = 0;
    const size_t hsize = sizeof(struct nlmsghdr), msize = sizeof(struct inet_diag_msg);
    while (off < end) {
        if (off + hsize > end) {
            PyErr_Format(PyExc_ValueError, "truncated netlink header at byte %zu", off);
            goto fail;
        }
        struct nlmsghdr hdr;
        memcpy(&hdr, data + off, hsize);
        if (hdr.nlmsg_len < hsize || off + hdr.nlmsg_len > end) {
            PyErr_Format(PyExc_ValueError, "truncated netlink message at byte %zu", off);
            goto fail;
        }
        if (hdr.nlmsg_type == NLMSG_DONE)
            break;
        if (hdr.nlmsg_type == NLMSG_ERROR) {
            int code = 0;
            if (off + hsize + sizeof(int) > end) {
                PyErr_SetString(PyExc_ValueError, "truncated netlink error message");
                goto fail;
            }
            memcpy(&code, data + off + hsize, sizeof(int));
            if (code != 0) {
                errno = code < 0 ? -code : code;
                PyErr_SetFromErrno(PyExc_OSError);
                goto fail;
            }
        } else if (hdr.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
            if (hdr.nlmsg_len < hsize + msize) {
                PyErr_Format(PyExc_ValueError, "short inet_diag_msg (%u bytes)", hdr.nlmsg_len);
                goto fail;
            }
            struct inet_diag_msg m;
            memcpy(&m, data + off + hsize, msize);
            PyObject *inode = PyLong_FromUnsignedLong(m.idiag_inode);
            if (inode == NULL)
                goto fail;
            int want = wanted == Py_None ? 1 : PySequence_Contains(wanted, inode);
            if (want < 0) {
                Py_DECREF(inode);
                goto fail;
            }
            if (want) {
                const unsigned char *sport = (const unsigned char *)&m.id.idiag_sport;
                const unsigned char *dport = (const unsigned char *)&m.id.idiag_dport;
                PyObject *local = format_endpoint(m.idiag_family,
                                                  (const unsigned char *)m.id.idiag_src, sport);
                PyObject *remote = NULL;
                if (local != NULL) {
                    if (dport[0] == 0 && dport[1] == 0) {
                        remote = Py_None;
                        Py_INCREF(remote);
                    } else {
                        remote = format_endpoint(m.idiag_family,
                                                 (const unsigned char *)m.id.idiag_dst, dport);
                    }
                }
                /* SocketEntry(inode, kind, state, local, remote, peer_inode=None,
                 * recv_q, send_q, uid), built as its tuple type does. */
                PyObject *row = NULL;
                if (remote != NULL) {
                    PyObject *rq = PyLong_FromUnsignedLong(m.idiag_rqueue);
                    PyObject *wq = PyLong_FromUnsignedLong(m.idiag_wqueue);
                    PyObject *uid = PyLong_FromUnsignedLong(m.idiag_uid);
                    if (rq && wq && uid)
                        row = entry_type->tp_alloc(entry_type, 9);
                    if (row != NULL) {
                        PyObject *kind = m.idiag_family == AF_INET ? kind4 : kind6;
                        PyObject *state = PyTuple_GET_ITEM(states, m.idiag_state);
                        Py_INCREF(inode);
                        Py_INCREF(kind);
                        Py_INCREF(state);
                        Py_INCREF(local);
                        Py_INCREF(remote);
                        Py_INCREF(Py_None);
                        PyTuple_SET_ITEM(row, 0, inode);
                        PyTuple_SET_ITEM(row, 1, kind);
                        PyTuple_SET_ITEM(row, 2, state);
                        PyTuple_SET_ITEM(row, 3, local);
                        PyTuple_SET_ITEM(row, 4, remote);
                        PyTuple_SET_ITEM(row, 5, Py_None);
                        PyTuple_SET_ITEM(row, 6, rq);
                        PyTuple_SET_ITEM(row, 7, wq);
                        PyTuple_SET_ITEM(row, 8, uid);
                    } else {
                        Py_XDECREF(rq);
                        Py_XDECREF(wq);
                        Py_XDECREF(uid);
                    }
                }
                Py_XDECREF(local);
                Py_XDECREF(remote);
                if (row == NULL || PyDict_SetItem(out, inode, row) < 0) {
                    Py_XDECREF(row);
                    Py_DECREF(inode);
                    goto fail;
                }
                Py_DECREF(row);
            }
            Py_DECREF(inode);
        }
        off += (hdr.nlmsg_len + 3u) & ~3u;
    }
    PyBuffer_Release(&buf);
    return out;
fail:
    PyBuffer_Release(&buf);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_fd_links", read_fd_links, METH_VARARGS,
     "read_fd_links(dir_fd, tagged=False) -> [(fd, target), ...]: readlinkat every entry "
     "of an open /proc/PID/fd directory, with the GIL released; vanished fds are skipped. "
     "tagged=True gives (fd, target, tag, inode, mode): tag 1 socket, 2 pipe, 3 path "
     "(with the st_ino and st_mode of the object behind it), 0 other."},
    {"parse_inet_dump", parse_inet_dump, METH_VARARGS,
     "parse_inet_dump(data, wanted, entry_type, kind4, kind6, states) -> {inode: entry} "
     "for the wanted inodes (all if wanted is None) of a sock_diag inet dump; entry_type "
     "is SocketEntry, states maps the kernel's state codes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fdguard._speedups",
    "Optional C accelerators: reading fd links, parsing sock_diag dumps.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
