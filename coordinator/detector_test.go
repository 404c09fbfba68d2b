package coordinator

import (
	"testing"
	"time"
)

func TestDetectorRegularHeartbeats(t *testing.T) {
	d := NewDetector(DetectorConfig{Threshold: 8, MinStdDev: 100 * time.Millisecond, AcceptablePause: 2 * time.Second})
	t0 := time.Unix(1000, 0)
	d.Track("w", 1, t0)
	now := t0
	for i := 0; i < 50; i++ {
		now = now.Add(time.Second)
		if !d.Heartbeat("w", 1, now) {
			t.Fatal("heartbeat refused")
		}
	}
	bound := d.Bound("w")
	// The floor: never sooner than one interval plus the acceptable pause.
	if bound < 3*time.Second || bound > 5*time.Second {
		t.Fatalf("bound %v, want a little over 3s", bound)
	}
	if s := d.Suspects(now.Add(bound - 200*time.Millisecond)); len(s) != 0 {
		t.Fatalf("suspected before the bound: %v", s)
	}
	s := d.Suspects(now.Add(bound + 10*time.Millisecond))
	if len(s) != 1 || s[0].ID != "w" || s[0].Epoch != 1 {
		t.Fatalf("not suspected after the bound: %v", s)
	}
	if p1, p2 := d.Phi("w", now.Add(time.Second)), d.Phi("w", now.Add(3*time.Second)); !(p2 > p1) {
		t.Fatalf("phi not increasing: %v then %v", p1, p2)
	}
}

func TestDetectorAdaptsToJitter(t *testing.T) {
	cfg := DetectorConfig{Threshold: 8, MinStdDev: 50 * time.Millisecond, AcceptablePause: time.Second}
	steady, jittery := NewDetector(cfg), NewDetector(cfg)
	t0 := time.Unix(1000, 0)
	steady.Track("w", 1, t0)
	jittery.Track("w", 1, t0)
	a, b := t0, t0
	for i := 0; i < 60; i++ {
		a = a.Add(time.Second)
		steady.Heartbeat("w", 1, a)
		gap := 500 * time.Millisecond
		if i%2 == 0 {
			gap = 1500 * time.Millisecond
		}
		b = b.Add(gap)
		jittery.Heartbeat("w", 1, b)
	}
	if js, ss := jittery.Bound("w"), steady.Bound("w"); js <= ss {
		t.Fatalf("jittery bound %v not above steady %v", js, ss)
	}
}

func TestDetectorEpochsAndForget(t *testing.T) {
	d := NewDetector(DetectorConfig{})
	t0 := time.Unix(1000, 0)
	d.Track("w", 2, t0)
	if _, ok := d.LastHeartbeat("w"); ok {
		t.Fatal("tracking start reported as a heartbeat")
	}
	if d.Heartbeat("w", 1, t0.Add(time.Second)) {
		t.Fatal("a stale epoch's heartbeat was accepted")
	}
	if d.Heartbeat("x", 1, t0) {
		t.Fatal("an untracked worker's heartbeat was accepted")
	}
	d.Forget("w")
	if d.Len() != 0 || len(d.Suspects(t0.Add(time.Hour))) != 0 {
		t.Fatal("forgotten worker still tracked")
	}
}
