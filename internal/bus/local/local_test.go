package local_test

import (
	"testing"

	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/bus/bustest"
	"github.com/unhidra/unhidra/internal/bus/local"
)

func TestBus(t *testing.T) {
	bustest.Run(t, func(t *testing.T) (bus.Bus, bus.Bus) {
		b := &local.Bus{}
		t.Cleanup(func() { b.Close() })
		return b, b
	}, func(bus.Bus) {})
}
