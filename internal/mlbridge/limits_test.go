package mlbridge_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/mlbridge"
	"github.com/unhidra/unhidra/protocol"
)

func TestCheckInput(t *testing.T) {
	points := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat("[1,2],", n), ",") + "]" }
	for _, c := range []struct {
		model, input string
		tooLarge     bool
	}{
		{"heap-trend", `{"series":` + points(1200) + `}`, false},
		{"heap-trend", `{"series":` + points(1201) + `}`, true},
		{"heap-trend", `{"series":[[1,2]],"reboots":[` + strings.TrimSuffix(strings.Repeat("1,", 65), ",") + `]}`, true},
		{"heap-trend", `{"series":"nonsense"}`, false}, // the model explains shape errors
		{"heap-trend", `[1,2,3]`, false},
		{"telemetry-anomaly", `{"metrics":{"a":` + points(100_000) + `,"b":` + points(100_001) + `}}`, true},
		{"telemetry-anomaly", `{"points":` + points(100_001) + `}`, true},
		{"summarize", `{"messages":[{"from":"a","body":"` + strings.Repeat("é", 1_000_001) + `"}]}`, true},
		{"summarize", `{"messages":[{"from":"a","body":"` + strings.Repeat(`\"`, 400_000) + `"}]}`, false},
		{"someone-elses-model", `{"series":` + points(5000) + `}`, false},
	} {
		err := mlbridge.CheckInput(c.model, json.RawMessage(c.input))
		if got := unhidra.ErrorCode(err) == protocol.ErrTooLarge; got != c.tooLarge {
			t.Errorf("%s %.60s…: %v, want too large = %v", c.model, c.input, err, c.tooLarge)
		}
	}
}
