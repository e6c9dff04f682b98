# C types for the compiled form of hotpath.py (Cython reads this beside the .py).
cimport cython

cdef long long MAX_TIME, MAX_NAME, MAX_PUBLISHERS
cdef str ROLLUP
cdef bytes ROLLUP_BYTES, PREFIX_BYTES
cdef int MAX_DEPTH, SLOW, COUNTED, QUEUED, SKIPPED, REFUSED
cdef long long NO_TIME, BAD_TIME
cdef int LBRACE, RBRACE, LBRACKET, RBRACKET, QUOTE, COLON, COMMA
cdef int MINUS, PLUS, BACKSLASH, SPACE, DOT, LOWER_E, UPPER_E
cdef int ZERO, NINE, LOWER_T, LOWER_F, LOWER_N, LOWER_U, UPPER_T, UPPER_Z
cdef bytes _PLAIN
cdef const unsigned char* _PLAIN_T
cdef Py_ssize_t MAX_DIGITS, MAX_FLOAT_DIGITS
cdef int K_TYPE, K_EVENT, K_ACCOUNT, K_DATA, K_TIME, K_SEQ, K_PUBLISHER, K_ID, K_PROP

cdef long long _number
cdef bint _integer
cdef object _seq, _publisher, _eid, _bval, _OTHER
cdef long long _minute
cdef int _kind
cdef Py_ssize_t _acc_s, _acc_e, _ev_s, _ev_e
cdef Py_ssize_t NAME_SLOTS
cdef unsigned int FNV_BASIS, FNV_PRIME, MASK32

cdef class NameCache:
    cdef public list bytes
    cdef public list text

cdef class Counter:
    cdef public set known
    cdef public dict breakdowns
    cdef public long long now_minute
    cdef public dict cells
    cdef public list ids
    cdef public str prop
    cdef public bytes prop_name
    cdef public dict coarse
    cdef public object coarsen
    cdef public object shard
    cdef public dict owned
    cdef public long long skipped
    cdef public long long new_room
    cdef public list refused
    cdef set _new
    cdef list _name_bytes
    cdef list _name_text

    @cython.locals(n=Py_ssize_t, end=Py_ssize_t)
    cpdef int event(self, bytes p, Py_ssize_t start=*)

    @cython.locals(account=object, event=object)
    cdef int _take(self, const unsigned char* p) except? -1

    @cython.locals(fresh=cython.longlong, account=object, event=object)
    cdef int _new_past_limit(self, const unsigned char* p, bint new_account, bint new_event) except -1

    @cython.locals(h=cython.uint, j=Py_ssize_t, slot=Py_ssize_t, cached=object, text=str)
    cdef object _known(self, const unsigned char* p, Py_ssize_t start, Py_ssize_t end)

    @cython.locals(minute=cython.longlong, breakdowns=dict, cells=dict, key=tuple, at=object)
    cdef int _count(self, object account, object event) except? -1

    @cython.locals(d=dict, src=dict, b=bytes, known=set)
    cpdef int count_one(self, object obj)

@cython.locals(n=Py_ssize_t, counted=Py_ssize_t, sp=Py_ssize_t, size=Py_ssize_t,
               start=Py_ssize_t, end=Py_ssize_t, c=int, r=int, frame=bytes, topic=bytes,
               payload=bytes, prop_name=bytes)
cpdef tuple receive(Counter counter, object recv, Py_ssize_t limit, object again, object loads,
                    object decode_error, object unpack, object bad_json, object bad_msgpack,
                    dict seq_last, list gaps, list out)

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, eol=Py_ssize_t,
               index=Py_ssize_t, last=Py_ssize_t, prop_name=bytes, r=int)
cpdef Py_ssize_t count_body(Counter counter, bytes p, list slow) except? -2

@cython.locals(counted=Py_ssize_t, i=Py_ssize_t, r=int)
cpdef Py_ssize_t count_objs(Counter counter, list objs, list slow) except? -1

