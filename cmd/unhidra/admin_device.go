package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/store"
)

// The device commands work on the store directly. A running server closes
// the live connections of a device revoked or rotated here at its next key
// check (every 500 ms), not at once.

func (a *adminCmd) registry() *device.Registry {
	return &device.Registry{Store: a.store, MaxPerOwner: a.cfg.maxDevicesPerOwner}
}

func (a *adminCmd) deviceCreate(ctx context.Context, args []string) error {
	fs := newFlagSet("admin device create", "admin device create NAME --owner USER [--type TYPE] [--capabilities JSON] [--count N --keys-file FILE]", a.env.stderr)
	ownerName := fs.String("owner", "", "the owning user's name (required)")
	typ := fs.String("type", "generic", "device type")
	caps := fs.String("capabilities", "", "capabilities as a JSON object")
	count := fs.Int("count", 1, "provision this many devices, named NAME-0001, NAME-0002, …")
	keysFile := fs.String("keys-file", "", "with --count: write the keys there, one per line (created 0600), instead of printing them")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	if *ownerName == "" {
		return usagef("--owner is required")
	}
	if *count < 1 || *count > 100_000 {
		return usagef("--count must be 1 to 100,000")
	}
	if *count > 1 {
		return a.deviceProvision(ctx, name, *ownerName, *typ, *caps, *count, *keysFile)
	}
	owner, err := a.store.UserByName(ctx, *ownerName)
	if err != nil {
		return cliError(err)
	}
	reg := device.Registration{Name: name, Type: *typ}
	if *caps != "" {
		reg.Capabilities = json.RawMessage(*caps)
	}
	d, key, err := a.registry().Register(ctx, owner, reg)
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintf(a.env.stdout, "created device %s (%s) for %s\n", d.ID, d.Name, owner.Name)
	fmt.Fprintf(a.env.stdout, "API key (shown once, store it now): %s\n", key)
	return nil
}

func (a *adminCmd) deviceList(ctx context.Context, args []string) error {
	fs := newFlagSet("admin device list", "admin device list [--owner USER]", a.env.stderr)
	ownerName := fs.String("owner", "", "only this user's devices")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	f := store.DeviceFilter{Limit: 1000}
	if *ownerName != "" {
		owner, err := a.store.UserByName(ctx, *ownerName)
		if err != nil {
			return cliError(err)
		}
		f.OwnerID = owner.ID
	}
	tw := tabwriter.NewWriter(a.env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTYPE\tOWNER\tSTATE\tLAST SEEN\tREBOOTS")
	for {
		list, err := a.store.Devices(ctx, f)
		if err != nil {
			return err
		}
		for _, d := range list {
			state, seen := "active", "never"
			if d.Revoked() {
				state = "revoked"
			}
			if !d.LastSeen.IsZero() {
				seen = d.LastSeen.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", d.ID, d.Name, d.Type, d.OwnerID, state, seen, d.Reboots)
		}
		if len(list) < f.Limit {
			break
		}
		f.After = list[len(list)-1].ID
	}
	return tw.Flush()
}

func (a *adminCmd) deviceID(args []string, cmd string) (string, error) {
	fs := newFlagSet(cmd, cmd+" ID", a.env.stderr)
	return parseWithName(fs, args)
}

func (a *adminCmd) deviceRotateKey(ctx context.Context, args []string) error {
	id, err := a.deviceID(args, "admin device rotate-key")
	if err != nil {
		return err
	}
	d, key, err := a.registry().RotateKey(ctx, nil, id)
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintf(a.env.stdout, "rotated the key of %s (%s); the old key no longer works\n", d.ID, d.Name)
	fmt.Fprintf(a.env.stdout, "API key (shown once, store it now): %s\n", key)
	return nil
}

func (a *adminCmd) deviceRevoke(ctx context.Context, args []string) error {
	id, err := a.deviceID(args, "admin device revoke")
	if err != nil {
		return err
	}
	d, err := a.registry().Revoke(ctx, nil, id)
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintf(a.env.stdout, "revoked %s (%s)\n", d.ID, d.Name)
	return nil
}

// deviceProvision registers count devices for one owner and writes their
// keys, one per line, to keysFile (the fleet simulator's input) or stdout.
func (a *adminCmd) deviceProvision(ctx context.Context, prefix, ownerName, typ, caps string, count int, keysFile string) error {
	owner, err := a.store.UserByName(ctx, ownerName)
	if err != nil {
		return cliError(err)
	}
	out := a.env.stdout
	if keysFile != "" {
		f, err := os.OpenFile(keysFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("keys file: %w", err)
		}
		defer f.Close()
		out = f
	}
	reg := a.registry()
	for i := 1; i <= count; i++ {
		r := device.Registration{Name: fmt.Sprintf("%s-%04d", prefix, i), Type: typ}
		if caps != "" {
			r.Capabilities = json.RawMessage(caps)
		}
		_, key, err := reg.Register(ctx, owner, r)
		if err != nil {
			return fmt.Errorf("device %d of %d: %w", i, count, cliError(err))
		}
		fmt.Fprintln(out, key)
	}
	if keysFile != "" {
		fmt.Fprintf(a.env.stdout, "created %d devices for %s; keys in %s\n", count, owner.Name, keysFile)
	}
	return nil
}
