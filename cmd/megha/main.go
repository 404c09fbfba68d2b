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
	"strings"

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

// describe renders an error for people: a gRPC status inside it shows as
// its message plus a hint, not as "rpc error: code = ... desc = ...".
func describe(err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return err.Error()
	}
	st := se.GRPCStatus()
	msg := strings.Replace(err.Error(), se.(error).Error(), st.Message(), 1)
	if h := hintFor(st); h != "" {
		msg += "\n" + h
	}
	return msg
}
