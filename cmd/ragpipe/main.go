// Command ragpipe turns a stream of document events into a searchable,
// multi-tenant vector index. Run `ragpipe help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/config"
)

// command is one subcommand: its flags and what it runs.
type command struct {
	name, summary, usage string
	// client commands run once for a person: they log warnings and errors
	// only, unless RAGPIPE_LOG_LEVEL asks for debug or trace.
	client bool
	// flags registers the command's flags and returns what runs it.
	flags func(fs *flag.FlagSet) func(ctx context.Context, env *environment, args []string) error
}

// environment is what every command is handed: settings, logger, output.
type environment struct {
	cfg    *config.Config
	log    zerolog.Logger
	stdout io.Writer
	stderr io.Writer
}

var commands = []command{devCommand, workerCommand, searcherCommand, publishCommand, queryCommand, migrateCommand, backupCommand, restoreCommand, forgetCommand, reindexCommand, dlqCommand, keysCommand, benchCommand, evalCommand}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "ragpipe: unknown command %q; run 'ragpipe help'\n", args[0])
		return 2
	}
	fs := flag.NewFlagSet("ragpipe "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	runCmd := cmd.flags(fs)
	fs.Usage = func() {} // printed below, to stdout for --help
	if err := fs.Parse(flagsFirst(fs, args[1:])); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(stdout, cmd, fs)
			return 0
		}
		fmt.Fprintf(stderr, "run 'ragpipe %s --help' for usage\n", cmd.name)
		return 2
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(stderr, "ragpipe %s: %s\n", cmd.name, oneLine(err))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger(cfg.LogLevel, stderr).With().Str("cmd", cmd.name).Logger()
	if cmd.client && log.GetLevel() > zerolog.DebugLevel {
		log = log.Level(max(log.GetLevel(), zerolog.WarnLevel))
	}
	env := &environment{cfg: cfg, log: log, stdout: stdout, stderr: stderr}
	if err := runCmd(ctx, env, fs.Args()); err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) { // stopped by SIGINT/SIGTERM, as asked
			fmt.Fprintf(stderr, "ragpipe %s: stopped: %s\n", cmd.name, oneLine(err))
			return 0
		}
		fmt.Fprintf(stderr, "ragpipe %s: %s\n", cmd.name, oneLine(err))
		return 1
	}
	return 0
}

// oneLine joins a (possibly joined) error's lines with "; ".
func oneLine(err error) string {
	return strings.Join(strings.Split(strings.TrimSpace(err.Error()), "\n"), "; ")
}

// newLogger returns a zerolog logger: JSON, or human-readable when w is a terminal.
func newLogger(level string, w io.Writer) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: w}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ragpipe: document events in, tenant-scoped vector search out.")
	fmt.Fprintln(w, "\nUsage: ragpipe <command> [flags]\n\nCommands:")
	for _, c := range commands {
		first, _, _ := strings.Cut(c.summary, ": ")
		first, _, _ = strings.Cut(first, ". ")
		fmt.Fprintf(w, "  %-10s %s\n", c.name, strings.TrimSuffix(first, "."))
	}
	fmt.Fprintln(w, "\nRun 'ragpipe <command> --help' for a command's flags and settings.")
}

func commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: ragpipe %s\n\n%s\n", c.usage, c.summary)
	if hasFlags(fs) {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fmt.Fprintln(w, "\nSettings (environment variables; .env.<APP_ENV> is read if present):")
	for _, s := range config.Settings() {
		def := s.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  %-28s %s (default %s)\n", s.Name, s.Help, def)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// flagsFirst moves the flags found anywhere in args before the other
// arguments, so that `ragpipe dlq list --json` and `ragpipe publish dir
// --user alice` parse like `ragpipe dlq --json list`. A lone "-" (stdin) is
// an argument; "--" ends the flags.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil { // unknown: Parse reports it
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) { // the flag's value
			i++
			flags = append(flags, args[i])
		}
	}
	return append(append(flags, "--"), rest...)
}
