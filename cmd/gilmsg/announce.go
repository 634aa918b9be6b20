package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/announce"
)

func newAnnounceCmd() *cobra.Command {
	var link string
	cmd := &cobra.Command{
		Use:   "announce [--link URL] < TEXT",
		Short: "Publish stdin as an announcement (fedmsg-announce)",
		Long: `announce reads its text from stdin (each line trimmed, joined with
newlines) and publishes {"message": text, "link": URL or null} on the
topic <topic_prefix>.<environment>.announce.announcement through
relay_inbound, as an active publisher signing (with sign_messages) as
certnames["announce.<short hostname>"]. The routing policy of the bus is
what restricts who may announce.

It waits for the relay (up to the config's timeout) and fails if there is
none; on success it prints the topic and msg_id.`,
		Example: `  echo "Fedora Core 4 has been declared GOLD" | gilmsg announce --link https://fedoraproject.org/news`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withExitCode(runAnnounce(cmd, link))
		},
	}
	cmd.Flags().StringVar(&link, "link", "", "a `URL` to go along with the announcement")
	return cmd
}

func runAnnounce(cmd *cobra.Command, link string) error {
	var text []string
	sc := bufio.NewScanner(cmd.InOrStdin())
	sc.Buffer(nil, gilmsg.DefaultMaxMessageSize)
	for sc.Scan() {
		text = append(text, strings.TrimSpace(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	return publishOnce(cmd, announce.Config(cfg), "announcement", func(ctx contextT, bus *gilmsg.Bus) (*gilmsg.Receipt, error) {
		return announce.Publish(ctx, bus, strings.Join(text, "\n"), link)
	})
}