@cython.locals(d=dict, last=object)
cpdef track_seq(object obj, bytes topic, dict seq_last, list gaps)

@cython.locals(last=object)
cpdef next_seq(object key, object seq, dict seq_last, list gaps)

cpdef long long time_minute(bytes text) except? -3

@cython.locals(seen=int, seen_data=int, kind=int, c=int, end=Py_ssize_t)
cdef Py_ssize_t _read(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, bytes prop_name) except? -2

@cython.locals(seen=int, kind=int, end=Py_ssize_t)
cdef Py_ssize_t _read_data(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, bytes prop_name) except? -2

@cython.locals(j=Py_ssize_t)
cdef object _plain_value(const unsigned char* p, Py_ssize_t start, Py_ssize_t end)

@cython.locals(kind=object)
cdef int _escaped_kind(const unsigned char* p, Py_ssize_t quote, Py_ssize_t end, bytes prop_name, int depth) except? -1

@cython.locals(end=Py_ssize_t)
cdef Py_ssize_t _member(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, bytes prop_name,
                        int depth, int seen) except? -2

@cython.locals(size=Py_ssize_t)
cdef int _name_kind(const unsigned char* p, Py_ssize_t start, Py_ssize_t end, bytes prop_name,
                    int depth) noexcept

@cython.locals(t=double)
cdef long long _number_minute(const unsigned char* p, Py_ssize_t start, Py_ssize_t end) except? -3

@cython.locals(year=cython.longlong, month=cython.longlong, day=cython.longlong,
               hour=cython.longlong, minute=cython.longlong, second=cython.longlong,
               j=Py_ssize_t, k=Py_ssize_t, c=int, offset=cython.longlong, oh=cython.longlong,
               om=cython.longlong, m=cython.longlong)
cdef long long _time_minute(const unsigned char* p, Py_ssize_t s, Py_ssize_t e) noexcept

@cython.locals(v=cython.longlong, j=Py_ssize_t, c=int)
cdef long long _digits(const unsigned char* p, Py_ssize_t i, Py_ssize_t count) noexcept

cdef long long _month_days(long long year, long long month) noexcept

@cython.locals(era=cython.longlong, yoe=cython.longlong, doy=cython.longlong,
               doe=cython.longlong)
cdef long long _days_from_civil(long long year, long long month, long long day) noexcept

@cython.locals(c=int, close=int)
cdef Py_ssize_t _skip_value(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, int depth) noexcept

@cython.locals(c=int, v=cython.longlong, lo=int, hi=int, more=Py_ssize_t, j=Py_ssize_t)
cdef Py_ssize_t _skip_string(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept

cdef bint _is_escape(int c) noexcept

@cython.locals(v=cython.longlong, j=Py_ssize_t, c=int)
cdef long long _hex4(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept

@cython.locals(negative=bint, start=Py_ssize_t, v=cython.longlong, digits=Py_ssize_t,
               integer=bint, k=Py_ssize_t, up=bint, exp=Py_ssize_t)
cdef Py_ssize_t _number_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept

@cython.locals(c=int)
cdef Py_ssize_t _ws(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept

@cython.locals(j=Py_ssize_t)
cdef bint _valid_name(const unsigned char* p, Py_ssize_t start, Py_ssize_t end) noexcept

@cython.locals(size=Py_ssize_t, suffix=Py_ssize_t)
cdef bint _is_rollup(const unsigned char* p, Py_ssize_t start, Py_ssize_t end) noexcept

@cython.locals(j=Py_ssize_t, c=int)
cdef bint _blank(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept

@cython.locals(c=int)
cdef Py_ssize_t _string_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept

@cython.locals(i=Py_ssize_t)
cdef Py_ssize_t _find_space(const unsigned char* p, Py_ssize_t n) noexcept

cpdef bint is_msgpack(int c) noexcept

@cython.locals(j=Py_ssize_t)
cdef bint _is(const unsigned char* p, Py_ssize_t start, Py_ssize_t size, bytes name) noexcept
