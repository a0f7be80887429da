package ws

import (
	"testing"
	"unsafe"
)

// Every idle connection is one Conn: a field that moves it past the 448-byte
// size class of the Go allocator costs 32 bytes per connection (measured by
// wsmeasure: heap 860 → 893 B per idle connection when the 101's slice was
// added as a field).
func TestConnSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 448 {
		t.Fatalf("Conn is %d bytes: past the 448-byte size class (idle memory per connection)", n)
	}
}
