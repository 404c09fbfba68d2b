package grpcmarket

import (
	"context"
	"errors"
	"fmt"

	"github.com/megha-ml/megha/lease"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of market errors; the
// reason names a lease sentinel (see sentinels).
const ErrorDomain = "megha.dev/lease"

// ErrNoOperator is returned by Providers and Fail when the market serves
// no operator calls (the server was given a nil Operator).
var ErrNoOperator = errors.New("grpcmarket: this market serves no operator calls")

// sentinels is the one error table: each lease sentinel, its ErrorInfo
// reason and its gRPC code. The server maps with errors.Is in this order
// (an error wrapping two sentinels gets the first one's code and both
// reasons); the client maps each reason back to its sentinel.
var sentinels = []struct {
	err    error
	reason string
	code   codes.Code
}{
	{lease.ErrNotFound, "NOT_FOUND", codes.NotFound},
	{lease.ErrNoSuchGPUType, "NO_SUCH_GPU_TYPE", codes.InvalidArgument},
	{lease.ErrInvalid, "INVALID", codes.InvalidArgument},
	{lease.ErrUnauthorized, "UNAUTHORIZED", codes.PermissionDenied},
	{lease.ErrOrderClosed, "ORDER_CLOSED", codes.FailedPrecondition},
	{lease.ErrBidExhausted, "BID_EXHAUSTED", codes.FailedPrecondition},
	{lease.ErrLeaseClosed, "LEASE_CLOSED", codes.FailedPrecondition},
	{lease.ErrOverMaxPrice, "OVER_MAX_PRICE", codes.FailedPrecondition},
	{lease.ErrInsufficient, "INSUFFICIENT", codes.FailedPrecondition},
	{lease.ErrUnavailable, "UNAVAILABLE", codes.Unavailable},
	{ErrNoOperator, "NO_OPERATOR", codes.Unimplemented},
}

// toStatus maps an error of the market to a gRPC status carrying the
// error's full message and an ErrorInfo naming its sentinel.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	// One ErrorInfo per sentinel the error wraps, so that every errors.Is
	// that holds here holds on the client; the first decides the code.
	var st *status.Status
	for _, s := range sentinels {
		if !errors.Is(err, s.err) {
			continue
		}
		if st == nil {
			st = status.New(s.code, err.Error())
		}
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: s.reason, Domain: ErrorDomain}); derr == nil {
			st = d
		}
	}
	if st != nil {
		return st.Err()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// remoteError is a market error that crossed the wire: its message is the
// server's, and it unwraps to the lease sentinel the server named (and,
// for a call that ran out of time, to the context's error as well).
type remoteError struct {
	msg  string
	errs []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.errs }

// fromStatus turns the error of a call to the market at addr back into a
// lease error. ctx is the call's context: a call that failed because its
// deadline passed is a market that did not answer in time (ErrUnavailable
// and context.DeadlineExceeded); one the caller cancelled is just
// context.Canceled.
func fromStatus(ctx context.Context, addr string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		if cerr := ctx.Err(); cerr != nil {
			return ctxError(addr, cerr, err)
		}
		return fmt.Errorf("%w: market at %s: %v", lease.ErrUnavailable, addr, err)
	}
	var named []error
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		for _, s := range sentinels {
			if s.reason == info.GetReason() {
				named = append(named, s.err)
			}
		}
	}
	if len(named) > 0 {
		return &remoteError{msg: st.Message(), errs: named}
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		// Our deadline, propagated to the server, which may see it pass
		// a moment before we do.
		return ctxError(addr, context.DeadlineExceeded, err)
	case codes.Unavailable, codes.Canceled:
		if cerr := ctx.Err(); cerr != nil {
			return ctxError(addr, cerr, err)
		}
		return &remoteError{msg: fmt.Sprintf("%v: market at %s: %s", lease.ErrUnavailable, addr, st.Message()),
			errs: []error{lease.ErrUnavailable}}
	case codes.Unimplemented:
		return &remoteError{msg: fmt.Sprintf("%v (%s): %s", ErrNoOperator, addr, st.Message()), errs: []error{ErrNoOperator}}
	}
	return &remoteError{msg: fmt.Sprintf("market at %s: %s: %s", addr, st.Code(), st.Message())}
}

// ctxError explains a call cut short by its own context.
func ctxError(addr string, cerr, err error) error {
	if errors.Is(cerr, context.DeadlineExceeded) {
		return &remoteError{msg: fmt.Sprintf("%v: market at %s did not answer before the deadline", lease.ErrUnavailable, addr),
			errs: []error{lease.ErrUnavailable, context.DeadlineExceeded}}
	}
	return &remoteError{msg: fmt.Sprintf("market call to %s cancelled: %v", addr, status.Convert(err).Message()),
		errs: []error{cerr}}
}

// errNoName refuses a FailProvider without a name.
var errNoName = fmt.Errorf("%w: no provider name", lease.ErrInvalid)
