package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/store/sqldb"
	"github.com/unhidra/unhidra/protocol"
)

const adminSynopsis = `admin [--data-dir DIR] [--store URL] <command> [args]

Commands:
  user create NAME [--admin|--role ROLE] [--password-stdin]
  user list
  user reset-password NAME [--password-stdin]
  user disable NAME
  user enable NAME
  keys rotate
  cluster-key create [--activate-in DURATION]
  cluster-key list
  device create NAME --owner USER [--type TYPE] [--capabilities JSON]
  device list [--owner USER]
  device rotate-key ID
  device revoke ID
  backup --out FILE            (SQLite: database + keys, while serving)
  restore --from FILE [--force] (SQLite; the server must be stopped)

Flags`

// runAdmin administers the store directly, without a running server. It
// works beside a running server (SQLite allows one writer at a time and
// waits; PostgreSQL is shared anyway).
func runAdmin(ctx context.Context, e env, args []string) error {
	var cfg serveConfig
	fs := newFlagSet("admin", adminSynopsis, e.stderr)
	fs.StringVar(&cfg.configFile, "config", "", "config file (as for serve)")
	cfg.storeFlags(fs)
	fs.StringVar(&cfg.jwtAlg, "jwt-alg", auth.AlgEdDSA, "signing algorithm for `keys rotate`")
	fs.IntVar(&cfg.maxDevicesPerOwner, "max-devices-per-owner", 1000, "live devices one account may register (as for serve)")
	if err := parseFlagsAndArgs(fs, args, e.getenv); err != nil {
		return err
	}
	if err := cfg.validateStore(); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) > 0 && rest[0] == "backup" {
		return adminBackup(ctx, e, &cfg, rest[1:])
	}
	if len(rest) > 0 && rest[0] == "restore" {
		return adminRestore(ctx, e, &cfg, rest[1:])
	}
	if len(rest) < 2 {
		fs.Usage()
		return usagef("admin: missing command")
	}
	if rest[0] == "cluster-key" { // a file of the data directory, no store
		return clusterKeyCmd(e, &cfg, rest[1], rest[2:])
	}
	st, err := openStore(ctx, &cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	a := &adminCmd{env: e, store: st, cfg: &cfg}
	switch rest[0] + " " + rest[1] {
	case "user create":
		return a.userCreate(ctx, rest[2:])
	case "user list":
		return a.userList(ctx)
	case "user reset-password":
		return a.userResetPassword(ctx, rest[2:])
	case "user disable", "user enable":
		return a.userSetDisabled(ctx, rest[2:], rest[1] == "disable")
	case "keys rotate":
		return a.keysRotate(ctx)
	case "device create":
		return a.deviceCreate(ctx, rest[2:])
	case "device list":
		return a.deviceList(ctx, rest[2:])
	case "device rotate-key":
		return a.deviceRotateKey(ctx, rest[2:])
	case "device revoke":
		return a.deviceRevoke(ctx, rest[2:])
	}
	return usagef("admin: unknown command %q", strings.Join(rest[:2], " "))
}

type adminCmd struct {
	env   env
	store *sqldb.DB
	cfg   *serveConfig
}

// accounts builds the account service the way serve does, so the command
// line obeys the same validation, hashing and audit rules.
func (a *adminCmd) accounts() (*auth.Service, error) {
	hasher, err := auth.NewPasswordHasher(auth.PasswordHasherConfig{})
	if err != nil {
		return nil, err
	}
	return auth.NewService(a.store, hasher, nil, auth.Limits{}, slog.New(slog.NewTextHandler(a.env.stderr, nil))), nil
}

var cliRequest = auth.Request{IP: "cli"}

// readPassword reads one line from stdin; on a terminal it prompts twice
// without echo.
func (a *adminCmd) readPassword(fromStdin bool) (string, error) {
	if f, ok := a.env.stdin.(*os.File); ok && !fromStdin && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.env.stderr, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.env.stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(a.env.stderr, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.env.stderr)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", usagef("passwords do not match")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(io.LimitReader(a.env.stdin, 8<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("no password on standard input")
	}
	return line, nil
}

func (a *adminCmd) userCreate(ctx context.Context, args []string) error {
	fs := newFlagSet("admin user create", "admin user create NAME [--admin|--role ROLE] [--password-stdin]", a.env.stderr)
	isAdmin := fs.Bool("admin", false, "make the user an administrator")
	role := fs.String("role", "member", "member, admin or bot")
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	if *isAdmin {
		*role = string(unhidra.RoleAdmin)
	}
	var pw string
	if unhidra.Role(*role) != unhidra.RoleBot { // bots have no password
		if pw, err = a.readPassword(*stdin); err != nil {
			return err
		}
	}
	accounts, err := a.accounts()
	if err != nil {
		return err
	}
	u, err := accounts.CreateUser(ctx, nil, name, pw, unhidra.Role(*role), cliRequest)
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintf(a.env.stdout, "created %s %s (%s)\n", u.Role, u.Name, u.ID)
	return nil
}

