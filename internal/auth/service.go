package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/store"
	"github.com/unhidra/unhidra/protocol"
)

// Hasher hashes and verifies passwords; *PasswordHasher is the real one.
type Hasher interface {
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, phc string) (ok, needsRehash bool, err error)
	// VerifyDummy costs what Verify costs, against no account.
	VerifyDummy(ctx context.Context, password string) error
}

// AccountStore is what the service keeps in the store.
type AccountStore interface {
	store.UserStore
	store.TokenStore
	store.AuditStore
}

// Limits are the abuse limits of the account service. Zero fields get the
// defaults of DefaultLimits.
type Limits struct {
	LoginPerIP ratelimit.Limit // sign-in attempts per client address, any name
	// LoginPerAccount bounds failed sign-ins of one account name (known or
	// not) from all addresses together. Past it, only addresses where the
	// account signed in successfully within TrustedFor may try: a
	// distributed guesser is slowed, the owner is not locked out.
	LoginPerAccount ratelimit.Limit
	RegisterPerIP   ratelimit.Limit
	// LockoutThreshold consecutive failures of one account name from one
	// address make that address wait LockoutBase before its next try for
	// that name, doubling with each further failure up to LockoutMax.
	// Other addresses are not affected.
	LockoutThreshold int
	LockoutBase      time.Duration
	LockoutMax       time.Duration
	// TrustedFor is how long a successful sign-in exempts its address from
	// LoginPerAccount for that account. Default 30 days.
	TrustedFor     time.Duration
	MaxTrackedKeys int // per limiter; idle keys are evicted past it
}

// DefaultLimits are the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{
		LoginPerIP:       ratelimit.Limit{Burst: 20, Every: 3 * time.Second},
		LoginPerAccount:  ratelimit.Limit{Burst: 20, Every: 30 * time.Second},
		RegisterPerIP:    ratelimit.Limit{Burst: 5, Every: 2 * time.Minute},
		LockoutThreshold: 5,
		LockoutBase:      time.Minute,
		LockoutMax:       time.Hour,
		TrustedFor:       30 * 24 * time.Hour,
		MaxTrackedKeys:   100_000,
	}
}

// Service is the account service: registration, login, token refresh,
// logout, password changes, and the administrator's operations on
// accounts. Every security-relevant event is written to the audit log.
type Service struct {
	store     AccountStore
	passwords Hasher
	tokens    *Tokens
	log       *slog.Logger
	limits    Limits

	// OpenRegistration allows anyone to register; when false only
	// administrators (and the bootstrap) create accounts.
	OpenRegistration bool
	// RefreshTTL is how long a refresh token lives; default 30 days.
	RefreshTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// PublishChange, if set, broadcasts that an identity changed to every
	// node, this one included, which then call IdentityChanged (the bus).
	// Unset, the change is handled on this node only.
	PublishChange func(identity string)
	// OnIdentityChange, if set, is called on every node for every changed
	// identity with its current state, so that live connections whose
	// tokens are no longer valid (and devices of a disabled owner) close.
	OnIdentityChange func(IdentityState)
	// CacheTTL bounds how long an identity's cached state is trusted
	// without a change notice; default 1 minute.
	CacheTTL time.Duration

	ipLogins, accountFails, registrations *ratelimit.Keyed
	pairFails                             *pairFailures
	trusted                               *expiringSet

	cacheMu sync.RWMutex
	cache   map[string]cachedUser
	gen     atomic.Uint64 // bumped by every invalidation

	mu        sync.Mutex // guards bootstrap
	bootstrap struct {
		digest  [32]byte
		expires time.Time
	}
}

