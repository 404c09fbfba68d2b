package coordinator

import (
	"context"
	"fmt"
	"sync"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
)

// methodRoles lists, per service, the roles that may call it; methods
// listed in methodOverride replace their service's list.
var (
	serviceRoles = map[string][]Role{
		meghav1.JobService_ServiceDesc.ServiceName:     {RoleAdmin, RoleTenant},
		meghav1.WorkerService_ServiceDesc.ServiceName:  {RoleAdmin, RoleWorker},
		meghav1.ClusterService_ServiceDesc.ServiceName: {RoleAdmin},
		meghav1.MarketService_ServiceDesc.ServiceName:  {RoleAdmin},
	}
	methodOverride = map[string][]Role{
		meghav1.ClusterService_Members_FullMethodName:    {RoleAdmin, RoleTenant, RoleWorker},
		meghav1.ClusterService_Leader_FullMethodName:     {RoleAdmin, RoleTenant, RoleWorker},
		meghav1.WorkerService_ListWorkers_FullMethodName: {RoleAdmin, RoleTenant},
	}
)

func allowed(fullMethod string, role Role) bool {
	roles, ok := methodOverride[fullMethod]
	if !ok {
		roles = serviceRoles[serviceOf(fullMethod)]
	}
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

// serviceOf returns "pkg.Service" of "/pkg.Service/Method".
func serviceOf(fullMethod string) string {
	for i := len(fullMethod) - 1; i > 0; i-- {
		if fullMethod[i] == '/' {
			return fullMethod[1:i]
		}
	}
	return ""
}

func authorize(ctx context.Context, fullMethod string) error {
	id, ok := IdentityFrom(ctx)
	if !ok {
		return toStatus(ErrUnauthenticated)
	}
	if !allowed(fullMethod, id.Role) {
		return toStatus(fmt.Errorf("%w: a %s token may not call %s", ErrPermission, id.Role, fullMethod))
	}
	return nil
}

func authorizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// tokenLimiter is a token bucket per bearer token (ratelimit.Limiter).
type tokenLimiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	by    map[string]*rate.Limiter
}

func newTokenLimiter(perSecond float64, burst int) *tokenLimiter {
	if burst <= 0 {
		burst = int(perSecond)
		if burst < 1 {
			burst = 1
		}
	}
	return &tokenLimiter{limit: rate.Limit(perSecond), burst: burst, by: make(map[string]*rate.Limiter)}
}

// Limit implements ratelimit.Limiter.
func (l *tokenLimiter) Limit(ctx context.Context) error {
	if l.limit <= 0 {
		return nil
	}
	id, _ := IdentityFrom(ctx)
	l.mu.Lock()
	lim, ok := l.by[id.TokenID]
	if !ok {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.by[id.TokenID] = lim
	}
	l.mu.Unlock()
	if !lim.Allow() {
		return toStatus(fmt.Errorf("%w: %v requests/s per token; slow down or raise --rate-limit", ErrRateLimited, float64(l.limit)))
	}
	return nil
}

func validateUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := validateRequest(req); err != nil {
		return nil, toStatus(err)
	}
	return h(ctx, req)
}

// validateStream validates the first message of server-streaming calls,
// which is the request.
func validateStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &validatingStream{ServerStream: ss})
}

type validatingStream struct {
	grpc.ServerStream
	seen bool
}

func (v *validatingStream) RecvMsg(m any) error {
	if err := v.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !v.seen {
		v.seen = true
		if err := validateRequest(m); err != nil {
			return toStatus(err)
		}
	}
	return nil
}
