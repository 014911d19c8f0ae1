package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/joho/godotenv"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set with -ldflags "-X main.version=…"; otherwise the module
// version or "dev".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// exitError carries an exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var envFile string
	root := &cobra.Command{
		Use:   "node3",
		Short: "node3: a peer-to-peer network for renting out GPUs",
		Long: `node3 runs a node of a GPU marketplace network. Every node is a provider: it
detects its GPUs, takes jobs, runs them and gets paid. A node started with
--coordinator is also a marketplace: it takes job submissions over its REST
API, assigns each job to exactly one provider and records its payout.

Configuration comes from flags, then environment variables (the names are
given in each flag's help, e.g. MARKETPLACE_URL), then a .env file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadEnvFile(envFile, cmd.Flags().Changed("env-file")); err != nil {
				return err
			}
			return applyEnv(cmd)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&envFile, "env-file", ".env", "file of KEY=VALUE lines to read into the environment (existing variables win)")
	root.AddCommand(newRunCmd(), newUpCmd(), newE2ECmd(), newAdminCmd(), newGPUCmd(), newLocalchainCmd(), newIDCmd(), newVersionCmd())
	return root
}

func loadEnvFile(path string, explicit bool) error {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		if explicit {
			return fmt.Errorf("env file: %w", err)
		}
		return nil
	}
	if err := godotenv.Load(path); err != nil {
		return fmt.Errorf("env file %s: %w", path, err)
	}
	return nil
}

// envAnnotation marks a flag with the environment variable that sets it.
const envAnnotation = "node3_env"

// bindEnv ties flag name to environment variable env and says so in its help.
func bindEnv(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("bindEnv: no flag " + name)
	}
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[envAnnotation] = []string{env}
	f.Usage += " [$" + env + "]"
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set.
func applyEnv(cmd *cobra.Command) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		envs := f.Annotations[envAnnotation]
		if len(envs) == 0 || f.Changed {
			return
		}
		v, ok := os.LookupEnv(envs[0])
		if !ok || strings.TrimSpace(v) == "" {
			return
		}
		if err := cmd.Flags().Set(f.Name, strings.TrimSpace(v)); err != nil {
			errs = append(errs, fmt.Errorf("$%s: %w", envs[0], err))
		}
	})
	return errors.Join(errs...)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print node3's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "node3", buildVersion())
			return nil
		},
	}
}
