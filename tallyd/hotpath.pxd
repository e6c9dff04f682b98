# C types for the compiled form of hotpath.py (Cython reads this beside the .py).
cimport cython

cdef long long MAX_TIME, MAX_PUBLISHERS
cdef int LBRACE, LBRACKET

@cython.locals(n=Py_ssize_t, counted=Py_ssize_t, sp=Py_ssize_t, c=int, frame=bytes,
               topic=bytes, payload=bytes)
cpdef tuple receive(object recv, Py_ssize_t limit, object again, object loads,
                    object decode_error, object bad_json, dict seq_last, list gaps, list out,
                    set known, dict breakdowns, object now_minute, dict pending)

@cython.locals(d=dict, last=object)
cpdef track_seq(object obj, bytes topic, dict seq_last, list gaps)

@cython.locals(d=dict, data=dict, key=tuple)
cpdef bint count_one(object obj, set known, dict breakdowns, object now_minute, dict pending)

@cython.locals(counted=Py_ssize_t, i=Py_ssize_t, slow=list)
cpdef tuple count_known(list objs, set known, dict breakdowns, object now_minute, dict pending)
