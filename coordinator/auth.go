package coordinator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
)

// Role is what a token may do.
type Role string

// Roles of bearer tokens.
const (
	RoleAdmin  Role = "admin"  // everything, on every tenant's jobs
	RoleTenant Role = "tenant" // submit and manage its own tenant's jobs
	RoleWorker Role = "worker" // the worker API only
)

// DefaultTenant is the tenant of admin tokens that name none.
const DefaultTenant = "default"

// Identity is who made a request, derived from its bearer token.
type Identity struct {
	Role   Role
	Tenant string
	// TokenID is a short, non-secret fingerprint of the token, safe to log
	// and used as the rate-limit key.
	TokenID string
}

// Tokens maps token digests to identities. Tokens themselves are never
// kept or logged; lookups hash the presented token.
type Tokens struct {
	byDigest map[[sha256.Size]byte]Identity
}

// minTokenLen keeps guessable tokens out of the file.
const minTokenLen = 16

// ParseTokens reads a tokens file: one token a line as
//
//	TOKEN ROLE [TENANT]
//
// with blank lines and lines starting with '#' ignored. ROLE is admin,
// tenant or worker; TENANT is required for tenant tokens.
func ParseTokens(data []byte) (*Tokens, error) {
	t := &Tokens{byDigest: make(map[[sha256.Size]byte]Identity)}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		id, tok, err := parseTokenLine(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		d := sha256.Sum256([]byte(tok))
		if _, dup := t.byDigest[d]; dup {
			errs = append(errs, fmt.Errorf("line %d: token repeats an earlier line; each token must be unique", line))
			continue
		}
		t.byDigest[d] = id
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("tokens file: %w", err))
	}
	if len(errs) == 0 && len(t.byDigest) == 0 {
		errs = append(errs, errors.New("no tokens; add a line like `<token> admin`"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

func parseTokenLine(text string) (Identity, string, error) {
	f := strings.Fields(text)
	if len(f) < 2 || len(f) > 3 {
		return Identity{}, "", errors.New("want `TOKEN ROLE [TENANT]`")
	}
	tok, role := f[0], Role(f[1])
	if len(tok) < minTokenLen {
		return Identity{}, "", fmt.Errorf("token is %d characters; use at least %d (e.g. `openssl rand -hex 16`)", len(tok), minTokenLen)
	}
	id := Identity{Role: role, TokenID: tokenID(tok)}
	switch role {
	case RoleAdmin:
		id.Tenant = DefaultTenant
		if len(f) == 3 {
			id.Tenant = f[2]
		}
	case RoleTenant:
		if len(f) != 3 {
			return Identity{}, "", errors.New("a tenant token needs a tenant name: `TOKEN tenant NAME`")
		}
		id.Tenant = f[2]
	case RoleWorker:
		if len(f) == 3 {
			id.Tenant = f[2]
		}
	default:
		return Identity{}, "", fmt.Errorf("unknown role %q; use admin, tenant or worker", f[1])
	}
	if id.Tenant != "" && !validTenant(id.Tenant) {
		return Identity{}, "", fmt.Errorf("tenant %q: use 1-63 characters of a-z, 0-9, '-' and '_'", id.Tenant)
	}
	return id, tok, nil
}

func validTenant(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// LoadTokens reads and parses a tokens file.
func LoadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	t, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return t, nil
}

// EnsureAdminToken returns the tokens of a coordinator started without a
// tokens file: one admin token, created in dataDir/admin.token (mode 0600)
// on first start and reused afterwards.
func EnsureAdminToken(dataDir string) (*Tokens, string, error) {
	path := filepath.Join(dataDir, "admin.token")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return nil, "", err
		}
		b = []byte(hex.EncodeToString(raw) + "\n")
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, "", fmt.Errorf("write admin token: %w", err)
		}
	} else if err != nil {
		return nil, "", fmt.Errorf("read admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	t, err := ParseTokens([]byte(tok + " admin\n"))
	if err != nil {
		return nil, "", fmt.Errorf("admin token in %s: %w", path, err)
	}
	return t, path, nil
}

// Lookup returns the identity of a presented token.
func (t *Tokens) Lookup(token string) (Identity, bool) {
	id, ok := t.byDigest[sha256.Sum256([]byte(token))]
	return id, ok
}

func tokenID(tok string) string {
	d := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(d[:4])
}

type identityKey struct{}

// IdentityFrom returns the identity the auth interceptor attached.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// authFunc is the go-grpc-middleware auth function: it resolves the bearer
// token to an identity and checks the method's role policy.
func (t *Tokens) authFunc(ctx context.Context) (context.Context, error) {
	tok, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, toStatus(fmt.Errorf("%w: send `authorization: bearer <token>` (megha --token or MEGHA_TOKEN)", ErrUnauthenticated))
	}
	id, ok := t.Lookup(tok)
	if !ok {
		return nil, toStatus(fmt.Errorf("%w: the token is not in the coordinator's tokens file", ErrUnauthenticated))
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}
