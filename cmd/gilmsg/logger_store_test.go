package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	gilmsg "github.com/gilmsg/gilmsg-go"
	"github.com/gilmsg/gilmsg-go/internal/testenv"
	"github.com/gilmsg/gilmsg-go/sqlstore"
)

// Lines that arrive together share one store transaction, and are stored
// (and so numbered) in their order. PostgreSQL's own count of commits
// is the judge: one transaction per line (the logger before batching)
// made 300 commits for 300 lines.
func TestLoggerLinesShareTransactions(t *testing.T) {
	t.Parallel()
	const lines = 300
	var in strings.Builder
	for i := range lines {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	pki := devPKI(t, shellCN, loggerCN)
	for kind, url := range map[string]string{
		"sqlite":     "sqlite:///" + filepath.Join(t.TempDir(), "store.db"),
		"postgresql": testenv.Postgres(t),
	} {
		t.Run(kind, func(t *testing.T) {
			cfg := testConfig(pki)
			cfg.Endpoints = map[string][]string{loggerCN: {freePort(t)}}
			cfg.PersistentStore = url
			res := runCLI(t, strings.NewReader(in.String()),
				"logger", "--config", writeConfig(t, cfg), "--name", loggerCN, "--wait-subscribers", "0")
			if res.code != exitOK {
				t.Fatalf("exit %d; stderr %q", res.code, res.stderr)
			}
			st, err := sqlstore.Open(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := st.Query(t.Context(), &gilmsg.Query{All: true})
			st.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != lines {
				t.Fatalf("%d messages stored, want %d", len(stored), lines)
			}
			for i, m := range stored {
				var env struct {
					Msg struct{ Log string }
				}
				if err := json.Unmarshal(m.Body, &env); err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("line %d", i); env.Msg.Log != want || m.SeqID != stored[0].SeqID+int64(i) {
					t.Fatalf("seq_id %d holds %q, want %q at seq_id %d", m.SeqID, env.Msg.Log, want, stored[0].SeqID+int64(i))
				}
			}
			if kind == "postgresql" {
				// The store's connections, counted as they close, and a
				// few of this test's own queries.
				if n := pgCommits(t, url); n > lines/10 {
					t.Errorf("%d commits for %d lines read at once, want at most %d", n, lines, lines/10)
				}
			}
		})
	}
}

// pgCommits is PostgreSQL's count of committed transactions in url's
// database, once every other connection to it has gone: a backend adds
// its count to the statistics before it leaves pg_stat_activity.
func pgCommits(t *testing.T, url string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var others int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&others)
		if err != nil {
			t.Fatal(err)
		}
		if others == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d connections to the store's database still open", others)
		case <-time.After(20 * time.Millisecond):
		}
	}
	var commits sql.NullInt64
	if err := conn.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&commits); err != nil {
		t.Fatal(err)
	}
	return commits.Int64
}
