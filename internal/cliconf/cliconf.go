// Package cliconf is how every Unhidra command reads its configuration:
// flags, then UNHIDRA_* environment variables, then an optional
// `key = value` file, all under the same names (the flag --tls-cert is the
// variable UNHIDRA_TLS_CERT and the file key tls-cert). Settings are
// declared once, as flags; the other two sources fill the flags the command
// line left unset. It depends on the standard library only, so the slim
// device agent uses it too.
package cliconf

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// MaxFileBytes bounds a config file; a bigger one is a mistake.
const MaxFileBytes = 1 << 20

// UsageError marks errors in the command line or configuration (commands
// exit with status 2 for them).
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error { return UsageError{fmt.Sprintf(format, args...)} }

// EnvName returns the environment variable for a flag name.
func EnvName(flagName string) string {
	return "UNHIDRA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then fills unset flags from the environment
// and the config file (named by --config or UNHIDRA_CONFIG). fs must
// define a "config" flag. An empty variable counts as unset, as shells make
// it easy to export one by accident.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return Usagef("%v", err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	path := fs.Lookup("config").Value.String()
	if !set["config"] && getenv(EnvName("config")) != "" {
		path = getenv(EnvName("config"))
	}
	file := map[string]string{}
	if path != "" {
		var err error
		if file, err = ReadFile(path, fs); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		source, value := EnvName(f.Name), getenv(EnvName(f.Name))
		if value == "" {
			v, ok := file[f.Name]
			if !ok {
				return
			}
			source, value = path+": "+f.Name, v
		}
		if err := fs.Set(f.Name, value); err != nil {
			errs = append(errs, Usagef("%s: invalid value %q: %v", source, value, err))
		}
	})
	return errors.Join(errs...)
}

// ReadFile reads "key = value" lines ('#' starts a comment; a value may be
// double-quoted). Keys are flag names of fs; unknown and repeated keys are
// errors, so a typo is not silently ignored.
func ReadFile(path string, fs *flag.FlagSet) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Usagef("config file: %v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, Usagef("config file %s: %v", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, Usagef("config file %s is larger than %d bytes", path, MaxFileBytes)
	}
	values := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxFileBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return nil, Usagef("%s:%d: expected key = value", path, n)
		}
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		if strings.IndexFunc(value, unicode.IsControl) >= 0 {
			return nil, Usagef("%s:%d: control characters in value", path, n)
		}
		if fs.Lookup(key) == nil || key == "config" {
			return nil, Usagef("%s:%d: unknown setting %q", path, n, key)
		}
		if _, dup := values[key]; dup {
			return nil, Usagef("%s:%d: %q set twice", path, n, key)
		}
		values[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, Usagef("config file %s: %v", path, err)
	}
	return values, nil
}

// NewFlagSet returns a FlagSet that reports errors instead of exiting and
// whose usage prints the synopsis, an optional note, and every flag with
// its environment variable.
func NewFlagSet(name, synopsis, note string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\n", synopsis)
		if note != "" {
			fmt.Fprintf(stderr, "%s\n\n", note)
		}
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s\n        %s%s [%s]\n", f.Name, f.Usage, def, EnvName(f.Name))
		})
	}
	return fs
}
