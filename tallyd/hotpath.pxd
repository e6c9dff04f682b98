# C types for the compiled form of hotpath.py (Cython reads this beside the .py).
cimport cython

cdef long long MAX_TIME, MAX_PUBLISHERS
cdef int LBRACE, LBRACKET

@cython.locals(n=Py_ssize_t, counted=Py_ssize_t, sp=Py_ssize_t, size=Py_ssize_t,
               start=Py_ssize_t, frame=bytes, topic=bytes, payload=bytes, fields=tuple,
               t=cython.longlong)
cpdef tuple receive(object recv, Py_ssize_t limit, object again, object loads,
                    object decode_error, object bad_json, dict seq_last, list gaps, list out,
                    set known, dict breakdowns, object now_minute, dict pending)

@cython.locals(d=dict, last=object)
cpdef track_seq(object obj, bytes topic, dict seq_last, list gaps)

@cython.locals(d=dict, data=dict)
cpdef bint count_one(object obj, set known, dict breakdowns, object now_minute, dict pending)

@cython.locals(counted=Py_ssize_t, i=Py_ssize_t, slow=list)
cpdef tuple count_known(list objs, set known, dict breakdowns, object now_minute, dict pending)

cdef long long NO_TIME, BAD_TIME
cdef int RBRACE, QUOTE, COLON, COMMA, MINUS, BACKSLASH, ZERO, NINE, DOT, LOWER_E, UPPER_E
cdef int K_TYPE, K_EVENT, K_ACCOUNT, K_DATA, K_TIME, K_SEQ, K_PUBLISHER, K_ID, K_DATA_ACCOUNT
cdef Py_ssize_t MAX_DIGITS
cdef long long _number

@cython.locals(last=object)
cpdef next_seq(object key, object seq, dict seq_last, list gaps)

@cython.locals(key=tuple)
cpdef bint count_cell(object account, object event, long long t, set known, dict breakdowns,
                      object now_minute, dict pending)

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, end=Py_ssize_t, seen=int, depth=int, kind=int,
               c=int, t=cython.longlong, v=cython.longlong, data_object=bint)
cpdef tuple scan(bytes p, Py_ssize_t start=*)

@cython.locals(i=Py_ssize_t)
cdef Py_ssize_t _find_space(bytes p, Py_ssize_t n) noexcept

@cython.locals(c=int)
cdef Py_ssize_t _ws(bytes p, Py_ssize_t i, Py_ssize_t n) noexcept

@cython.locals(c=int)
cdef Py_ssize_t _string_end(bytes p, Py_ssize_t i, Py_ssize_t n) noexcept

@cython.locals(start=Py_ssize_t, v=cython.longlong, negative=bint)
cdef Py_ssize_t _number_end(bytes p, Py_ssize_t i, Py_ssize_t n) noexcept

@cython.locals(size=Py_ssize_t)
cdef int _name_kind(bytes p, Py_ssize_t start, Py_ssize_t end, int depth) noexcept

@cython.locals(j=Py_ssize_t)
cdef bint _is(bytes p, Py_ssize_t start, Py_ssize_t size, bytes name) noexcept
