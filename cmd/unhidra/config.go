package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"
)

// Configuration comes from three places, in this order of precedence:
// command-line flags, UNHIDRA_* environment variables, and an optional
// config file. All three use the same names: the flag --tls-cert is the
// variable UNHIDRA_TLS_CERT and the file key tls-cert. So every setting is
// declared once, as a flag, and the other two sources fill the flags that
// the command line left unset.

// maxConfigFileBytes bounds the config file; a bigger one is a mistake.
const maxConfigFileBytes = 1 << 20

// envName returns the environment variable for a flag name.
func envName(flagName string) string {
	return "UNHIDRA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args into fs, then fills unset flags from the
// environment and the config file (named by --config or UNHIDRA_CONFIG).
// fs must define a "config" flag.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 && fs.Name() == "serve" {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	fileValues := map[string]string{}
	configPath := fs.Lookup("config").Value.String()
	if !set["config"] && getenv(envName("config")) != "" {
		configPath = getenv(envName("config"))
	}
	if configPath != "" {
		var err error
		if fileValues, err = readConfigFile(configPath, fs); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		source, value := "", ""
		if v, ok := lookupEnv(getenv, envName(f.Name)); ok {
			source, value = envName(f.Name), v
		} else if v, ok := fileValues[f.Name]; ok {
			source, value = configPath+": "+f.Name, v
		} else {
			return
		}
		if err := fs.Set(f.Name, value); err != nil {
			errs = append(errs, usagef("%s: invalid value %q: %v", source, value, err))
		}
	})
	return errors.Join(errs...)
}

// lookupEnv treats an empty variable as unset, as shells make it easy to
// export one by accident.
func lookupEnv(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// readConfigFile reads "key = value" lines ('#' starts a comment). Keys are
// flag names; unknown keys are errors, so a typo is not silently ignored.
func readConfigFile(path string, fs *flag.FlagSet) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("config file: %v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFileBytes+1))
	if err != nil {
		return nil, usagef("config file %s: %v", path, err)
	}
	if len(data) > maxConfigFileBytes {
		return nil, usagef("config file %s is larger than %d bytes", path, maxConfigFileBytes)
	}
	values := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxConfigFileBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return nil, usagef("%s:%d: expected key = value", path, n)
		}
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		if strings.IndexFunc(value, unicode.IsControl) >= 0 {
			return nil, usagef("%s:%d: control characters in value", path, n)
		}
		if fs.Lookup(key) == nil || key == "config" {
			return nil, usagef("%s:%d: unknown setting %q", path, n, key)
		}
		if _, dup := values[key]; dup {
			return nil, usagef("%s:%d: %q set twice", path, n, key)
		}
		values[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("config file %s: %v", path, err)
	}
	return values, nil
}

// durationRange checks a duration setting.
func durationRange(name string, d, min, max time.Duration) error {
	if d < min || d > max {
		return usagef("--%s must be between %v and %v, got %v", name, min, max, d)
	}
	return nil
}

// floatRange checks a floating-point setting.
func floatRange(name string, v, min, max float64) error {
	if !(v >= min && v <= max) { // also false for NaN
		return usagef("--%s must be between %g and %g, got %g", name, min, max, v)
	}
	return nil
}

// intRange checks an integer setting.
func intRange(name string, v, min, max int) error {
	if v < min || v > max {
		return usagef("--%s must be between %d and %d, got %d", name, min, max, v)
	}
	return nil
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints its usage with the environment-variable names.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: unhidra %s\n\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s\n        %s%s [%s]\n", f.Name, f.Usage, def, envName(f.Name))
		})
	}
	return fs
}
