package gateway_test

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
)

var storeUser = unhidra.User{ID: "usr_someone", Name: "someone", Role: unhidra.RoleMember}

func mustKeySet(t *testing.T) *auth.KeySet {
	ks, err := auth.NewKeySet(auth.AlgEdDSA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func hdr(k, v string) http.Header { return http.Header{http.CanonicalHeaderKey(k): {v}} }

func hdrs(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h[http.CanonicalHeaderKey(kv[i])] = []string{kv[i+1]}
	}
	return h
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// maskedFrame builds a client frame (clients must mask).
func maskedFrame(b0 byte, payload []byte) []byte {
	var mask [4]byte
	rand.Read(mask[:])
	out := []byte{b0, 0x80 | byte(len(payload))}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i%4])
	}
	return out
}

// readCloseCode reads raw frames until a close frame and returns its code.
func readCloseCode(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for len(buf) >= 2 {
			op, plen := buf[0]&0x0f, int(buf[1]&0x7f)
			hdrLen := 2
			if plen == 126 {
				if len(buf) < 4 {
					break
				}
				plen, hdrLen = int(binary.BigEndian.Uint16(buf[2:4])), 4
			}
			if len(buf) < hdrLen+plen {
				break
			}
			payload := buf[hdrLen : hdrLen+plen]
			if op == 0x8 {
				if len(payload) < 2 {
					return 1005
				}
				return int(binary.BigEndian.Uint16(payload))
			}
			buf = buf[hdrLen+plen:]
		}
		if err != nil {
			t.Fatalf("no close frame before %v", err)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	return sumCounters(t, c, name, func(*dto.Metric) bool { return true })
}

// sumCounters adds up the counters named name that c collects and keep
// accepts.
func sumCounters(t *testing.T, c prometheus.Collector, name string, keep func(*dto.Metric) bool) float64 {
	t.Helper()
	return sumMetrics(c, name, func(pb *dto.Metric) (float64, bool) {
		return pb.GetCounter().GetValue(), pb.Counter != nil && keep(pb)
	})
}

// sumMetrics adds up value over the metrics named name that c collects,
// for those value accepts.
func sumMetrics(c prometheus.Collector, name string, value func(*dto.Metric) (float64, bool)) float64 {
	ch := make(chan prometheus.Metric, 256)
	go func() { c.Collect(ch); close(ch) }()
	total := 0.0
	for m := range ch {
		if !containsName(m.Desc().String(), name) {
			continue
		}
		var pb dto.Metric
		m.Write(&pb)
		if v, ok := value(&pb); ok {
			total += v
		}
	}
	return total
}

func containsName(desc, name string) bool {
	return len(desc) > 0 && (indexOf(desc, `"`+name+`"`) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// gaugeValue returns the value of the gauge named name that c collects.
func gaugeValue(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	return sumMetrics(c, name, func(pb *dto.Metric) (float64, bool) { return pb.GetGauge().GetValue(), pb.Gauge != nil })
}
