package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON Schemas of the frames the server sends (protocol/schema, one
// file per frame type) are checked against every frame the protocol tests
// read: checkFrame is called by their read helpers.

var (
	schemaOnce sync.Once
	schemas    map[string]*jsonschema.Schema
	schemaErr  error
	sampleMu   sync.Mutex
)

func loadFrameSchemas() {
	dir := "../../protocol/schema"
	entries, err := os.ReadDir(dir)
	if err != nil {
		schemaErr = err
		return
	}
	c := jsonschema.NewCompiler()
	schemas = map[string]*jsonschema.Schema{}
	for _, e := range entries {
		name := e.Name()
		if filepath.Ext(name) != ".json" {
			continue
		}
		path, _ := filepath.Abs(filepath.Join(dir, name))
		s, err := c.Compile(path)
		if err != nil {
			schemaErr = fmt.Errorf("schema %s: %w", name, err)
			return
		}
		schemas[name[:len(name)-len(".json")]] = s
	}
}

// checkFrame validates one server frame against the schema of its type.
// With UNHIDRA_FRAME_SAMPLES set it also appends the frame to that file.
func checkFrame(t testing.TB, data []byte) {
	t.Helper()
	if f := os.Getenv("UNHIDRA_FRAME_SAMPLES"); f != "" {
		sampleMu.Lock()
		if out, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			out.Write(append(bytes.TrimSpace(data), '\n'))
			out.Close()
		}
		sampleMu.Unlock()
		return // collecting samples for new schemas, not checking
	}
	if err := validateFrame(data); err != nil {
		t.Fatal(err)
	}
}

func validateFrame(data []byte) error {
	schemaOnce.Do(loadFrameSchemas)
	if schemaErr != nil {
		return fmt.Errorf("frame schemas: %w", schemaErr)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("server frame is not JSON: %q", data)
	}
	var head struct {
		Type string `json:"type"`
	}
	json.Unmarshal(data, &head)
	s, ok := schemas[head.Type]
	if !ok {
		return fmt.Errorf("server frame of type %q has no schema in protocol/schema: %s", head.Type, data)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("server frame does not match protocol/schema/%s.json: %v\n%s", head.Type, err, data)
	}
	return nil
}

// TestFrameSchemas_RejectWrongFrames: the schemas are not vacuous.
func TestFrameSchemas_RejectWrongFrames(t *testing.T) {
	good := `{"type":"message","channel":"c","seq":3,"message_id":"m","from":"u","from_name":"ann","body":"hi","ts":"2026-12-07T00:00:00Z"}`
	if err := validateFrame([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"type":"message","channel":"c","seq":"3","message_id":"m","from":"u","from_name":"ann","body":"hi","ts":"2026-12-07T00:00:00Z"}`,
		`{"type":"message","channel":"c","message_id":"m","from":"u","from_name":"ann","body":"hi","ts":"2026-12-07T00:00:00Z"}`,
		`{"type":"welcome"}`,
		`{"type":"no_such_frame"}`,
		`{"type":"error","code":5,"message":"x"}`,
		`not json`,
	} {
		if err := validateFrame([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
