package coordinator

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is a raft.StreamLayer over a listener we opened ourselves, so
// that a node can bind port 0 and advertise the port the OS chose.
type streamLayer struct {
	net.Listener
	advertise net.Addr
}

func newStreamLayer(bind, advertise string) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("coordinator: raft listen on %s: %w", bind, err)
	}
	adv := ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("coordinator: raft advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	if tcp, ok := adv.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("coordinator: raft address %s is not reachable by peers; bind a specific IP or set an advertise address", adv)
	}
	return &streamLayer{Listener: ln, advertise: adv}, nil
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }
