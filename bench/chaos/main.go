// Command chaos runs cronsync under injected faults and checks, after each
// trial, what the runs promise, from the API server's state and its audit
// log rather than from cronsync's output.
//
//	go run ./bench/chaos -trials 100 -seed 1   # trials 1..100 of seed 1
//	go run ./bench/chaos -seed 1 -trial 37     # trial 37 of seed 1 alone
//	go run ./bench/chaos -seed 1 -from 50 -trials 100  # trials 50..100
//
// A trial changes the commit (objects added, changed, removed, in plain
// files, a kustomization, a Helm chart, a SOPS-encrypted Secret, a CRD and
// its resources, a depends-on chain), runs cronsync once with one fault
// at a moment drawn from the seed, runs it again without faults, and once
// more; then it checks the invariants (see check.go):
//
//  1. the faulted run exits 1 (0 only if the fault did not land, or was
//     absorbed and the run did all of it);
//  2. no run wrote or deleted anything outside the ApplySet;
//  3. no object of either commit was deleted but members the new commit
//     removed, and only with --prune;
//  4. a dry run wrote nothing;
//  5. the next run exits 0 and the cluster then holds the commit (a
//     server dry run per object changes nothing), and the run after it is
//     decided from the LISTs;
//  6. the parent lists every live member's group-kind and namespace;
//  7. the Lease is released, or expires within --lease-duration;
//  8. no two runs wrote at the same time.
//
// Trials follow each other on one cluster, each starting from the commit
// the one before converged to. A replay (-trial K) starts a cluster, brings
// it to the state trial K starts from, and runs trial K alone.
package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

func main() {
	trials := flag.Int("trials", 20, "how many trials to run, from trial 1")
	seed := flag.Uint64("seed", 1, "the seed every commit and fault is drawn from")
	only := flag.Int("trial", 0, "replay this trial of the seed alone")
	from := flag.Int("from", 1, "start at this trial (the cluster brought to its state first), to go on with a run that stopped")
	verbose := flag.Bool("v", false, "print every run's output")
	flag.StringVar(&prebuilt, "binary", "", "run this cronsync binary rather than one built from this tree (to see whether an older build shows a violation)")
	kind := flag.String("kind", "", "draw every fault of this kind (one of "+strings.Join(faultKinds, ", ")+"), its moment as drawn")
	flag.Parse()
	if *kind != "" && !slices.Contains(faultKinds, *kind) {
		fmt.Fprintf(os.Stderr, "chaos: -kind %q is none of %s\n", *kind, strings.Join(faultKinds, ", "))
		os.Exit(2)
	}
	forceKind = *kind
	sum, err := campaign(*seed, *from, *trials, *only, *verbose, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if len(sum.violations) > 0 {
		os.Exit(1)
	}
}

// summary of a campaign of trials.
type campaignSummary struct {
	trials     []*trialResult
	violations []string
	wall       time.Duration
}

// campaign runs trials from..n of seed (or trial only alone) and prints
// each and a summary to w.
func campaign(seed uint64, from, n, only int, verbose bool, w io.Writer) (*campaignSummary, error) {
	start := time.Now()
	fmt.Fprintln(w, "chaos: building cronsync, starting an audited kube-apiserver and etcd ...")
	l, err := newLab(w)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	l.verbose = verbose
	sum := &campaignSummary{}
	var plans func(yield func(*plan) bool)
	if only > 0 {
		plans = func(yield func(*plan) bool) { yield(planTrial(seed, only)) }
	} else {
		c := newChain(seed)
		plans = func(yield func(*plan) bool) {
			for k := 1; k <= n; k++ {
				p := c.next()
				if k < from {
					continue
				}
				if !yield(p) {
					return
				}
			}
		}
	}
	fresh := true
	for p := range plans {
		if fresh {
			t := time.Now()
			if err := l.setup(p); err != nil {
				return nil, err
			}
			fmt.Fprintf(w, "chaos: cluster at the commit of trial %d's start in %s\n", p.Trial, time.Since(t).Round(time.Millisecond))
		}
		res, err := l.trial(p)
		if err != nil {
			return nil, fmt.Errorf("trial %d (seed %d): %w", p.Trial, seed, err)
		}
		sum.trials = append(sum.trials, res)
		mode := ""
		if p.DryRun {
			mode = ", dry run"
		}
		if !p.Prune {
			mode += ", no --prune"
		}
		landed := "did not land"
		if res.Landed {
			landed = "landed"
		}
		fmt.Fprintf(w, "trial %d: %s%s: %s; the run sent %d API requests and ended %s; %s\n",
			p.Trial, p.Fault, mode, landed, res.Sent, res.Exit, res.Took.Round(100*time.Millisecond))
		for _, v := range res.Violations {
			line := fmt.Sprintf("VIOLATION seed %d trial %d (%s): %s", seed, p.Trial, p.Fault, v)
			fmt.Fprintln(w, "  "+line)
			sum.violations = append(sum.violations, line)
		}
		// A trial that broke the cluster's state is followed by one that
		// starts from a fresh setup.
		fresh = len(res.Violations) > 0
	}
	sum.wall = time.Since(start)
	sum.print(seed, w)
	return sum, nil
}

func (s *campaignSummary) print(seed uint64, w io.Writer) {
	first := 0
	if len(s.trials) > 0 {
		first = s.trials[0].Trial
	}
	fmt.Fprintf(w, "\nchaos: %d trials of seed %d (from trial %d) in %s\n", len(s.trials), seed, first, s.wall.Round(time.Second))
	type tally struct{ n, landed int }
	kinds := map[string]*tally{}
	exits := map[string]int{}
	// Where in the run the fault landed, by tenths of the requests it sent.
	var moments [11]int
	for _, t := range s.trials {
		k := kinds[t.Fault.Kind]
		if k == nil {
			k = &tally{}
			kinds[t.Fault.Kind] = k
		}
		k.n++
		if t.Landed {
			k.landed++
			if !strings.HasPrefix(t.Fault.Kind, "git-") && t.Fault.At == 0 && t.Sent > 0 {
				moments[min(10, t.Fault.Nth*10/t.Sent)]++
			}
		}
		exits[t.Exit]++
	}
	fmt.Fprintln(w, "faults by kind (landed/drawn):")
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		fmt.Fprintf(w, "  %-18s %3d/%-3d\n", k, kinds[k].landed, kinds[k].n)
	}
	fmt.Fprint(w, "moments (API faults that landed, by the tenth of the run's requests they landed in):")
	for i, n := range moments {
		if i == 10 {
			fmt.Fprintf(w, " last+:%d", n)
		} else {
			fmt.Fprintf(w, " %d0%%:%d", i, n)
		}
	}
	fmt.Fprintln(w)
	var at [4]int
	for _, t := range s.trials {
		if t.Landed && t.Fault.At > 0 {
			at[min(3, int(t.Fault.At/time.Second))]++
		}
	}
	fmt.Fprintf(w, "moments (process faults that landed at a time after the run started): 0-1s:%d 1-2s:%d 2-3s:%d\n", at[0], at[1], at[2])
	var es []string
	for e, n := range exits {
		es = append(es, fmt.Sprintf("%s:%d", e, n))
	}
	sort.Strings(es)
	fmt.Fprintf(w, "faulted runs ended: %s\n", strings.Join(es, " "))
	fmt.Fprintf(w, "violations: %d\n", len(s.violations))
	for _, v := range s.violations {
		fmt.Fprintln(w, "  "+v)
	}
}