// NewService returns an account service.
func NewService(st AccountStore, passwords Hasher, tokens *Tokens, limits Limits, log *slog.Logger) *Service {
	def := DefaultLimits()
	if limits.LoginPerIP == (ratelimit.Limit{}) {
		limits.LoginPerIP = def.LoginPerIP
	}
	if limits.LoginPerAccount == (ratelimit.Limit{}) {
		limits.LoginPerAccount = def.LoginPerAccount
	}
	if limits.RegisterPerIP == (ratelimit.Limit{}) {
		limits.RegisterPerIP = def.RegisterPerIP
	}
	limits.LockoutThreshold = cmpOr(limits.LockoutThreshold, def.LockoutThreshold)
	limits.LockoutBase = cmpOr(limits.LockoutBase, def.LockoutBase)
	limits.LockoutMax = cmpOr(limits.LockoutMax, def.LockoutMax)
	limits.MaxTrackedKeys = cmpOr(limits.MaxTrackedKeys, def.MaxTrackedKeys)
	limits.TrustedFor = cmpOr(limits.TrustedFor, def.TrustedFor)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		store: st, passwords: passwords, tokens: tokens, log: log, limits: limits,
		OpenRegistration: true,
		ipLogins:         ratelimit.NewKeyed(limits.LoginPerIP, limits.MaxTrackedKeys),
		accountFails:     ratelimit.NewKeyed(limits.LoginPerAccount, limits.MaxTrackedKeys),
		pairFails:        newPairFailures(limits.LockoutThreshold, limits.LockoutBase, limits.LockoutMax, limits.MaxTrackedKeys),
		trusted:          newExpiringSet(limits.MaxTrackedKeys),
		cache:            make(map[string]cachedUser),
		registrations:    ratelimit.NewKeyed(limits.RegisterPerIP, limits.MaxTrackedKeys),
	}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Tokens returns the access-token issuer.
func (s *Service) Tokens() *Tokens { return s.tokens }

// Session is what a successful sign-in returns to the client.
type Session struct {
	AccessToken  string        `json:"access_token"`
	TokenType    string        `json:"token_type"`
	ExpiresIn    int           `json:"expires_in"`
	RefreshToken string        `json:"refresh_token"`
	User         *unhidra.User `json:"user"`
}

// Request describes where a call comes from, for throttling and the audit log.
type Request struct {
	IP        string
	UserAgent string
}

// maxPasswordBytes rejects absurd input before any hashing work; the
// password policy has the precise rules.
const maxPasswordBytes = 4096

var errBadCredentials = unhidra.Errorf(protocol.ErrUnauthorized, "Invalid name or password.")

func rateLimited(retry time.Duration) error {
	e := unhidra.Errorf(protocol.ErrRateLimited, "Too many attempts. Try again later.")
	e.RetryAfter = int64((retry + time.Second - 1) / time.Second)
	return e
}

// audit writes an audit event; a failure is logged, never returned, so that
// an audit hiccup does not turn a login into an error (but is visible).
func (s *Service) audit(ctx context.Context, e unhidra.AuditEvent, detail map[string]any) {
	if len(detail) > 0 {
		b, _ := json.Marshal(detail)
		e.Detail = string(b)
	}
	if err := s.store.AppendAudit(context.WithoutCancel(ctx), &e); err != nil {
		s.log.Error("audit log write failed", "action", e.Action, "err", err)
	}
}

// newSession issues an access token and a refresh token of a new family.
func (s *Service) newSession(ctx context.Context, u *unhidra.User) (*Session, error) {
	refresh, hash := newRefreshToken()
	rt := &store.RefreshToken{Hash: hash, FamilyID: unhidra.NewID(unhidra.PrefixFamily), UserID: u.ID,
		ExpiresAt: s.now().Add(s.refreshTTL())}
	if err := s.store.CreateRefreshToken(ctx, rt); err != nil {
		return nil, fmt.Errorf("store refresh token: %w", err)
	}
	return s.sessionWith(u, refresh)
}

func (s *Service) sessionWith(u *unhidra.User, refresh string) (*Session, error) {
	access, _, err := s.tokens.Issue(u)
	if err != nil {
		return nil, err
	}
	// expires_in is the token's lifetime, as in OAuth 2.0 (RFC 6749 §5.1).
	return &Session{AccessToken: access, TokenType: "Bearer", ExpiresIn: int(s.tokens.Lifetime() / time.Second),
		RefreshToken: refresh, User: u}, nil
}

