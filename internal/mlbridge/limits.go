package mlbridge

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/protocol"
)

// InputLimits declare what a model accepts, so that the server refuses an
// input that would cost too much before dispatching it (in milliseconds,
// instead of tying a worker up for many seconds). Zero means unchecked.
type InputLimits struct {
	// Arrays bounds top-level array fields (elements).
	Arrays map[string]int
	// ArrayMaps bounds top-level objects of arrays (elements in all).
	ArrayMaps map[string]int
	// Chars bounds the characters of every string in the input together.
	Chars int
	// Worst is the documented time its largest accepted input takes on
	// a 2-core machine (docs/ml.md).
	Worst string
}

// BuiltinLimits are the declared limits of the built-in models. heap-trend
// is linear in the points (a segment is averaged into at most 720 bins) and
// grows with the lasting steps it fits: 1,200 points with 8 steps take
// about 0.15-0.3 s of CPU.
var BuiltinLimits = map[string]InputLimits{
	"heap-trend":        {Arrays: map[string]int{"series": 1_200, "reboots": 64}, Worst: "3 s"},
	"telemetry-anomaly": {Arrays: map[string]int{"points": 100_000}, ArrayMaps: map[string]int{"metrics": 200_000}, Worst: "1.5 s"},
	"summarize":         {Arrays: map[string]int{"messages": 5_000}, Chars: 1_000_000, Worst: "1 s"},
}

// CheckInput applies the model's declared limits: a too_large error (413)
// names the field and its limit; an input of the wrong shape is left to
// the model, which explains it better.
func CheckInput(model string, input json.RawMessage) error {
	l, ok := BuiltinLimits[model]
	if !ok {
		return nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(input, &top) != nil {
		return nil
	}
	for field, max := range l.Arrays {
		var arr []json.RawMessage
		if raw, ok := top[field]; ok && json.Unmarshal(raw, &arr) == nil && len(arr) > max {
			return unhidra.Errorf(protocol.ErrTooLarge, "%q has %d elements; %s accepts at most %d.", field, len(arr), model, max)
		}
	}
	for field, max := range l.ArrayMaps {
		var m map[string][]json.RawMessage
		if raw, ok := top[field]; ok && json.Unmarshal(raw, &m) == nil {
			n := 0
			for _, arr := range m {
				n += len(arr)
			}
			if n > max {
				return unhidra.Errorf(protocol.ErrTooLarge, "%q has %d elements in all; %s accepts at most %d.", field, n, model, max)
			}
		}
	}
	if l.Chars > 0 {
		if n := countChars(input); n > l.Chars {
			return unhidra.Errorf(protocol.ErrTooLarge, "The input holds %d characters of text; %s accepts at most %d.", n, model, l.Chars)
		}
	}
	return nil
}

// countChars counts the characters inside JSON strings (escapes count as
// the bytes they are written with: an upper bound).
func countChars(data []byte) int {
	n, in := 0, false
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case !in && r == '"':
			in = true
		case in && r == '\\':
			n++
			size++
			if i+1 < len(data) && data[i+1] == 'u' {
				size += 4
			}
		case in && r == '"':
			in = false
		case in:
			n++
		}
		i += size
	}
	return n
}
