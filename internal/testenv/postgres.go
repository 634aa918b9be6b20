package testenv

// A throwaway PostgreSQL cluster, started once per test binary. Use it
// from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }
//
// and call [Postgres] in a test for a fresh, empty database.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Run runs the tests, then stops whatever they started.
func Run(m *testing.M) int {
	code := m.Run()
	stopPostgres()
	return code
}

// pgCluster is the test binary's PostgreSQL.
type pgCluster struct {
	once sync.Once
	dir  string
	bin  string
	port int
	err  error
	skip string // why the tests cannot have one, when that is no failure
	n    atomic.Int64
	uid  *syscall.Credential
}

var pg pgCluster

// Postgres returns the URL of a new, empty database on the test binary's
// own PostgreSQL cluster, started on first use. It skips the test when
// PostgreSQL is not installed and the tests do not run as root (root runs
// `make deps`, which installs it: there its absence is a failure).
func Postgres(t testing.TB) string {
	t.Helper()
	pg.once.Do(startPostgres)
	if pg.skip != "" {
		t.Skip(pg.skip)
	}
	if pg.err != nil {
		t.Fatalf("testenv: PostgreSQL: %v", pg.err)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), pg.n.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.url("postgres"))
	if err != nil {
		t.Fatalf("testenv: PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	return pg.url(name)
}

// PostgresStop stops the cluster's server without removing it, so that a
// test can see how clients take a server that went away; PostgresStart
// brings it back.
func PostgresStop(t testing.TB) {
	t.Helper()
	if err := pgCtl("stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
}

// PostgresStart starts the server again after [PostgresStop].
func PostgresStart(t testing.TB) {
	t.Helper()
	if err := pgStart(); err != nil {
		t.Fatal(err)
	}
}

func (p *pgCluster) url(db string) string {
	return fmt.Sprintf("postgresql://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// findBin returns the newest /usr/lib/postgresql/*/bin holding initdb.
func findBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return vb - va
	})
	if len(dirs) > 0 {
		return filepath.Dir(dirs[0])
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

func startPostgres() {
	root := os.Geteuid() == 0
	pg.bin = findBin()
	if pg.bin == "" {
		if root {
			pg.err = errors.New("initdb not found under /usr/lib/postgresql/*/bin: install Debian's postgresql (make deps does)")
		} else {
			pg.skip = "PostgreSQL is not installed (initdb not found) and the tests do not run as root to install it"
		}
		return
	}
	var err error
	if pg.dir, err = os.MkdirTemp("", "gilmsg-pg-"); err != nil {
		pg.err = err
		return
	}
	if root {
		// initdb refuses to run as root: the cluster belongs to nobody.
		pg.uid = &syscall.Credential{Uid: 65534, Gid: 65534}
		if err := os.Chown(pg.dir, 65534, 65534); err != nil {
			pg.err = err
			return
		}
		// The temp dir's parents must let nobody in.
		os.Chmod(pg.dir, 0o700)
	}
	out, err := pgCmd(filepath.Join(pg.bin, "initdb"), "-D", filepath.Join(pg.dir, "data"), "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C").CombinedOutput()
	if err != nil {
		pg.err = fmt.Errorf("initdb: %v: %s", err, out)
		return
	}
	if pg.port, err = freePort(); err != nil {
		pg.err = err
		return
	}
	pg.err = pgStart()
}

func pgStart() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50", pg.port, pg.dir)
	if err := pgCtl("start", "-w", "-t", "60", "-o", opts, "-l", filepath.Join(pg.dir, "log")); err != nil {
		log, _ := os.ReadFile(filepath.Join(pg.dir, "log"))
		return fmt.Errorf("%v\n%s", err, log)
	}
	return nil
}

func pgCtl(args ...string) error {
	args = append(args[:1:1], append([]string{"-D", filepath.Join(pg.dir, "data")}, args[1:]...)...)
	out, err := pgCmd(filepath.Join(pg.bin, "pg_ctl"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", args[0], err, out)
	}
	return nil
}

func pgCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = pg.dir
	if pg.uid != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.uid}
	}
	return cmd
}

func stopPostgres() {
	if pg.dir == "" {
		return
	}
	pgCtl("stop", "-m", "immediate")
	os.RemoveAll(pg.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PostgresFreeze stops (SIGSTOP) the cluster's server and every one of
// its backends, as a host that hangs would, and returns the function that
// lets them go on (SIGCONT); the test's cleanup calls it too.
func PostgresFreeze(t testing.TB) (thaw func()) {
	t.Helper()
	pids, err := postgresPIDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGCONT)
			}
		})
	}
	t.Cleanup(thaw)
	return thaw
}

// postgresPIDs lists the postmaster (from postmaster.pid) and its
// children.
func postgresPIDs() ([]int, error) {
	data, err := os.ReadFile(filepath.Join(pg.dir, "data", "postmaster.pid"))
	if err != nil {
		return nil, fmt.Errorf("testenv: is PostgreSQL running? %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	master, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil, fmt.Errorf("testenv: postmaster.pid: %w", err)
	}
	pids := []int{master}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		stat, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ")".
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(master) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}
