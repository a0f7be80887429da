package ws

import (
	"math/bits"
	"sync"
)

// Message buffers hold a message (or control frame) that arrives in more
// than one read. OnMessage's data is only valid during the call, so the
// buffer goes back to a pool right after: a busy connection reuses buffers
// instead of allocating and zeroing one per message, and an idle one holds
// none.
const (
	minBufShift = 9  // 512 B
	maxBufShift = 20 // 1 MiB; larger buffers are allocated and dropped
)

var msgBufPools [maxBufShift - minBufShift + 1]sync.Pool

// bufClass returns the pool index for a buffer of at least n bytes, or -1
// if n is above the largest class.
func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxBufShift {
		return -1
	}
	return shift - minBufShift
}

// getMsgBuf returns an empty buffer with capacity of at least n, and at most
// limit unless n itself is larger (a pooled class above limit is not used:
// the parser promises to hold no more than the message size limit).
func getMsgBuf(n, limit int) []byte {
	class := bufClass(n)
	if class < 0 || 1<<(class+minBufShift) > max(limit, n) {
		return make([]byte, 0, n)
	}
	if bp, ok := msgBufPools[class].Get().(*[]byte); ok {
		return (*bp)[:0]
	}
	return make([]byte, 0, 1<<(class+minBufShift))
}

// putMsgBuf recycles a buffer obtained from getMsgBuf; buffers whose
// capacity is not exactly a class size are left to the garbage collector.
func putMsgBuf(b []byte) {
	c := cap(b)
	if c < 1<<minBufShift || c > 1<<maxBufShift || c&(c-1) != 0 {
		return
	}
	b = b[:0]
	msgBufPools[bits.Len(uint(c))-1-minBufShift].Put(&b)
}
