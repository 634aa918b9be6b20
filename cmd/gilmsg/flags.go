package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
)

// configFlag names the persistent flag that every command reads its
// configuration from.
const configFlag = "config"

func init() {
	rootCmd.PersistentFlags().String(configFlag, "",
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
	// cmd.Flag also finds the flag when it is inherited from rootCmd.
	if f := cmd.Flag(configFlag); f != nil && f.Value.String() != "" {
		files = append(files, f.Value.String())
	}
	stderr := cmd.ErrOrStderr()
	return gilmsg.ConfigLoader{
		Dirs:    gilmsg.ConfigDirs(),
		Files:   files,
		Environ: os.Environ(),
		Warn: func(w *gilmsg.ConfigError) {
			fmt.Fprintln(stderr, "gilmsg: warning:", strings.TrimPrefix(w.Error(), "gilmsg: "))
		},
	}.Load()
}
