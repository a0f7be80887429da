// Package schema holds the JSON Schemas (draft 2020-12) of the frames the
// server sends, one file per frame type (<type>.json), and validates a
// frame against the schema of its type. The protocol tests use it on
// every frame they receive; clients may use it to check a server.
package schema

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.json
var files embed.FS

const base = "https://github.com/unhidra/unhidra/protocol/schema/"

var (
	once    sync.Once
	schemas map[string]*jsonschema.Schema
	loadErr error
)

func load() {
	names, err := fs.Glob(files, "*.json")
	if err != nil {
		loadErr = err
		return
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range names {
		data, err := files.ReadFile(name)
		if err != nil {
			loadErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			loadErr = fmt.Errorf("schema %s: %w", name, err)
			return
		}
		if err := c.AddResource(base+name, doc); err != nil {
			loadErr = fmt.Errorf("schema %s: %w", name, err)
			return
		}
	}
	schemas = map[string]*jsonschema.Schema{}
	for _, name := range names {
		s, err := c.Compile(base + name)
		if err != nil {
			loadErr = fmt.Errorf("schema %s: %w", name, err)
			return
		}
		schemas[strings.TrimSuffix(name, ".json")] = s
	}
}

// Validate checks one server frame (a JSON object with a "type") against
// the schema of its type. A frame whose type has no schema is an error.
func Validate(data []byte) error {
	once.Do(load)
	if loadErr != nil {
		return fmt.Errorf("frame schemas: %w", loadErr)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("server frame is not JSON: %.200q", data)
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("server frame is not an object: %.200q", data)
	}
	s, ok := schemas[head.Type]
	if !ok {
		return fmt.Errorf("server frame of type %q has no schema in protocol/schema: %.200s", head.Type, data)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("server frame does not match protocol/schema/%s.json: %v\n%s", head.Type, err, data)
	}
	return nil
}