func (s *Service) refreshTTL() time.Duration { return cmpOr(s.RefreshTTL, 30*24*time.Hour) }

// newRefreshToken returns an opaque token and the digest that is stored.
func newRefreshToken() (token, digest string) {
	b := make([]byte, 32)
	rand.Read(b)
	token = "rt_" + base64.RawURLEncoding.EncodeToString(b)
	return token, hashRefreshToken(token)
}

func hashRefreshToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Register creates a member account (when registration is open) and signs
// it in.
func (s *Service) Register(ctx context.Context, name, password, displayName string, req Request) (*Session, error) {
	if !s.OpenRegistration {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "Registration is closed; ask an administrator for an account.")
	}
	in, err := validateAccount(name, password, displayName)
	if err != nil {
		return nil, err
	}
	// Only well-formed attempts spend the allowance: the limit is there to
	// stop account farming, not to punish typos.
	if ok, retry := s.registrations.Allow(req.IP, s.now()); !ok {
		return nil, rateLimited(retry)
	}
	u, err := s.storeAccount(ctx, in, unhidra.RoleMember)
	if err != nil {
		return nil, err
	}
	s.audit(ctx, unhidra.AuditEvent{Action: unhidra.AuditUserRegistered, ActorID: u.ID, ActorName: u.Name, Target: u.ID, IP: req.IP}, nil)
	return s.newSession(ctx, u)
}

// CreateUser creates an account with the given role on an administrator's
// behalf (actor nil means the command line).
func (s *Service) CreateUser(ctx context.Context, actor *unhidra.User, name, password string, role unhidra.Role, req Request) (*unhidra.User, error) {
	if !role.Valid() {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "Role must be admin, member or bot.")
	}
	var u *unhidra.User
	var err error
	if role == unhidra.RoleBot {
		u, err = s.createServiceAccount(ctx, name, password)
	} else {
		u, err = s.createUser(ctx, name, password, "", role)
	}
	if err != nil {
		return nil, err
	}
	e := unhidra.AuditEvent{Action: unhidra.AuditUserCreated, Target: u.ID, IP: req.IP}
	if actor != nil {
		e.ActorID, e.ActorName = actor.ID, actor.Name
	}
	s.audit(ctx, e, map[string]any{"name": u.Name, "role": role})
	return u, nil
}

// account is a validated, normalised request for a new account.
type account struct{ name, password, displayName string }

func validateAccount(name, password, displayName string) (account, error) {
	var a account
	var err error
	if a.name, err = ValidateName(name); err != nil {
		return a, err
	}
	if a.displayName, err = ValidateDisplayName(displayName); err != nil {
		return a, err
	}
	a.password, err = ValidatePassword(password, a.name)
	return a, err
}

func (s *Service) createUser(ctx context.Context, name, password, displayName string, role unhidra.Role) (*unhidra.User, error) {
	in, err := validateAccount(name, password, displayName)
	if err != nil {
		return nil, err
	}
	return s.storeAccount(ctx, in, role)
}

// createServiceAccount creates a bot: it has no password (the server mints
// its tokens) and so can never sign in with one.
func (s *Service) createServiceAccount(ctx context.Context, name, password string) (*unhidra.User, error) {
	if password != "" {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "Bots have no password; leave it out.")
	}
	n, err := ValidateName(name)
	if err != nil {
		return nil, err
	}
	u := &unhidra.User{Name: n, Role: unhidra.RoleBot}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	s.changed(ctx, u.ID) // it joined the default channel: caches of co-members are stale
	return u, nil
}

func (s *Service) storeAccount(ctx context.Context, in account, role unhidra.Role) (*unhidra.User, error) {
	hash, err := s.passwords.Hash(ctx, in.password)
	if err != nil {
		return nil, err
	}
	u := &unhidra.User{Name: in.name, DisplayName: in.displayName, Role: role, PasswordHash: hash}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	s.changed(ctx, u.ID) // it joined the default channel: caches of co-members are stale
	return u, nil
}

