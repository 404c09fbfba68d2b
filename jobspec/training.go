package jobspec

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	meghav1 "github.com/megha-ml/megha/api/megha/v1"
)

// Rules for the sections that only training uses: sync, stop and the
// checkpoint cadence.

func (v *validator) sync(s *meghav1.SyncSpec) {
	if v.serve && s != nil && !isEmpty(s) {
		v.add("sync", "only train jobs sync replicas; remove sync from a serve job")
	}
	if !v.train {
		return
	}
	diloco := false
	switch a := s.GetAlgorithm(); a {
	case meghav1.SyncAlgorithm_SYNC_ALGORITHM_DILOCO:
		diloco = true
	case meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP:
	case meghav1.SyncAlgorithm_SYNC_ALGORITHM_UNSPECIFIED:
		v.add("sync.algorithm", "required; set sync.algorithm to diloco (sync every few steps) or ddp (sync every step)")
	default:
		v.add("sync.algorithm", "must be diloco or ddp, got unknown algorithm %d", int32(a))
	}

	c := s.GetCompression()
	switch c {
	case meghav1.Compression_COMPRESSION_NONE, meghav1.Compression_COMPRESSION_FP16, meghav1.Compression_COMPRESSION_INT8:
	case meghav1.Compression_COMPRESSION_UNSPECIFIED:
		v.add("sync.compression", "required; set sync.compression to none, fp16 or int8")
	default:
		v.add("sync.compression", "must be none, fp16 or int8, got unknown compression %d", int32(c))
	}
	if s.GetErrorFeedback() && c != meghav1.Compression_COMPRESSION_FP16 && c != meghav1.Compression_COMPRESSION_INT8 {
		v.add("sync.error_feedback", "corrects the error of lossy compression, and there is none; set sync.compression to fp16 or int8, or remove error_feedback")
	}

	steps, lr, mom := s.GetInnerSteps(), s.GetOuterLr(), s.GetOuterMomentum()
	if s.GetAlgorithm() == meghav1.SyncAlgorithm_SYNC_ALGORITHM_DDP {
		if steps > 1 {
			v.add("sync.inner_steps", "ddp synchronizes gradients after every step, so inner_steps must be 0 or 1, got %d; remove it, or use algorithm: diloco to take local steps between syncs", steps)
		}
		if lr != 0 {
			v.add("sync.outer_lr", "applies only to diloco, got %s with ddp; remove it", fmtFloat(lr))
		}
		if mom != 0 {
			v.add("sync.outer_momentum", "applies only to diloco, got %s with ddp; remove it", fmtFloat(mom))
		}
		return
	}
	if !diloco {
		return
	}
	if steps < 1 || steps > maxInnerSteps {
		v.add("sync.inner_steps", "must be between 1 and %d, got %d; it is the number of local steps between outer syncs (50 is a good start)", maxInnerSteps, steps)
	}
	if !finite(lr) || lr <= 0 || lr > maxOuterLR {
		v.add("sync.outer_lr", "must be greater than 0 and at most %d, got %s; 0.7 is the usual value", maxOuterLR, fmtFloat(lr))
	}
	if !finite(mom) || mom < 0 || mom >= 1 {
		v.add("sync.outer_momentum", "must be at least 0 and less than 1, got %s; 0.9 is the usual value", fmtFloat(mom))
	}
}

// stop checks the stop conditions. A train job of a built-in model needs
// one; a user's command decides for itself when it is done (its exit), so
// for it they are optional.
func (v *validator) stop(s *meghav1.StopCondition, builtin bool) {
	if v.serve && s != nil && !isEmpty(s) {
		v.add("stop", "a serve job runs until it is cancelled; remove stop")
	}
	if !v.train {
		return
	}
	loss := s.GetTargetLoss()
	switch {
	case !finite(loss):
		v.add("stop.target_loss", "must be a finite number, got %s; it is the training loss at which to stop, such as 2.5", fmtFloat(loss))
	case loss < 0:
		v.add("stop.target_loss", "must be greater than 0, got %s; it is the training loss at which to stop, such as 2.5", fmtFloat(loss))
	case builtin && s.GetRounds() == 0 && s.GetTokens() == 0 && loss == 0:
		v.add("stop", "a train job of a built-in model needs at least one stop condition; set stop.rounds, stop.tokens or stop.target_loss")
	}
}

func (v *validator) checkpoint(c *meghav1.CheckpointSpec) {
	if store := c.GetStore(); store != "" {
		if msg := checkStoreURI(store); msg != "" {
			v.add("checkpoint.store", "%s", msg)
		}
	}
	if len(c.GetMirrors()) > maxMirrors {
		v.add("checkpoint.mirrors", "lists %d stores; at most %d are allowed", len(c.GetMirrors()), maxMirrors)
	}
	for i, m := range c.GetMirrors() {
		field := fmt.Sprintf("checkpoint.mirrors[%d]", i)
		switch {
		case m == "":
			v.add(field, "is empty; write a store URL like s3://bucket/prefix")
		case c.GetStore() == "":
			v.add(field, "needs checkpoint.store: mirrors copy the main store, so name it too")
		case m == c.GetStore() || slices.Contains(c.GetMirrors()[:i], m):
			v.add(field, "%s is already listed; remove one", quote(m))
		default:
			if msg := checkStoreURI(m); msg != "" {
				v.add(field, "%s", msg)
			}
		}
	}
	if v.train && c.GetEveryRounds() == 0 {
		v.add("checkpoint.every_rounds", "must be at least 1, got 0; a checkpoint is written every this many outer rounds")
	}
	keep := c.GetKeep()
	switch {
	case v.train && keep == 0:
		v.add("checkpoint.keep", "must be at least 1, got 0; it is how many recent checkpoints to keep")
	case keep > maxKeep:
		v.add("checkpoint.keep", "must be at most %d, got %d; it is how many recent checkpoints to keep", maxKeep, keep)
	}
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// maxMirrors bounds checkpoint.mirrors.
const maxMirrors = 4

// checkStoreURI checks a checkpoint store URL's shape: file or s3, and for
// s3 only the query parameters the store reads, and no credentials.
func checkStoreURI(uri string) string {
	if msg := checkURI(uri, []string{"file", "s3"}); msg != "" {
		return msg
	}
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Sprintf("%s is not a valid URI", quote(uri))
	}
	if u.User != nil {
		return "must not carry credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or MINIO_ROOT_USER and MINIO_ROOT_PASSWORD) where the workers run"
	}
	if strings.EqualFold(u.Scheme, "s3") {
		for k := range u.Query() {
			if k != "endpoint" && k != "secure" && k != "region" {
				return fmt.Sprintf("has an unknown parameter %s; an s3 store takes endpoint=HOST:PORT, secure=true|false and region=NAME", quote(k))
			}
		}
	}
	return ""
}
