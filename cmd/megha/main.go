// Command megha is the megha CLI and agent: one binary that runs the
// coordinator and talks to it.
//
//	megha coordinator --bootstrap                 start a one-node coordinator
//	megha submit examples/train-tiny.yaml         submit a job
//	megha jobs | status JOB | cancel JOB          follow and manage jobs
//	megha cluster members                         inspect the Raft cluster
package main

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/status"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", describe(err))
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// describe renders gRPC errors as their message with a hint, not as
// "rpc error: code = ... desc = ...".
func describe(err error) string {
	st, ok := status.FromError(errors.Unwrap(err))
	if !ok {
		st, ok = status.FromError(err)
	}
	if !ok {
		return err.Error()
	}
	msg := st.Message()
	if h := hintFor(st); h != "" {
		msg += "\n" + h
	}
	return msg
}