// Login checks a name and password and returns a session.
//
// Every failure looks the same (401 "Invalid name or password."): unknown
// name, wrong password, disabled account, service account; the reason goes
// to the audit log. Unknown names cost a full (dummy) verification.
// Throttling is keyed by the name as typed and the address, whether or not
// the account exists (see throttle.go), so the status sequence never tells
// known names from unknown ones: per address, LoginPerIP; per (name,
// address), a backoff after LockoutThreshold failures; per name,
// LoginPerAccount failures from everywhere, which addresses with a recent
// successful sign-in of the account bypass.
func (s *Service) Login(ctx context.Context, name, password string, req Request) (*Session, error) {
	now := s.now()
	if len(name) > 4*unhidra.MaxNameLen || len(password) > maxPasswordBytes {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "Name or password too long.")
	}
	if ok, retry := s.ipLogins.Allow(req.IP, now); !ok {
		return nil, rateLimited(retry)
	}
	// The same normalisation as at registration, or a decomposed "é" would
	// not find its account.
	normName, nameErr := ValidateName(name)
	acct := strings.ToLower(normName)
	if nameErr != nil {
		acct = strings.ToLower(truncate(name, 4*unhidra.MaxNameLen))
	}
	pair := acct + "\x00" + req.IP
	if wait := s.pairFails.locked(pair, now); wait > 0 {
		return nil, rateLimited(wait)
	}
	trusted := s.trusted.has(pair, now)
	if !trusted {
		if ok, retry := s.accountFails.Peek(acct, now); !ok {
			return nil, rateLimited(retry)
		}
	}
	pw, pwErr := normalizeForLogin(password)
	ctx = WithSource(ctx, req.IP)

	var u *unhidra.User
	if nameErr == nil {
		var err error
		u, err = s.store.UserByName(ctx, normName)
		if err != nil && unhidra.ErrorCode(err) != protocol.ErrNotFound {
			return nil, err
		}
	}
	if u == nil || pwErr != nil || u.PasswordHash == "" {
		if err := s.passwords.VerifyDummy(ctx, password); err != nil {
			return nil, err
		}
		reason := "unknown_account"
		if u != nil {
			reason = "no_password"
		}
		return nil, s.loginFailed(ctx, u, name, pair, acct, reason, req)
	}
	ok, rehash, err := s.passwords.Verify(ctx, pw, u.PasswordHash)
	if err != nil {
		return nil, err
	}
	switch {
	case !ok:
		return nil, s.loginFailed(ctx, u, name, pair, acct, "bad_password", req)
	case u.Disabled:
		// The right password of a disabled account must not be confirmed.
		return nil, s.loginFailed(ctx, u, name, pair, acct, "disabled", req)
	case u.Role == unhidra.RoleBot:
		return nil, s.loginFailed(ctx, u, name, pair, acct, "service_account", req)
	}
	upd := store.UserUpdate{}
	if u.FailedLogins != 0 || !u.LockedUntil.IsZero() {
		zero, never := 0, time.Time{}
		upd.FailedLogins, upd.LockedUntil = &zero, &never
	}
	if rehash {
		// Parameters changed since this hash was made: upgrade it now that
		// we know the password.
		if h, err := s.passwords.Hash(ctx, pw); err == nil {
			upd.PasswordHash = &h
		} else {
			s.log.Warn("rehash on login failed", "user", u.ID, "err", err)
		}
	}
	if !upd.IsZero() {
		if u, err = s.store.UpdateUser(ctx, u.ID, upd); err != nil {
			return nil, err
		}
	}
	s.pairFails.reset(pair)
	s.trusted.add(pair, now.Add(s.limits.TrustedFor), now)
	s.audit(ctx, unhidra.AuditEvent{Action: unhidra.AuditLoginSuccess, ActorID: u.ID, ActorName: u.Name, IP: req.IP},
		map[string]any{"user_agent": truncate(req.UserAgent, 200), "rehashed": rehash})
	return s.newSession(ctx, u)
}

