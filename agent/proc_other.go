//go:build !unix

package agent

import "os/exec"

// killGroup leaves the default: only the process itself is killed.
func killGroup(*exec.Cmd) {}
