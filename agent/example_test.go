package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"os"
	"os/signal"

	"github.com/unhidra/unhidra/agent"
)

// A device maker's program: the key from the environment, a custom
// command, and a clean stop on Ctrl-C. Run returns a *TerminalError when
// the server revokes the key.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	a, err := agent.New(agent.Config{
		URL: "wss://unhidra.example.com/ws",
		Key: os.Getenv("UNHIDRA_DEVICE_KEY"),
	})
	if err != nil {
		log.Fatal(err)
	}
	a.Handle("led", func(ctx context.Context, params json.RawMessage) (any, error) {
		var p struct {
			On bool `json:"on"`
		}
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		// Switch the LED here.
		return map[string]bool{"on": p.On}, nil
	})
	var term *agent.TerminalError
	if err := a.Run(ctx); errors.As(err, &term) {
		log.Fatalf("giving up: %v", term)
	}
}