// loginFailed counts a failed sign-in against the (name, address) pair and
// the name, audits it with its reason, and returns the one error every
// failure gives.
func (s *Service) loginFailed(ctx context.Context, u *unhidra.User, name, pair, acct, reason string, req Request) error {
	now := s.now()
	lockedFor, fails := s.pairFails.fail(pair, now)
	s.accountFails.Allow(acct, now)
	e := unhidra.AuditEvent{Action: unhidra.AuditLoginFailure, ActorName: truncate(name, 64), IP: req.IP}
	if u != nil {
		e.ActorID, e.ActorName = u.ID, u.Name
	}
	s.audit(ctx, e, map[string]any{"reason": reason, "failures": fails})
	if lockedFor > 0 {
		e.Action, e.Target = unhidra.AuditLoginLocked, e.ActorID
		s.audit(ctx, e, map[string]any{"seconds": int(lockedFor / time.Second), "failures": fails, "scope": "address"})
	}
	return errBadCredentials
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// Refresh rotates a refresh token: the presented one is spent and a new one
// returned with a fresh access token. Presenting a spent token revokes its
// whole family (it was stolen or replayed).
func (s *Service) Refresh(ctx context.Context, refreshToken string, req Request) (*Session, error) {
	if len(refreshToken) == 0 || len(refreshToken) > 128 {
		return nil, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid refresh token.")
	}
	next, nextHash := newRefreshToken()
	rt := &store.RefreshToken{Hash: nextHash, ExpiresAt: s.now().Add(s.refreshTTL())}
	old, err := s.store.RotateRefreshToken(ctx, hashRefreshToken(refreshToken), rt)
	switch unhidra.ErrorCode(err) {
	case "":
	case protocol.ErrConflict:
		n, rerr := s.store.RevokeTokenFamily(ctx, old.FamilyID)
		if rerr != nil {
			s.log.Error("revoke reused token family", "family", old.FamilyID, "err", rerr)
		}
		s.audit(ctx, unhidra.AuditEvent{Action: unhidra.AuditTokenReuse, ActorID: old.UserID, Target: old.FamilyID, IP: req.IP},
			map[string]any{"revoked": n})
		return nil, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid refresh token.")
	case protocol.ErrNotFound:
		return nil, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid refresh token.")
	default:
		return nil, err
	}
	u, err := s.store.UserByID(ctx, old.UserID)
	if err != nil {
		return nil, err
	}
	if u.Disabled || u.Role == unhidra.RoleBot {
		s.store.RevokeUserTokens(ctx, u.ID)
		return nil, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid refresh token.")
	}
	return s.sessionWith(u, next)
}

// Logout revokes the session's refresh-token family. The access token dies
// by itself within its short lifetime.
func (s *Service) Logout(ctx context.Context, u *unhidra.User, refreshToken string, req Request) error {
	rt, err := s.store.RefreshTokenByHash(ctx, hashRefreshToken(refreshToken))
	if err != nil || rt.UserID != u.ID {
		// Not the caller's token: say nothing about whose it is.
		return unhidra.Errorf(protocol.ErrUnauthorized, "Invalid refresh token.")
	}
	n, err := s.store.RevokeTokenFamily(ctx, rt.FamilyID)
	if err != nil {
		return err
	}
	s.audit(ctx, unhidra.AuditEvent{Action: unhidra.AuditTokenRevoked, ActorID: u.ID, ActorName: u.Name, Target: rt.FamilyID, IP: req.IP},
		map[string]any{"reason": "logout", "revoked": n})
	return nil
}

// Authenticate verifies an access token and returns its user, who must
// still exist and be enabled.
func (s *Service) Authenticate(ctx context.Context, accessToken string) (*unhidra.User, error) {
	u, _, err := s.AuthenticateClaims(ctx, accessToken)
	return u, err
}

// AuthenticateClaims is Authenticate that also returns the token's claims
// (the gateway needs the expiry).
func (s *Service) AuthenticateClaims(ctx context.Context, accessToken string) (*unhidra.User, *Claims, error) {
	claims, err := s.tokens.Verify(accessToken)
	if err != nil {
		return nil, nil, err
	}
	u, err := s.userFor(ctx, claims)
	return u, claims, err
}

func (s *Service) userFor(ctx context.Context, claims *Claims) (*unhidra.User, error) {
	u, err := s.cachedUser(ctx, claims.Subject)
	if unhidra.ErrorCode(err) == protocol.ErrNotFound {
		return nil, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid or expired token.")
	} else if err != nil {
		return nil, err
	}
	// A token from before the latest password change, disable, role change
	// or "sign out everywhere" is dead, even if the account is enabled again.
	if u.Disabled || claims.Epoch != u.SessionEpoch {
		return nil, unhidra.Errorf(protocol.ErrUnauthorized, "Invalid or expired token.")
	}
	return u, nil
}

// ChangePassword changes the caller's password after checking the current
// one, signs out every other session and returns a new one.
func (s *Service) ChangePassword(ctx context.Context, u *unhidra.User, current, next string, req Request) (*Session, error) {
	if len(current) > maxPasswordBytes {
		return nil, errBadCredentials
	}
	if u.Role == unhidra.RoleBot || u.PasswordHash == "" {
		return nil, errServiceAccount
	}
	pair := strings.ToLower(u.Name) + "\x00" + req.IP
	if wait := s.pairFails.locked(pair, s.now()); wait > 0 {
		return nil, rateLimited(wait)
	}
	cur, err := normalizeForLogin(current)
	if err != nil {
		return nil, unhidra.Errorf(protocol.ErrUnauthorized, "Current password is wrong.")
	}
	ok, _, err := s.passwords.Verify(WithSource(ctx, req.IP), cur, u.PasswordHash)
	if err != nil {
		return nil, err
	}
	if !ok {
		s.pairFails.fail(pair, s.now())
		return nil, unhidra.Errorf(protocol.ErrUnauthorized, "Current password is wrong.")
	}
	nu, err := s.setPassword(WithSource(ctx, req.IP), u, next)
	if err != nil {
		return nil, err
	}
	s.audit(ctx, unhidra.AuditEvent{Action: unhidra.AuditPasswordChanged, ActorID: u.ID, ActorName: u.Name, Target: u.ID, IP: req.IP}, nil)
	s.changed(ctx, u.ID)
	return s.newSession(ctx, nu)
}

// ResetPassword sets a user's password on an administrator's behalf (actor
// nil means the command line) and signs the user out everywhere.
func (s *Service) ResetPassword(ctx context.Context, actor *unhidra.User, userID, password string, req Request) error {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return err
	}
	if u.Role == unhidra.RoleBot {
		return errServiceAccount
	}
	if _, err := s.setPassword(ctx, u, password); err != nil {
		return err
	}
	e := unhidra.AuditEvent{Action: unhidra.AuditPasswordReset, Target: u.ID, IP: req.IP}
	if actor != nil {
		e.ActorID, e.ActorName = actor.ID, actor.Name
	}
	s.audit(ctx, e, nil)
	s.changed(ctx, u.ID)
	return nil
}