// parseWithName parses "NAME [flags]" or "[flags] NAME".
func parseWithName(fs *flag.FlagSet, args []string) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", usagef("unexpected argument %q", fs.Arg(0))
	}
	if name == "" {
		return "", usagef("missing NAME")
	}
	return name, nil
}

// cliError turns application errors into one-line messages.
func cliError(err error) error {
	if code := unhidra.ErrorCode(err); code != protocol.ErrInternal {
		return fmt.Errorf("%s", unhidra.ErrorMessage(err))
	}
	return err
}

func (a *adminCmd) userByName(ctx context.Context, args []string, cmd string) (*unhidra.User, error) {
	fs := newFlagSet(cmd, cmd+" NAME", a.env.stderr)
	name, err := parseWithName(fs, args)
	if err != nil {
		return nil, err
	}
	u, err := a.store.UserByName(ctx, name)
	if err != nil {
		return nil, cliError(err)
	}
	return u, nil
}

func (a *adminCmd) userList(ctx context.Context) error {
	tw := tabwriter.NewWriter(a.env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tSTATE\tCREATED")
	after := ""
	for {
		users, err := a.store.Users(ctx, store.UserFilter{After: after, Limit: 500})
		if err != nil {
			return err
		}
		for _, u := range users {
			state := "active"
			if u.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Name, u.Role, state, u.CreatedAt.Format(time.RFC3339))
		}
		if len(users) < 500 {
			break
		}
		after = users[len(users)-1].ID
	}
	return tw.Flush()
}

func (a *adminCmd) userResetPassword(ctx context.Context, args []string) error {
	fs := newFlagSet("admin user reset-password", "admin user reset-password NAME [--password-stdin]", a.env.stderr)
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	u, err := a.store.UserByName(ctx, name)
	if err != nil {
		return cliError(err)
	}
	pw, err := a.readPassword(*stdin)
	if err != nil {
		return err
	}
	accounts, err := a.accounts()
	if err != nil {
		return err
	}
	if err := accounts.ResetPassword(ctx, nil, u.ID, pw, cliRequest); err != nil {
		return cliError(err)
	}
	fmt.Fprintf(a.env.stdout, "password of %s reset; their sessions end on every node within a second\n", u.Name)
	return nil
}

func (a *adminCmd) userSetDisabled(ctx context.Context, args []string, disabled bool) error {
	u, err := a.userByName(ctx, args, "admin user disable")
	if err != nil {
		return err
	}
	accounts, err := a.accounts()
	if err != nil {
		return err
	}
	if _, err := accounts.SetDisabled(ctx, nil, u.ID, disabled, cliRequest); err != nil {
		return cliError(err)
	}
	state := "enabled"
	if disabled {
		state = "disabled"
	}
	fmt.Fprintf(a.env.stdout, "%s %s\n", u.Name, state)
	return nil
}

func (a *adminCmd) keysRotate(ctx context.Context) error {
	path := filepath.Join(a.cfg.dataDir, "signing-keys.json")
	ks, _, err := auth.LoadOrCreateKeySet(path, a.cfg.jwtAlg, time.Now())
	if err != nil {
		return err
	}
	if err := ks.Rotate(a.cfg.jwtAlg, time.Now()); err != nil {
		return err
	}
	a.store.AppendAudit(ctx, &unhidra.AuditEvent{Action: unhidra.AuditSigningKeyRotate, Target: ks.Active().ID, IP: "cli"})
	fmt.Fprintf(a.env.stdout, "new signing key %s is active; restart the server to use it\n", ks.Active().ID)
	return nil
}

// clusterKeyCmd manages the cluster keyring that seals bus messages.
// create adds a key that starts sealing after --activate-in (time to copy
// the file to every node and restart them; until then every node already
// opens what it seals) and drops keys superseded for over a day.
func clusterKeyCmd(e env, cfg *serveConfig, verb string, args []string) error {
	path := filepath.Join(cfg.dataDir, bus.ClusterKeyFile)
	switch verb {
	case "create":
		fs := flag.NewFlagSet("cluster-key create", flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		activate := fs.Duration("activate-in", bus.DefaultActivation, "delay before the new key seals (0 for a new cluster)")
		if err := fs.Parse(args); err != nil {
			return usagef("cluster-key create: %v", err)
		}
		if *activate < 0 || *activate > 30*24*time.Hour {
			return usagef("--activate-in must be between 0 and 720h")
		}
		if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
			return err
		}
		k, err := bus.AddClusterKey(path, time.Now(), *activate, 24*time.Hour)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "cluster key %s seals from %s; copy %s (mode 0600) to every node and restart them before then\n",
			k.ID, k.ActiveAt.Format(time.RFC3339), path)
		return nil
	case "list":
		ks, err := bus.LoadClusterKeys(path)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tCREATED\tSEALS FROM")
		for _, k := range ks.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", k.ID, k.CreatedAt.Format(time.RFC3339), k.ActiveAt.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return usagef("admin: unknown command %q", "cluster-key "+verb)
}
