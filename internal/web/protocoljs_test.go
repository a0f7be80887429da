package web_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/unhidra/unhidra/internal/web/jsgen"
)

// The web app's protocol module is generated from package protocol; a
// change there without `go generate ./internal/web` fails here.
func TestProtocolModuleIsCurrent(t *testing.T) {
	want, err := jsgen.Generate("../../protocol")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("static/js/protocol.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("static/js/protocol.js is not what package protocol generates: run go generate ./internal/web")
	}
}

// The generator sees the constants it must (a sample of each kind).
func TestProtocolModuleContent(t *testing.T) {
	src, err := jsgen.Generate("../../protocol")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`Subprotocol = "unhidra.v1"`, `ConversationAdded: "conversation_added",`,
		`TokenExpired: 4005,`, `Kicked: 4502,`, `NotFound: "not_found",`, `NotMember: "not_member",`} {
		if !bytes.Contains(src, []byte(want)) {
			t.Errorf("generated module lacks %s", want)
		}
	}
}
