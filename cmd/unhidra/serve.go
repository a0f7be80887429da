package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/api"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/backup"
	"github.com/unhidra/unhidra/internal/bot"
	"github.com/unhidra/unhidra/internal/bus"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/chat/chathttp"
	"github.com/unhidra/unhidra/internal/chat/chatws"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/device/devicehttp"
	"github.com/unhidra/unhidra/internal/device/devicews"
	"github.com/unhidra/unhidra/internal/frontdoor"
	"github.com/unhidra/unhidra/internal/memtrim"
	"github.com/unhidra/unhidra/internal/mlbridge"
	"github.com/unhidra/unhidra/internal/netlimit"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/sdnotify"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/internal/tlscert"
	"github.com/unhidra/unhidra/internal/web"
	"github.com/unhidra/unhidra/internal/ws"
)

// serveConfig is every setting of `unhidra serve`.
type serveConfig struct {
	configFile     string
	pprofListen    string
	dataDir        string
	listen         string
	tlsCert        string
	tlsKey         string
	noTLS          bool
	storeURL       string
	busURL         string
	busPrefix      string
	busCreds       string
	busNKey        string
	busUser        string
	busPassword    string
	busTLSCA       string
	busTLSCert     string
	busTLSKey      string
	logLevel       string
	logFormat      string
	jwtAlg         string
	accessTTL      time.Duration
	refreshTTL     time.Duration
	registration   string
	trustedProxies string
	shutdownTime   time.Duration
	hashWorkers    int
	hashQueue      int
	identityPoll   time.Duration

	// Gateway.
	allowedOrigins  string
	maxFrameBytes   int
	pingInterval    time.Duration
	idleTimeout     time.Duration
	writeTimeout    time.Duration
	maxConns        int
	maxConnsPerIP   int
	maxTCPPerIP     int
	keepAlive       time.Duration
	maxConnsPerUser int
	messageRate     int
	messageBurst    int
	drainWindow     time.Duration
	connRateIP      float64
	connBurstIP     int
	connRateIdent   float64
	connBurstIdent  int
	handshakeTime   time.Duration

	// ML sidecar.
	mlWorkers int
	mlWorker  string
	mlPython  string
	mlModules string
	mlPath    string
	mlTimeout time.Duration
	mlPerUser int
	systemBot bool

	maxDevicesPerOwner int
	deviceAnalysis     time.Duration
	commandWindow      int

	// Messaging.
	sendRate        int
	sendBurst       int
	sendTimeout     time.Duration
	sendBuffer      int
	stallTimeout    time.Duration
	channelsPerHour int

	proxies []netip.Prefix // parsed trustedProxies
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.configFile, "config", "", "config file of `key = value` lines (flag names as keys)")
	c.storeFlags(fs)
	fs.StringVar(&c.busURL, "bus", "", "cluster bus: empty for this node alone, or nats://HOST:PORT[,…] to join a cluster")
	fs.StringVar(&c.busPrefix, "bus-prefix", "unhidra", "subject prefix on the bus (separates deployments sharing a NATS server)")
	fs.StringVar(&c.busCreds, "bus-creds", "", "NATS credentials file (JWT and NKey seed) for the bus")
	fs.StringVar(&c.busNKey, "bus-nkey", "", "NATS NKey seed file for the bus")
	fs.StringVar(&c.busUser, "bus-user", "", "NATS user name for the bus (password: --bus-password, best as UNHIDRA_BUS_PASSWORD)")
	fs.StringVar(&c.busPassword, "bus-password", "", "NATS password for the bus, with --bus-user")
	fs.StringVar(&c.busTLSCA, "bus-tls-ca", "", "CA certificates (PEM) to verify the NATS server; turns on TLS")
	fs.StringVar(&c.busTLSCert, "bus-tls-cert", "", "client certificate (PEM) for the NATS server, with --bus-tls-key")
	fs.StringVar(&c.busTLSKey, "bus-tls-key", "", "client private key (PEM), with --bus-tls-cert")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8443", "address to listen on; port 0 picks a free port")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate chain (PEM); default: a self-signed one in the data directory")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key (PEM), with --tls-cert")
	fs.BoolVar(&c.noTLS, "no-tls", false, "serve plain HTTP (only behind a TLS-terminating proxy)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.jwtAlg, "jwt-alg", auth.AlgEdDSA, "access-token signing algorithm: EdDSA, or HS256 for compatibility")
	fs.DurationVar(&c.accessTTL, "access-ttl", 15*time.Minute, "access-token lifetime")
	fs.DurationVar(&c.refreshTTL, "refresh-ttl", 30*24*time.Hour, "refresh-token lifetime")
	fs.StringVar(&c.registration, "registration", "open", "open: anyone may register; closed: administrators create accounts")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For is believed")
	fs.DurationVar(&c.shutdownTime, "shutdown-timeout", 30*time.Second, "how long a graceful shutdown may take in all")
	fs.IntVar(&c.hashWorkers, "hash-concurrency", 0, "password hashes computed at once (0: one per core)")
	fs.IntVar(&c.hashQueue, "hash-queue", 32, "logins waiting for a hashing slot before 503")
	fs.DurationVar(&c.identityPoll, "identity-poll", 250*time.Millisecond, "how often the database is checked for identity changes made elsewhere (e.g. by unhidra admin)")

	fs.StringVar(&c.allowedOrigins, "allowed-origins", "", "comma-separated browser origins allowed on /ws (default: the server's own)")
	fs.IntVar(&c.maxFrameBytes, "max-frame-bytes", 64<<10, "largest WebSocket message accepted (bigger: close 1009)")
	fs.DurationVar(&c.pingInterval, "ping-interval", 25*time.Second, "how often the server pings each connection")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 60*time.Second, "close connections silent for this long (pongs count)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 10*time.Second, "deadline of every socket write")
	fs.IntVar(&c.sendBuffer, "send-buffer", 64<<10, "kernel send buffer per WebSocket (SO_SNDBUF, bytes; -1: the kernel's auto-tuning)")
	fs.DurationVar(&c.stallTimeout, "stall-timeout", 1500*time.Millisecond, "close a connection (4001) whose socket write has been blocked this long (a client that stopped reading)")
	fs.IntVar(&c.maxConns, "max-conns", 0, "WebSocket connections on this node (0: the open-file limit less a reserve)")
	fs.IntVar(&c.maxConnsPerIP, "max-conns-per-ip", 4096, "concurrent WebSocket connections from one address")
	fs.IntVar(&c.maxTCPPerIP, "max-tcp-per-ip", 0, "concurrent TCP connections from one address, checked at accept before TLS (0: a sixteenth of the open-file limit; trusted proxies are exempt)")
	fs.DurationVar(&c.keepAlive, "keepalive-timeout", 30*time.Second, "how long an idle HTTP keep-alive connection is kept")
	fs.IntVar(&c.maxConnsPerUser, "max-conns-per-identity", 64, "concurrent WebSocket connections of one user, bot or device")
	fs.IntVar(&c.messageRate, "message-rate", 20, "client frames per second per connection (sustained)")
	fs.IntVar(&c.messageBurst, "message-burst", 40, "client frames per connection allowed in a burst")
	fs.DurationVar(&c.drainWindow, "drain-window", 10*time.Second, "on shutdown, spread closing connections over this long")
	fs.Float64Var(&c.connRateIP, "conn-rate-per-ip", 100, "new WebSocket connections per second from one address (sustained)")
	fs.IntVar(&c.connBurstIP, "conn-burst-per-ip", 500, "new WebSocket connections from one address allowed in a burst")
	fs.Float64Var(&c.connRateIdent, "conn-rate-per-identity", 0.5, "new WebSocket connections per second of one identity (flapping control)")
	fs.IntVar(&c.connBurstIdent, "conn-burst-per-identity", 10, "new WebSocket connections of one identity allowed in a burst")
	fs.IntVar(&c.mlWorkers, "ml-workers", 2, "inference worker processes (0: no ML)")
	fs.StringVar(&c.mlWorker, "ml-worker", "", "worker command line speaking the ML IPC protocol (default: the built-in Python worker); the socket path is appended")
	fs.StringVar(&c.mlPython, "ml-python", "python3", "Python interpreter for the built-in worker")
	fs.StringVar(&c.mlModules, "ml-modules", "", "comma-separated Python modules or .py files with your own @model definitions")
	fs.StringVar(&c.mlPath, "ml-python-path", "", "colon-separated directories to import your models' modules and dependencies from")
	fs.DurationVar(&c.mlTimeout, "ml-timeout", 30*time.Second, "longest an inference call may take")
	fs.IntVar(&c.mlPerUser, "ml-per-user", 2, "inference calls of one user in flight (more wait in that user's queue)")
	fs.BoolVar(&c.systemBot, "system-bot", true, "run the built-in bot (in a cluster, on one node only)")
	fs.IntVar(&c.maxDevicesPerOwner, "max-devices-per-owner", 1000, "live devices one account may register")
	fs.DurationVar(&c.deviceAnalysis, "device-analysis-interval", 15*time.Minute, "how often connected devices' free-heap trends are analysed for leaks (with ML workers)")
	fs.IntVar(&c.commandWindow, "device-command-window", 8, "commands sent to a device before it answers some (told in its welcome)")
	fs.DurationVar(&c.handshakeTime, "handshake-timeout", 10*time.Second, "time allowed for the TLS handshake and the request headers (slowloris)")
	fs.IntVar(&c.sendRate, "send-rate", 10, "chat messages per second per sender across its connections (sustained)")
	fs.IntVar(&c.sendBurst, "send-burst", 30, "chat messages per sender allowed in a burst")
	fs.IntVar(&c.channelsPerHour, "channels-per-hour", 20, "channels a member (not an administrator) may create per hour, at most that many at once")
	fs.DurationVar(&c.sendTimeout, "send-timeout", 5*time.Second, "a chat send the database has not committed within this fails with unavailable (and a retry hint)")
	fs.StringVar(&c.pprofListen, "pprof-listen", "", "serve Go runtime profiles (/debug/pprof/) on this loopback HOST:PORT (off by default; for benchmarks)")
}

