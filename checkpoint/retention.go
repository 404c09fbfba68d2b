package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Prune applies a retention policy to a job's checkpoints: the newest keep
// checkpoints are kept, and every round divisible by keepEvery (if > 0);
// keep ≤ 0 keeps every checkpoint. It deletes the other manifests, then
// every chunk that no remaining manifest references and that protect (a
// set of chunk SHA-256s) does not name, and returns the rounds it removed,
// oldest first.
//
// Only manifests that parse count towards keep. One that does not is left
// in place for inspection (Verify and List report it), and the chunks only
// it names are not protected. If a manifest cannot be read because the
// store fails, nothing is deleted.
//
// Prune must not run while another process writes checkpoints of the job:
// a chunk uploaded for a manifest not yet written looks unreferenced. The
// Writer prunes its own job after each commit, when it uploads nothing.
func Prune(ctx context.Context, s Store, job string, keep, keepEvery int, protect map[string]bool) (pruned []uint64, err error) {
	pruned, _, err = prune(ctx, s, job, keep, keepEvery, protect)
	return pruned, err
}

// prune is Prune, also returning the hashes of the chunks it deleted.
func prune(ctx context.Context, s Store, job string, keep, keepEvery int, protect map[string]bool) (pruned []uint64, chunks []string, err error) {
	rounds, err := roundsOf(ctx, s, job)
	if err != nil {
		return nil, nil, err
	}
	referenced := map[string]bool{}
	var drop []uint64
	kept := 0
	for _, r := range rounds { // newest first
		m, err := readManifest(ctx, s, job, r)
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("retention of job %s: %w (nothing deleted)", job, err)
		}
		switch {
		case keep <= 0 || kept < keep:
			kept++
		case keepEvery > 0 && r%uint64(keepEvery) == 0:
		default:
			drop = append(drop, r)
			continue
		}
		for _, e := range m.entries() {
			for _, c := range e.Chunks {
				referenced[c.SHA256] = true
			}
		}
	}
	for i := len(drop) - 1; i >= 0; i-- {
		r := drop[i]
		if err := s.Delete(ctx, ManifestKey(job, r)); err != nil {
			// The chunks of a manifest still there must stay: stop here.
			return pruned, nil, fmt.Errorf("retention of job %s: deleting round %d from %s: %w (unreferenced chunks not collected)", job, r, s, err)
		}
		pruned = append(pruned, r)
	}

	prefix := JobPrefix(job) + "chunks/"
	objs, err := s.List(ctx, prefix)
	if err != nil {
		return pruned, nil, fmt.Errorf("retention of job %s: listing chunks in %s: %w", job, s, err)
	}
	for _, o := range objs {
		sha := strings.TrimPrefix(o.Key, prefix)
		if !isHash(sha) || referenced[sha] || protect[sha] {
			continue
		}
		if err := s.Delete(ctx, o.Key); err != nil {
			return pruned, chunks, fmt.Errorf("retention of job %s: deleting chunk %s from %s: %w", job, short(sha), s, err)
		}
		chunks = append(chunks, sha)
	}
	return pruned, chunks, nil
}