// setPassword validates and stores a new password and ends every session
// of the user (new epoch, refresh tokens revoked). The caller announces the
// change (s.changed) after auditing it.
func (s *Service) setPassword(ctx context.Context, u *unhidra.User, password string) (*unhidra.User, error) {
	pw, err := ValidatePassword(password, u.Name)
	if err != nil {
		return nil, err
	}
	hash, err := s.passwords.Hash(ctx, pw)
	if err != nil {
		return nil, err
	}
	zero, never := 0, time.Time{}
	nu, err := s.store.UpdateUser(ctx, u.ID, store.UserUpdate{PasswordHash: &hash, FailedLogins: &zero, LockedUntil: &never, BumpEpoch: true})
	if err != nil {
		return nil, err
	}
	if _, err := s.store.RevokeUserTokens(ctx, u.ID); err != nil {
		return nil, fmt.Errorf("revoke sessions: %w", err)
	}
	return nu, nil
}

// errServiceAccount refuses password operations on bots: they have no
// password and never sign in with one.
var errServiceAccount = unhidra.Errorf(protocol.ErrInvalid, "Service accounts have no password; they cannot sign in with one.")

// SignOutEverywhere ends every session of u: every access token issued so
// far stops working on every node, live connections close and refresh
// tokens are revoked.
func (s *Service) SignOutEverywhere(ctx context.Context, u *unhidra.User, req Request) error {
	if _, err := s.store.UpdateUser(ctx, u.ID, store.UserUpdate{BumpEpoch: true}); err != nil {
		return err
	}
	n, err := s.store.RevokeUserTokens(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("revoke sessions: %w", err)
	}
	s.audit(ctx, unhidra.AuditEvent{Action: unhidra.AuditTokenRevoked, ActorID: u.ID, ActorName: u.Name, Target: u.ID, IP: req.IP},
		map[string]any{"reason": "sign_out_everywhere", "revoked": n})
	s.changed(ctx, u.ID)
	return nil
}