// storeFlags are shared by serve and admin.
func (c *serveConfig) storeFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", "data", "directory for the database, keys and certificate (created 0700)")
	fs.StringVar(&c.storeURL, "store", "", "database: empty for SQLite in the data directory, sqlite:PATH, or postgres://…")
}

func (c *serveConfig) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		errs = append(errs, usagef("--listen %q: want HOST:PORT", c.listen))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		errs = append(errs, usagef("--tls-cert and --tls-key go together"))
	}
	if c.noTLS && c.tlsCert != "" {
		errs = append(errs, usagef("--no-tls contradicts --tls-cert"))
	}
	if c.jwtAlg != auth.AlgEdDSA && c.jwtAlg != auth.AlgHS256 {
		errs = append(errs, usagef("--jwt-alg must be %s or %s", auth.AlgEdDSA, auth.AlgHS256))
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, usagef("--log-format must be text or json"))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		errs = append(errs, usagef("--log-level must be debug, info, warn or error"))
	}
	if c.registration != "open" && c.registration != "closed" {
		errs = append(errs, usagef("--registration must be open or closed"))
	}
	errs = append(errs,
		durationRange("access-ttl", c.accessTTL, time.Minute, 24*time.Hour),
		durationRange("refresh-ttl", c.refreshTTL, time.Hour, 365*24*time.Hour),
		durationRange("shutdown-timeout", c.shutdownTime, time.Second, 10*time.Minute),
		intRange("hash-concurrency", c.hashWorkers, 0, 64),
		intRange("hash-queue", c.hashQueue, 0, 10_000),
		durationRange("identity-poll", c.identityPoll, 10*time.Millisecond, 10*time.Second),
		intRange("max-frame-bytes", c.maxFrameBytes, 1024, 16<<20),
		durationRange("ping-interval", c.pingInterval, time.Second, 10*time.Minute),
		durationRange("idle-timeout", c.idleTimeout, 2*time.Second, time.Hour),
		durationRange("write-timeout", c.writeTimeout, 100*time.Millisecond, time.Minute),
		intRange("max-conns", c.maxConns, 0, 10_000_000),
		intRange("max-conns-per-ip", c.maxConnsPerIP, 1, 10_000_000),
		intRange("max-tcp-per-ip", c.maxTCPPerIP, 0, 10_000_000),
		durationRange("keepalive-timeout", c.keepAlive, time.Second, 10*time.Minute),
		intRange("max-conns-per-identity", c.maxConnsPerUser, 1, 100_000),
		intRange("message-rate", c.messageRate, 1, 100_000),
		intRange("message-burst", c.messageBurst, 1, 100_000),
		durationRange("drain-window", c.drainWindow, 0, 10*time.Minute),
		floatRange("conn-rate-per-ip", c.connRateIP, 0.001, 1e6),
		intRange("conn-burst-per-ip", c.connBurstIP, 1, 10_000_000),
		floatRange("conn-rate-per-identity", c.connRateIdent, 0.001, 1e6),
		intRange("conn-burst-per-identity", c.connBurstIdent, 1, 10_000_000),
		durationRange("handshake-timeout", c.handshakeTime, 100*time.Millisecond, 5*time.Minute),
		intRange("ml-workers", c.mlWorkers, 0, 64),
		intRange("max-devices-per-owner", c.maxDevicesPerOwner, 1, 10_000_000),
		durationRange("device-analysis-interval", c.deviceAnalysis, time.Second, 24*time.Hour),
		intRange("device-command-window", c.commandWindow, 1, 1000),
		durationRange("ml-timeout", c.mlTimeout, 100*time.Millisecond, 10*time.Minute),
		intRange("ml-per-user", c.mlPerUser, 1, 1000),
		intRange("send-rate", c.sendRate, 1, 1_000_000),
		intRange("send-burst", c.sendBurst, 1, 1_000_000),
		intRange("channels-per-hour", c.channelsPerHour, 1, 100_000),
		c.validateStore())
	if c.busURL != "" && !strings.HasPrefix(c.busURL, "nats://") && !strings.HasPrefix(c.busURL, "tls://") {
		errs = append(errs, usagef("--bus must be empty or nats://…"))
	}
	if (c.busTLSCert == "") != (c.busTLSKey == "") {
		errs = append(errs, usagef("--bus-tls-cert and --bus-tls-key go together"))
	}
	if (c.busUser == "") != (c.busPassword == "") {
		errs = append(errs, usagef("--bus-user and --bus-password go together"))
	}
	if n := btoi(c.busCreds != "") + btoi(c.busNKey != "") + btoi(c.busUser != ""); n > 1 {
		errs = append(errs, usagef("use one of --bus-creds, --bus-nkey and --bus-user"))
	}
	if err := bus.ValidSubject(c.busPrefix); err != nil {
		errs = append(errs, usagef("--bus-prefix %q: letters, digits and dots only", c.busPrefix))
	}
	if c.pprofListen != "" {
		if err := checkLoopback(c.pprofListen); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := splitCommand(c.mlWorker); err != nil {
		errs = append(errs, usagef("--ml-worker: %v", err))
	}
	if c.idleTimeout <= c.pingInterval {
		errs = append(errs, usagef("--idle-timeout (%v) must be longer than --ping-interval (%v)", c.idleTimeout, c.pingInterval))
	}
	c.proxies = nil
	for _, s := range strings.Split(c.trustedProxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, usagef("--trusted-proxies: %q is not a CIDR", s))
			continue
		}
		c.proxies = append(c.proxies, p)
	}
	return errors.Join(errs...)
}

