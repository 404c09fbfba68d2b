// Package shard partitions a training job's data among its workers and keeps
// count of what each has consumed, so that every sample is trained on exactly
// once per epoch however workers join, leave, slow down or are replaced.
//
// It is pure: plans are values in and values out, with no I/O, goroutines,
// clocks or randomness, and only the standard library. The coordinator's
// leader calls these functions and commits their results through Raft, so
// identical inputs always give identical outputs (weights are summed and
// divided exactly, with math/big, never in floating point).
//
// # Model
//
// One epoch of a job's dataset is the sample index range [0, Total). A [Plan]
// gives each worker an [Assignment]: an ordered list of half-open [Range]s
// and a cursor, Consumed, counting how many samples of those ranges (taken in
// list order) the worker has already consumed. The ranges of all assignments
// are disjoint and together cover [0, Total) exactly ([Plan.Check]), so each
// sample belongs to one worker and is either behind that worker's cursor
// (consumed) or ahead of it (remaining).
//
//	worker a: [0,40) [90,100)  Consumed 45  consumed [0,40) [90,95), remaining [95,100)
//	worker b: [40,90)           Consumed 10  consumed [40,50),        remaining [50,90)
//
// # Exactly once
//
// A worker reads its samples from [Plan.Remaining] in order. The cursor moves
// only through [Plan.Advance], which the coordinator applies when the trainer
// reports a committed round: a round that aborts and is retried has moved
// nothing, so the retry reads the same samples again and they are counted
// once. Advance hands out the samples it moves the cursor over, and a sample
// behind a cursor is never moved or handed out again, so over an epoch each
// sample is handed out exactly once.
//
// # Minimal movement
//
// [Rebalance] redistributes only the remaining samples, so that each worker's
// remaining share is proportional to its weight (its measured throughput)
// and the workers finish together. It moves as little as it can: a staying
// worker keeps a prefix of its own remaining ranges, in the same order, and
// never loses consumed samples; only the excess of over-provisioned workers,
// cut from the end of their remaining ranges, and everything departed workers
// had not consumed move, to under-provisioned and new workers, who append
// what they receive after what they kept. The number of moved samples is the
// least any proportional assignment (each share the floor or ceiling of its
// exact quota) can achieve.
//
// Because a kept prefix keeps its order, the next samples of a staying worker
// are the same before and after a Rebalance unless its share shrinks below
// them. The coordinator therefore rebalances between rounds (after a commit
// or an abort), when no worker holds samples it has read but not committed.
//
// # Size
//
// [Split] gives each worker one contiguous range, and Advance changes
// cursors only. Each Rebalance adds at most one range per worker it involves
// (old or new): a donor's tail is cut inside at most one range, a departed
// worker's cursor splits at most one range, and each receiver's share of the
// moved samples is cut from the pool at most once. Touching ranges are
// joined and a worker's consumed ranges are sorted and merged, so within an
// epoch a plan holds at most one range per worker of the Split plus, for
// each Rebalance, one per worker involved; [NextEpoch] starts again from one
// range per worker.
package shard