// SetRole changes a user's role (admin or member) and ends their sessions,
// so no token carries the old role. Bots stay bots and people do not become
// bots. Administrators cannot change their own role.
func (s *Service) SetRole(ctx context.Context, actor *unhidra.User, userID string, role unhidra.Role, req Request) (*unhidra.User, error) {
	if role != unhidra.RoleAdmin && role != unhidra.RoleMember {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "Role must be admin or member.")
	}
	if actor != nil && actor.ID == userID {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "You cannot change your own role.")
	}
	cur, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	if cur.Role == unhidra.RoleBot {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "Service accounts keep their role.")
	}
	u, err := s.store.UpdateUser(ctx, userID, store.UserUpdate{Role: &role, BumpEpoch: true})
	if err != nil {
		return nil, err
	}
	if _, err := s.store.RevokeUserTokens(ctx, u.ID); err != nil {
		return nil, fmt.Errorf("revoke sessions: %w", err)
	}
	e := unhidra.AuditEvent{Action: unhidra.AuditUserRoleChanged, Target: u.ID, IP: req.IP}
	if actor != nil {
		e.ActorID, e.ActorName = actor.ID, actor.Name
	}
	s.audit(ctx, e, map[string]any{"from": cur.Role, "to": role})
	s.changed(ctx, u.ID)
	return u, nil
}

// SetDisabled disables or re-enables an account. Disabling signs the user
// out everywhere. Administrators cannot disable themselves (the last admin
// must not lock everyone out).
func (s *Service) SetDisabled(ctx context.Context, actor *unhidra.User, userID string, disabled bool, req Request) (*unhidra.User, error) {
	if actor != nil && actor.ID == userID && disabled {
		return nil, unhidra.Errorf(protocol.ErrInvalid, "You cannot disable your own account.")
	}
	// Disabling bumps the epoch, so re-enabling does not revive old tokens.
	u, err := s.store.UpdateUser(ctx, userID, store.UserUpdate{Disabled: &disabled, BumpEpoch: disabled})
	if err != nil {
		return nil, err
	}
	action := unhidra.AuditUserEnabled
	if disabled {
		action = unhidra.AuditUserDisabled
		if _, err := s.store.RevokeUserTokens(ctx, u.ID); err != nil {
			return nil, fmt.Errorf("revoke sessions: %w", err)
		}
	}
	e := unhidra.AuditEvent{Action: action, Target: u.ID, IP: req.IP}
	if actor != nil {
		e.ActorID, e.ActorName = actor.ID, actor.Name
	}
	s.audit(ctx, e, nil)
	// Devices follow their owner: closed and refused while disabled.
	e.Action = unhidra.AuditDevicesSuspended
	if !disabled {
		e.Action = unhidra.AuditDevicesResumed
	}
	s.audit(ctx, e, nil)
	s.changed(ctx, u.ID)
	return u, nil
}

