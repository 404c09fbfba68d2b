package coordinator

import (
	"math"
	"sort"
	"sync"
	"time"
)

// DetectorConfig tunes the failure detector.
//
// The detector is phi-accrual (Hayashibara et al.; as in Akka and
// Cassandra): for each worker it keeps the recent intervals between
// heartbeats and computes phi = -log10(P(a heartbeat arrives later than
// now)), assuming intervals are normally distributed around their mean. A
// worker is suspected when phi passes Threshold. AcceptablePause is the
// floor: it is added to the mean, so no worker is declared lost sooner than
// one interval plus this pause after its last heartbeat, however regular
// its heartbeats were.
type DetectorConfig struct {
	Threshold       float64       // phi at which a worker is lost; default 8
	MinStdDev       time.Duration // floor on the spread of intervals; default 250ms
	AcceptablePause time.Duration // the floor; default 5s
	FirstInterval   time.Duration // assumed interval before any is measured; default 1s
	Window          int           // intervals remembered per worker; default 64
}

// DefaultDetectorConfig returns the defaults described on DetectorConfig.
func DefaultDetectorConfig() DetectorConfig {
	return DetectorConfig{Threshold: 8, MinStdDev: 250 * time.Millisecond,
		AcceptablePause: 5 * time.Second, FirstInterval: time.Second, Window: 64}
}

// Detector tracks heartbeats in the leader's memory. It is pure
// bookkeeping: time comes in as arguments, and it proposes nothing itself.
type Detector struct {
	cfg DetectorConfig
	mu  sync.Mutex
	by  map[string]*arrivals
}

type arrivals struct {
	epoch     uint64
	last      time.Time
	heard     bool      // a real heartbeat arrived (last is not just Track's start)
	intervals []float64 // seconds, a ring of cfg.Window
	next      int
	n         int
	sum, sq   float64
}

// NewDetector returns an empty detector; zero config fields take defaults.
func NewDetector(cfg DetectorConfig) *Detector {
	def := DefaultDetectorConfig()
	if cfg.Threshold <= 0 {
		cfg.Threshold = def.Threshold
	}
	if cfg.MinStdDev <= 0 {
		cfg.MinStdDev = def.MinStdDev
	}
	if cfg.AcceptablePause < 0 {
		cfg.AcceptablePause = 0
	}
	if cfg.FirstInterval <= 0 {
		cfg.FirstInterval = def.FirstInterval
	}
	if cfg.Window <= 0 {
		cfg.Window = def.Window
	}
	return &Detector{cfg: cfg, by: make(map[string]*arrivals)}
}

// Track starts (or restarts) tracking a worker as if it had just sent a
// heartbeat: a fresh registration, or every known worker when a new leader
// takes over (its grace period).
func (d *Detector) Track(id string, epoch uint64, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.by[id] = &arrivals{epoch: epoch, last: now, intervals: make([]float64, d.cfg.Window)}
}

// Heartbeat records a heartbeat; it reports false for a worker or epoch it
// does not track.
func (d *Detector) Heartbeat(id string, epoch uint64, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.by[id]
	if !ok || a.epoch != epoch {
		return false
	}
	if dt := now.Sub(a.last).Seconds(); dt > 0 {
		if a.n == len(a.intervals) {
			old := a.intervals[a.next]
			a.sum -= old
			a.sq -= old * old
		} else {
			a.n++
		}
		a.intervals[a.next] = dt
		a.next = (a.next + 1) % len(a.intervals)
		a.sum += dt
		a.sq += dt * dt
	}
	a.last, a.heard = now, true
	return true
}

// Forget stops tracking a worker.
func (d *Detector) Forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.by, id)
}

// Reset forgets every worker.
func (d *Detector) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.by = make(map[string]*arrivals)
}

// Len is the number of workers tracked.
func (d *Detector) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.by)
}

// LastHeartbeat returns when the worker was last heard from by this
// detector; false before its first heartbeat (a grace period's start is not
// a heartbeat).
func (d *Detector) LastHeartbeat(id string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.by[id]
	if !ok || !a.heard {
		return time.Time{}, false
	}
	return a.last, true
}

// stats returns the mean and standard deviation (seconds) that phi uses,
// the acceptable pause already added to the mean.
func (d *Detector) stats(a *arrivals) (mean, std float64) {
	mean = d.cfg.FirstInterval.Seconds()
	std = mean / 4
	if a.n > 0 {
		mean = a.sum / float64(a.n)
		std = math.Sqrt(math.Max(a.sq/float64(a.n)-mean*mean, 0))
	}
	return mean + d.cfg.AcceptablePause.Seconds(), math.Max(std, d.cfg.MinStdDev.Seconds())
}

// phi of a heartbeat still missing elapsed seconds after the last one,
// with the logistic approximation of the normal CDF used by Akka.
func phi(elapsed, mean, std float64) float64 {
	y := (elapsed - mean) / std
	e := math.Exp(-y * (1.5976 + 0.070566*y*y))
	if elapsed > mean {
		return -math.Log10(e / (1 + e))
	}
	return -math.Log10(1 - 1/(1+e))
}

// Phi returns the worker's suspicion level now; 0 for an unknown worker.
func (d *Detector) Phi(id string, now time.Time) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.by[id]
	if !ok {
		return 0
	}
	mean, std := d.stats(a)
	return phi(now.Sub(a.last).Seconds(), mean, std)
}

// Bound returns how long after its last heartbeat the worker would be
// declared lost, given the intervals seen so far.
func (d *Detector) Bound(id string) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.by[id]
	if !ok {
		return 0
	}
	mean, std := d.stats(a)
	lo, hi := 0.0, mean+100*std
	for i := 0; i < 60; i++ {
		mid := (lo + hi) / 2
		if phi(mid, mean, std) >= d.cfg.Threshold {
			hi = mid
		} else {
			lo = mid
		}
	}
	return time.Duration(hi * float64(time.Second))
}

// Suspect is a worker whose phi passed the threshold.
type Suspect struct {
	ID     string
	Epoch  uint64
	Phi    float64
	Silent time.Duration // since the last heartbeat
}

// Suspects returns the workers to declare lost now, most silent first.
func (d *Detector) Suspects(now time.Time) []Suspect {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Suspect
	for id, a := range d.by {
		mean, std := d.stats(a)
		elapsed := now.Sub(a.last)
		if p := phi(elapsed.Seconds(), mean, std); p >= d.cfg.Threshold {
			out = append(out, Suspect{ID: id, Epoch: a.epoch, Phi: p, Silent: elapsed})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Silent > out[j].Silent })
	return out
}