func (c *serveConfig) validateStore() error {
	if c.dataDir == "" {
		return usagef("--data-dir must not be empty")
	}
	switch {
	case c.storeURL == "", strings.HasPrefix(c.storeURL, "sqlite:"),
		strings.HasPrefix(c.storeURL, "postgres://"), strings.HasPrefix(c.storeURL, "postgresql://"):
		return nil
	}
	return usagef("--store must be empty, sqlite:PATH or postgres://…")
}

func newLogger(c *serveConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(c.logLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runServe(ctx context.Context, e env, args []string) error {
	var cfg serveConfig
	fs := newFlagSet("serve", "serve [flags]", e.stderr)
	cfg.flags(fs)
	if err := parseFlags(fs, args, e.getenv); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	return serve(ctx, &cfg, e, newLogger(&cfg, e.stderr))
}

func serve(ctx context.Context, cfg *serveConfig, e env, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := checkPermissions(cfg); err != nil {
		return err
	}
	if cfg.noTLS && len(cfg.proxies) == 0 {
		log.Warn("--no-tls without --trusted-proxies: behind a proxy every client has the proxy's address (one throttle for all, no real addresses in the audit log); list the proxy in --trusted-proxies")
	}
	// Shared with other servers and admin commands; `admin restore` waits
	// for nobody and refuses while it is held.
	unlock, err := backup.Lock(cfg.dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	keys, created, err := auth.LoadOrCreateKeySet(filepath.Join(cfg.dataDir, "signing-keys.json"), cfg.jwtAlg, time.Now())
	if err != nil {
		return err
	}
	if created {
		log.Info("generated a signing key", "kid", keys.Active().ID, "alg", keys.Active().Alg)
	}
	tokens := &auth.Tokens{Keys: keys, TTL: cfg.accessTTL}
	hasher, err := auth.NewPasswordHasher(auth.PasswordHasherConfig{MaxConcurrent: cfg.hashWorkers, MaxQueue: queueSetting(cfg.hashQueue)})
	if err != nil {
		return err
	}
	accounts := auth.NewService(st, hasher, tokens, auth.Limits{}, log)
	accounts.OpenRegistration = cfg.registration == "open"
	accounts.RefreshTTL = cfg.refreshTTL

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	b, err := openBus(cfg, log)
	if err != nil {
		return err
	}
	defer b.Close()
	if bc, ok := b.(interface{ Collectors() []prometheus.Collector }); ok {
		reg.MustRegister(bc.Collectors()...)
	}
	ml, err := startML(ctx, cfg, log)
	if err != nil {
		return err
	}
	if ml != nil {
		defer ml.Close(context.WithoutCancel(ctx))
		reg.MustRegister(ml.Collectors()...)
	}
	devices := device.NewService(st, device.Config{MaxPerOwner: cfg.maxDevicesPerOwner,
		AnalyzeInterval: cfg.deviceAnalysis, CommandWindow: cfg.commandWindow}, log)
	if ml != nil {
		devices.SetInferrer(ml) // heap trends, telemetry anomalies, leak alerts
	}
	// Chat's member cache is dropped on every identity change (a new account
	// joins the default channel in the store); chat starts after the gateway.
	var chatSvc atomic.Pointer[chat.Service]
	forgetMembers := func() {
		if m := chatSvc.Load(); m != nil {
			m.ForgetMemberships()
		}
	}
	gw, err := newGateway(cfg, accounts, b, devicews.Authenticator(devices), forgetMembers, log)
	if err != nil {
		return err
	}
	defer gw.Close()
	reg.MustRegister(gw.Metrics(), devices.Metrics())
	messaging := chat.New(st, gw.Router(), chat.Config{
		Identities:  devices, // devices can be members of channels
		SendRate:    ratelimit.Limit{Burst: cfg.sendBurst, Every: time.Second / time.Duration(cfg.sendRate)},
		ChannelRate: ratelimit.Limit{Burst: cfg.channelsPerHour, Every: time.Hour / time.Duration(cfg.channelsPerHour)},
		Writers:     chatWriters(st.Dialect()),
		SendTimeout: cfg.sendTimeout,
		AfterCommit: crashHook(e.getenv),
	}, log)
	chatSvc.Store(messaging)
	reg.MustRegister(messaging.Collectors()...)
	defer messaging.Close()                      // runs before st.Close: a batch being committed finishes
	devicews.Attach(ctx, gw, devices, messaging) // channels follow devices through messaging
	// Identity changes written to the database by other processes (the
	// command line, nodes whose bus message was lost) reach this node.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); accounts.WatchIdentityEvents(watchCtx, cfg.identityPoll) }()
	defer func() { stopWatch(); <-watchDone }()
	if n, err := st.BackfillSkeletons(ctx); err != nil {
		log.Warn("name skeletons", "err", err)
	} else if n > 0 {
		log.Info("recorded name skeletons of existing accounts and devices", "count", n)
	}
	// The device service batches writes; it stops after the gateway so
	// that the disconnects of the drain are flushed too.
	devCtx, cancelDevices := context.WithCancel(context.WithoutCancel(ctx))
	devDone := make(chan struct{})
	go func() { defer close(devDone); devices.Run(devCtx) }()
	stopDevices := sync.OnceFunc(func() { cancelDevices(); <-devDone })
	defer stopDevices()
	chatws.Register(gw, messaging)

	app, err := web.New()
	if err != nil {
		return fmt.Errorf("web app: %w", err)
	}
	var draining atomic.Bool
	deps := api.Deps{
		Log:            log,
		Accounts:       accounts,
		Store:          st,
		Ready:          func() bool { return !draining.Load() },
		Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		TrustedProxies: cfg.proxies,
		Registerer:     reg,
		TLS:            !cfg.noTLS,
		Mount:          []func(*http.ServeMux, api.Helpers){gw.Mount, chathttp.Mount(messaging), devicehttp.Mount(devices), app.Mount},
	}
	if ml != nil {
		deps.ML = mlbridge.AppView{S: ml}
		deps.MLPerUser = cfg.mlPerUser
	}
	handler := api.NewServer(deps)

	// No TCP keepalive: idle HTTP connections end at IdleTimeout and
	// WebSocket connections are pinged (ping interval, idle timeout), so it
	// would only cost four setsockopt calls per accepted connection.
	tcp, err := (&net.ListenConfig{KeepAlive: -1}).Listen(ctx, "tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	perAddr, totalTCP := defaultTCPLimits()
	if cfg.maxTCPPerIP > 0 {
		perAddr = cfg.maxTCPPerIP
	}
	limited := netlimit.Wrap(tcp, perAddr, totalTCP, cfg.proxies, log)
	reg.MustRegister(limited.Collectors()...)
	// The wrapper lets the WebSocket transport read upgraded connections
	// without a goroutine each, TLS included.
	ln := ws.WrapListener(limited)
	scheme := "http"
	var serverCert *tls.Certificate
	if !cfg.noTLS {
		tlsCfg, fingerprint, err := tlsConfig(cfg, log)
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, tlsCfg)
		scheme, serverCert = "https", &tlsCfg.Certificates[0]
		fmt.Fprintf(e.stdout, "TLS certificate SHA-256 fingerprint: %s\n", fingerprint)
	}
	baseURL := scheme + "://" + ln.Addr().String()
	if err := firstRun(ctx, accounts, st, e, baseURL, log); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler: handler,
		// Also bounds the TLS handshake: net/http applies the shortest of
		// its timeouts to it.
		ReadHeaderTimeout: cfg.handshakeTime,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       cfg.keepAlive,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if cfg.pprofListen != "" {
		stopPprof, err := startPprof(cfg.pprofListen, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stopPprof()
	}
	// Give back what a connection storm allocated once it is over.
	trimCtx, stopTrim := context.WithCancel(ctx)
	trimDone := make(chan struct{})
	go func() { defer close(trimDone); (&memtrim.Trimmer{Count: gw.Len}).Run(trimCtx) }()
	defer func() { stopTrim(); <-trimDone }()
	serveErr := make(chan error, 1)
	// WebSocket upgrades skip net/http (a sixth of a handshake's CPU).
	go func() { serveErr <- frontdoor.Serve(srv, ln, "/ws") }()
	fmt.Fprintf(e.stdout, "listening on %s\n", baseURL)
	// Under systemd (Type=notify): ready now, and watchdog pings while the
	// HTTP stack answers /healthz.
	notifier, err := sdnotify.FromEnv(e.getenv, os.Getpid())
	if err != nil {
		log.Warn("systemd notification disabled", "err", err)
	}
	if err := notifier.Notify("READY=1", "STATUS=serving on "+baseURL); err != nil {
		log.Warn("systemd notification", "err", err)
	}
	wdCtx, stopWatchdog := context.WithCancel(ctx)
	wdDone := make(chan struct{})
	go func() {
		defer close(wdDone)
		notifier.RunWatchdog(wdCtx, func() bool { return answersHealthz(handler) })
	}()
	defer func() { stopWatchdog(); <-wdDone }()
	stopBot := func() {}
	if cfg.systemBot {
		var summarizer bot.Summarizer
		if ml != nil {
			summarizer = ml
		}
		if stopBot, err = startSystemBot(ctx, accounts, st, tokens, ln.Addr().String(), serverCert, summarizer, log); err != nil {
			log.Error("system bot", "err", err)
			stopBot = func() {}
		}
	}
	log.Info("unhidra serving", "version", buildVersion(), "url", baseURL, "store", st.Dialect())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "connections", gw.Len())
	notifier.Notify("STOPPING=1", "STATUS=draining")
	stopBot() // before the drain, or it would keep reconnecting
	draining.Store(true)
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdownTime)
	defer cancel()
	// http.Server.Shutdown neither closes nor waits for hijacked
	// connections: the gateway drains its own, spread over the drain window.
	if err := gw.Drain(shutCtx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
	}
	<-serveErr
	gw.Close()
	stopDevices()
	log.Info("stopped")
	return nil
}

// answersHealthz runs an in-process GET /healthz through the whole handler.
func answersHealthz(h http.Handler) bool {
	req, _ := http.NewRequest("GET", "/healthz", nil)
	req.RemoteAddr = "127.0.0.1:0"
	w := &statusOnly{header: http.Header{}}
	h.ServeHTTP(w, req)
	return w.status == http.StatusOK
}

// statusOnly is a ResponseWriter that keeps the status and drops the body.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header { return s.header }
func (s *statusOnly) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
func (s *statusOnly) Write(b []byte) (int, error) { s.WriteHeader(http.StatusOK); return len(b), nil }

// chatWriters is how many group-commit writers suit the store: SQLite has
// one writer connection; PostgreSQL commits several batches at once.
func chatWriters(dialect string) int {
	if dialect == "postgres" {
		return 8
	}
	return 1
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func queueSetting(n int) int {
	if n == 0 {
		return -1 // PasswordHasherConfig: negative means nobody waits
	}
	return n
}

func tlsConfig(cfg *serveConfig, log *slog.Logger) (*tls.Config, string, error) {
	var cert tls.Certificate
	var err error
	if cfg.tlsCert != "" {
		cert, err = tlscert.Load(cfg.tlsCert, cfg.tlsKey)
	} else {
		host, _, _ := net.SplitHostPort(cfg.listen)
		var created bool
		cert, created, err = tlscert.LoadOrCreateSelfSigned(filepath.Join(cfg.dataDir, "tls-cert.pem"),
			filepath.Join(cfg.dataDir, "tls-key.pem"), tlscert.DefaultHosts(host), time.Now())
		if created {
			log.Info("generated a self-signed TLS certificate", "file", filepath.Join(cfg.dataDir, "tls-cert.pem"))
		}
	}
	if err != nil {
		return nil, "", err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// HTTP/1.1 only: WebSocket upgrades need it, and one protocol keeps
		// connection accounting simple.
		NextProtos: []string{"http/1.1"},
	}, tlscert.Fingerprint(cert.Certificate[0]), nil
}

// firstRun makes sure somebody can become administrator on an empty
// database without any default password: from UNHIDRA_ADMIN_PASSWORD if
// the operator set it, or with a one-time code printed once.
func firstRun(ctx context.Context, accounts *auth.Service, st store.Store, e env, baseURL string, log *slog.Logger) error {
	if need, err := accounts.NeedsAdmin(ctx); err != nil || !need {
		return err
	}
	if pw := e.getenv("UNHIDRA_ADMIN_PASSWORD"); pw != "" {
		name := e.getenv("UNHIDRA_ADMIN_NAME")
		if name == "" {
			name = "admin"
		}
		if _, err := accounts.CreateUser(ctx, nil, name, pw, unhidra.RoleAdmin, auth.Request{IP: "local"}); err != nil {
			return fmt.Errorf("create administrator from UNHIDRA_ADMIN_PASSWORD: %w", err)
		}
		log.Info("created the administrator account from the environment", "name", name)
		return nil
	}
	code, err := accounts.StartBootstrap(ctx, time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nFirst start: no accounts yet. Open %s/ and create the administrator with this one-time code\n"+
		"(valid for one hour, until restart):\n\n    %s\n\n", baseURL, code)
	return nil
}

// crashHook is the fault-injection suite's commit-then-die switch: with
// UNHIDRA_TEST_CRASH_AFTER_COMMIT=N the process kills itself (SIGKILL)
// after its Nth committed batch, before acknowledging or publishing it.
// Unset (always, outside that suite), it is nil.
func crashHook(getenv func(string) string) func() {
	n, err := strconv.Atoi(getenv("UNHIDRA_TEST_CRASH_AFTER_COMMIT"))
	if err != nil || n <= 0 {
		return nil
	}
	var commits atomic.Int64
	return func() {
		if commits.Add(1) == int64(n) {
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Kill()
			}
			select {} // the signal is on its way
		}
	}
}
