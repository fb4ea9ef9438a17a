package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/ragpipe/ragpipe/keyring"
)

var keysCommand = command{
	name:   "keys",
	client: true,
	summary: "Manage the keys of encryption at rest: print a new master key, or re-wrap every tenant's data key " +
		"under the first key of RAGPIPE_ENCRYPTION_KEY_FILE.",
	usage: "keys new|rewrap\n\n" +
		"  new     prints a fresh master key line (standard base64 of 32 random bytes) to add to the master key file;\n" +
		"          the first line of that file wraps new tenant keys, the others only unwrap\n" +
		"  rewrap  re-wraps every tenant's data key (bucket " + keyring.Bucket + ") under the first master key, while\n" +
		"          workers run; afterwards the other keys of the file may be removed. Stored texts are not touched.\n" +
		"          Needs RAGPIPE_ENCRYPTION_KEY_FILE; rerun it after an interruption",
	flags: func(*flag.FlagSet) func(context.Context, *environment, []string) error {
		return runKeys
	},
}

func runKeys(ctx context.Context, env *environment, args []string) error {
	if len(args) != 1 {
		return errors.New("want one action: new or rewrap; see --help")
	}
	switch args[0] {
	case "new":
		_, err := fmt.Fprintln(env.stdout, keyring.NewMasterKey())
		return err
	case "rewrap":
		return rewrapKeys(ctx, env)
	}
	return fmt.Errorf("unknown action %q: want new or rewrap; see --help", args[0])
}

// rewrapKeys runs keyring.Rewrap with a progress bar on stderr and prints
// the counts.
func rewrapKeys(ctx context.Context, env *environment) error {
	cfg := env.cfg
	if cfg.MasterKeys == nil {
		return errors.New("RAGPIPE_ENCRYPTION_KEY_FILE is not set: it names the master key file whose first key wraps the data keys")
	}
	nc, js, err := connectJetStream(ctx, cfg.NATS, "ragpipe-keys", env.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	keys, err := keyring.Open(ctx, js, cfg.MasterKeys, keyring.Config{Replicas: cfg.Worker.StreamReplicas})
	if err != nil {
		return err
	}
	defer keys.Close()
	var bar *progressbar.ProgressBar
	counts, err := keys.Rewrap(ctx, func(done, total int) {
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(env.stderr),
				progressbar.OptionSetDescription("rewrap"), progressbar.OptionShowCount(),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		}
		_ = bar.Set(done)
	})
	if bar != nil {
		_ = bar.Finish()
	}
	fmt.Fprintf(env.stdout, "%d tenant keys: %d re-wrapped, %d already under master key %s, %d forgotten",
		counts.Total, counts.Rewrapped, counts.Current, cfg.MasterKeys.Primary(), counts.Forgotten)
	if counts.Gone > 0 {
		fmt.Fprintf(env.stdout, ", %d removed meanwhile", counts.Gone)
	}
	fmt.Fprintln(env.stdout)
	return err
}
