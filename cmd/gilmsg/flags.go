package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// configFlag names the persistent flag that every command reads its
// configuration from.
const configFlag = "config"

// addConfigFlag adds --config to root, for it and every command under it.
func addConfigFlag(root *cobra.Command) {
	root.PersistentFlags().String(configFlag, "",
		"fedmsg config `FILE` (.json, .yaml, .yml, .toml) or directory of them, read after /etc/fedmsg.d, ~/.fedmsg.d and ./fedmsg.d and before FEDMSG_* variables")
}

// loadConfig loads the configuration for cmd as fedmsg would, plus --config,
// and checks that it is usable. Commands that need a bus call it first.
func loadConfig(cmd *cobra.Command) (*gilmsg.Config, error) {
	cfg, err := readConfig(cmd)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readConfig is loadConfig without the validation, for commands that show
// a configuration rather than use it.
func readConfig(cmd *cobra.Command) (*gilmsg.Config, error) {
	var files []string
	// cmd.Flag also finds the flag when it is inherited from the root.
	if f := cmd.Flag(configFlag); f != nil && f.Value.String() != "" {
		files = append(files, f.Value.String())
	}
	stderr := cmd.ErrOrStderr()
	src := configSourcesOf(cmd.Context())
	return gilmsg.ConfigLoader{
		Dirs:    src.dirs,
		Files:   files,
		Environ: src.environ,
		Warn: func(w *gilmsg.ConfigError) {
			fmt.Fprintln(stderr, "gilmsg: warning:", withoutLibraryPrefix(w.Error()))
		},
	}.Load()
}

// configSources are where a run reads fedmsg's configuration besides
// --config. main reads the process's; a test gives its own, through the
// run's context, so that it need not change the process's HOME, working
// directory or environment, and may run at the same time as others.
type configSources struct {
	dirs    []string
	environ []string
}

type configSourcesKey struct{}

func withConfigSources(ctx context.Context, src configSources) context.Context {
	return context.WithValue(ctx, configSourcesKey{}, src)
}

func configSourcesOf(ctx context.Context) configSources {
	if src, ok := ctx.Value(configSourcesKey{}).(configSources); ok {
		return src
	}
	return configSources{dirs: gilmsg.ConfigDirs(), environ: os.Environ()}
}
