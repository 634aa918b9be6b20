package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/devpki"
)

// newDevPKICmd builds the command afresh so that tests get their own flags.
func newDevPKICmd() *cobra.Command {
	var (
		hosts     []string
		configOut string
		basePort  int
		keyBits   int
		withGPG   bool
	)
	cmd := &cobra.Command{
		Use:   "dev-pki DIR",
		Short: "Create a throwaway CA, host certificates, a CRL and a matching config",
		Long: `dev-pki creates DIR as a fedmsg ssldir for local testing: a new CA
(ca.crt, ca.key), an empty CRL (crl.pem), and <host>.crt/<host>.key for each
host, whose CN is the host name. It writes a config (fedmsg keys, as JSON)
that signs and validates with them, giving each host an endpoint on
127.0.0.1 from --base-port up, and prints that config's path. Each
host is an endpoint name and a certificate CN at once (a reliable publish
names CNs). The config also maps certname shell.<this host> to the first
host, so a program run without a name signs as that host.

With --gpg it also makes an OpenPGP key per host for the gpg backend:
DIR/gpg/keys.asc, and the GnuPG home DIR/gpg/gnupg when gpg is installed.
The config then accepts gpg messages and names their signers (gpg_home,
gpg_keys); to sign with gpg, set crypto_backend to "gpg" and
gpg_signing_key to the host's entry in gpg_keys.

It refuses to touch a DIR that already holds ca.crt or ca.key. The keys are
unencrypted: never use them outside a test bus.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &exitError{code: exitUsage, err: fmt.Errorf("dev-pki takes one directory, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if basePort < 1 || basePort+max(len(hosts), 1)-1 > 65535 {
				return &exitError{code: exitUsage, err: fmt.Errorf("--base-port %d leaves no room for %d hosts below 65536", basePort, max(len(hosts), 1))}
			}
			p, err := devpki.New(dir, devpki.Options{Hosts: hosts, KeyBits: keyBits, GPG: withGPG})
			if errors.Is(err, gilmsg.ErrConfig) {
				return &exitError{code: exitUsage, err: err}
			}
			if err != nil {
				return err
			}
			endpoints := make(map[string][]string, len(p.Hosts))
			for i, h := range p.Hosts {
				endpoints[h] = []string{fmt.Sprintf("tcp://127.0.0.1:%d", basePort+i)}
			}
			if configOut == "" {
				configOut = filepath.Join(p.Dir, "fedmsg.json")
			}
			if err := p.WriteConfig(configOut, endpoints); err != nil {
				return err
			}
			if abs, err := filepath.Abs(configOut); err == nil {
				configOut = abs
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, configOut)
			fmt.Fprintf(out, "Load this config and set name to one of %s to publish signed as that host on its endpoint.\n",
				strings.Join(p.Hosts, ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&hosts, "hosts", nil, "certnames (and CNs) to issue, comma-separated (default shell-localhost)")
	f.StringVar(&configOut, "config-out", "", "where to write the config (default DIR/fedmsg.json)")
	f.IntVar(&basePort, "base-port", 3000, "TCP port of the first host's endpoint; the others follow")
	f.IntVar(&keyBits, "key-bits", 2048, "RSA key size")
	f.BoolVar(&withGPG, "gpg", false, "also make an OpenPGP key per host for the gpg backend")
	return cmd
}
