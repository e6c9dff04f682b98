# C types for the compiled form of plainget.py (Cython reads this beside the .py).
cimport cython

cdef Py_ssize_t MAX_HEAD
cdef int CR, LF, SP, HTAB, COLON, SLASH, QUESTION
cdef int H_OTHER, H_AGENT, H_FORWARDED, H_CONNECTION, H_LENGTH, H_REFUSE, H_HOST
cdef int CLOSE, KEEP, KEEP_ALIVE_1_0
cdef bytes TARGET_OK, TOKEN_OK

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, target=Py_ssize_t, query=Py_ssize_t,
               target_end=Py_ssize_t, name=Py_ssize_t, value=Py_ssize_t,
               value_end=Py_ssize_t, c=int, minor=int, kind=int, seen=int, keep_alive=int,
               agent=bytes, forwarded=bytes)
cpdef tuple plain_get(bytes data, Py_ssize_t start)

cdef tuple _HEADERS

@cython.locals(name=bytes, kind=int)
cdef int _header_kind(bytes data, Py_ssize_t at, Py_ssize_t size) except -1

@cython.locals(j=Py_ssize_t)
cdef bint _is(bytes data, Py_ssize_t at, bytes text) noexcept

@cython.locals(j=Py_ssize_t, c=int)
cdef bint _is_lower(bytes data, Py_ssize_t at, Py_ssize_t size, bytes lower) noexcept
