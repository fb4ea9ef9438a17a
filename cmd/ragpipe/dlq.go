package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ragpipe/ragpipe/worker"
)

var dlqCommand = command{
	name:    "dlq",
	client:  true,
	summary: "List, replay or purge dead letters: events that could not be indexed, with the reason.",
	usage: "dlq list|replay|purge [--user USER] [--collection NAME] [--json]\n\n" +
		"  list    prints time, original subject and reason of each dead letter (--json: one JSON object per line)\n" +
		"  replay  republishes dead letters to their original subject with their version, and removes each\n" +
		"          only once the republish is acknowledged (fix the cause first); a dead letter whose body\n" +
		"          was cut to fit (list --json shows \"truncated\") is not replayed, and the command fails\n" +
		"  purge   deletes dead letters",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		d := &dlqCmd{}
		fs.StringVar(&d.user, "user", "", "only this tenant's dead letters")
		fs.StringVar(&d.collection, "collection", "", "only this collection's dead letters")
		fs.BoolVar(&d.json, "json", false, "list as JSON lines")
		return d.run
	},
}

type dlqCmd struct {
	user, collection string
	json             bool
}

func (d *dlqCmd) run(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 {
		return errors.New("want an action: list, replay or purge; see --help")
	}
	action := args[0]
	if len(args) > 1 {
		return fmt.Errorf("unexpected arguments %q", args[1:])
	}
	nc, js, err := connectJetStream(ctx, env.cfg.NATS, "ragpipe-dlq", env.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	dl := worker.NewDeadLetters(js, env.cfg.SubjectPrefix)
	filter := dl.Filter(d.user, d.collection)
	switch action {
	case "list":
		return d.list(ctx, env, dl, filter)
	case "replay":
		r, err := dl.Replay(ctx, filter)
		fmt.Fprintf(env.stdout, "replayed %d dead letters\n", r.Replayed)
		for _, l := range r.Truncated {
			fmt.Fprintf(env.stdout, "not replayed: dead letter %d (%s) holds only %d of the event's %d bytes\n",
				l.Sequence, l.Subject, len(l.Body), l.Truncated)
		}
		if err == nil && len(r.Truncated) > 0 {
			err = fmt.Errorf("%d dead letters were cut to fit and cannot be replayed; republish those events from their source, then purge them", len(r.Truncated))
		}
		return err
	case "purge":
		n, err := dl.Purge(ctx, filter)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "purged %d dead letters\n", n)
		return nil
	default:
		return fmt.Errorf("unknown action %q: want list, replay or purge", action)
	}
}

func (d *dlqCmd) list(ctx context.Context, env *environment, dl *worker.DeadLetters, filter string) error {
	if d.json {
		enc := json.NewEncoder(env.stdout)
		return dl.Each(ctx, filter, func(l worker.DeadLetter) error { return enc.Encode(l) })
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSUBJECT\tVERSION\tREASON")
	n := 0
	err := dl.Each(ctx, filter, func(l worker.DeadLetter) error {
		n++
		reason := strings.ReplaceAll(l.Reason, "\n", " ")
		_, err := fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", l.Time.Local().Format(time.DateTime), l.Subject, l.Version, reason)
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(env.stdout, "no dead letters")
		return nil
	}
	return tw.Flush()
}