// NeedsAdmin reports whether no administrator account exists yet (bots
// and members may: the built-in bot has an account from the first start).
func (s *Service) NeedsAdmin(ctx context.Context) (bool, error) {
	admin := unhidra.RoleAdmin
	admins, err := s.store.Users(ctx, store.UserFilter{Role: &admin, Limit: 1})
	return len(admins) == 0, err
}

// StartBootstrap returns a one-time code that lets the first person create
// the administrator account, valid for ttl, if no administrator exists yet;
// "" otherwise. Only its digest is kept.
func (s *Service) StartBootstrap(ctx context.Context, ttl time.Duration) (string, error) {
	if need, err := s.NeedsAdmin(ctx); err != nil || !need {
		return "", err
	}
	b := make([]byte, 10)
	rand.Read(b)
	raw := strings.ToUpper(base32NoPad(b)) // 16 characters
	code := raw[0:4] + "-" + raw[4:8] + "-" + raw[8:12] + "-" + raw[12:16]
	s.mu.Lock()
	s.bootstrap.digest = sha256.Sum256([]byte(code))
	s.bootstrap.expires = s.now().Add(ttl)
	s.mu.Unlock()
	return code, nil
}

// Bootstrap creates the first administrator with the one-time code.
func (s *Service) Bootstrap(ctx context.Context, code, name, password string, req Request) (*Session, error) {
	if ok, retry := s.registrations.Allow("bootstrap:"+req.IP, s.now()); !ok {
		return nil, rateLimited(retry)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	given := sha256.Sum256([]byte(strings.ToUpper(strings.TrimSpace(code))))
	valid := s.bootstrap.expires.After(s.now()) && subtle.ConstantTimeCompare(given[:], s.bootstrap.digest[:]) == 1
	if !valid {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "Invalid or expired bootstrap code.")
	}
	if need, err := s.NeedsAdmin(ctx); err != nil {
		return nil, err
	} else if !need {
		return nil, unhidra.Errorf(protocol.ErrForbidden, "The server is already set up.")
	}
	u, err := s.createUser(ctx, name, password, "", unhidra.RoleAdmin)
	if err != nil {
		return nil, err
	}
	s.bootstrap.expires = time.Time{} // one use only
	s.audit(ctx, unhidra.AuditEvent{Action: unhidra.AuditUserBootstrapped, ActorID: u.ID, ActorName: u.Name, Target: u.ID, IP: req.IP}, nil)
	return s.newSession(ctx, u)
}

// BootstrapPending reports whether a bootstrap code is waiting to be used.
func (s *Service) BootstrapPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bootstrap.expires.After(s.now())
}

func base32NoPad(b []byte) string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789" // no 0/O, 1/I
	var out strings.Builder
	var acc, bits uint
	for _, c := range b {
		acc = acc<<8 | uint(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out.WriteByte(alphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		out.WriteByte(alphabet[(acc<<(5-bits))&31])
	}
	return out.String()
}

// RotateSigningKey makes a fresh signing key active (same algorithm); the
// old key keeps verifying until its tokens expire.
func (s *Service) RotateSigningKey(ctx context.Context, actor *unhidra.User, req Request) (string, error) {
	ks := s.tokens.Keys
	if err := ks.Rotate(ks.Active().Alg, s.now()); err != nil {
		return "", err
	}
	if err := ks.Prune(s.now(), s.tokens.Lifetime()+s.tokens.leeway()); err != nil {
		s.log.Warn("prune signing keys", "err", err)
	}
	kid := ks.Active().ID
	e := unhidra.AuditEvent{Action: unhidra.AuditSigningKeyRotate, Target: kid, IP: req.IP}
	if actor != nil {
		e.ActorID, e.ActorName = actor.ID, actor.Name
	}
	s.audit(ctx, e, nil)
	return kid, nil
}
