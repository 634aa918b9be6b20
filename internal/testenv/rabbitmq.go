// Package testenv starts the real services that tests need (a RabbitMQ
// broker, ...) as throwaway processes owned by the test binary.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RabbitMQServer is Debian's broker start script, run directly: the
// /usr/sbin wrapper switches to the rabbitmq user, who cannot write our
// temporary folder.
const RabbitMQServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// rabbitStartTimeout is generous: a node starts in about 12 s on an idle
// machine, and the test machine is shared.
const rabbitStartTimeout = 3 * time.Minute

// RabbitMQ is a throwaway broker node: its own Erlang port mapper, node
// name, ports and data folder, so it neither needs nor disturbs a system
// broker. Its data survives [RabbitMQ.Restart].
type RabbitMQ struct {
	URL  string // amqp://guest:guest@127.0.0.1:PORT/
	Port int

	dir  string
	env  []string
	log  *os.File
	epmd *exec.Cmd
	node *exec.Cmd
	done chan struct{} // closed when node has exited
}

// StartRabbitMQ starts a node and waits until it accepts AMQP
// connections. It installs Debian's rabbitmq-server first when it is
// absent and we are root.
func StartRabbitMQ() (_ *RabbitMQ, err error) {
	if err := ensureRabbitMQ(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gilmsg-rabbitmq-")
	if err != nil {
		return nil, err
	}
	r := &RabbitMQ{dir: dir}
	defer func() {
		if err != nil {
			r.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	r.Port = ports[0]
	r.URL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.Port)
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
		return nil, err
	}
	r.env = append(os.Environ(),
		"HOME="+dir, // the Erlang cookie goes here
		"ERL_EPMD_PORT="+strconv.Itoa(ports[2]),
		fmt.Sprintf("RABBITMQ_NODENAME=gilmsgtest%d@localhost", os.Getpid()),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(ports[0]),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[1]),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_LOGS=-",
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"), // absent: defaults
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbitmq.pid"),
	)
	if r.log, err = os.Create(filepath.Join(dir, "rabbitmq.log")); err != nil {
		return nil, err
	}
	// Our own port mapper, on its own port, so that nothing of the node
	// outlives the test binary.
	r.epmd = exec.Command("epmd", "-port", strconv.Itoa(ports[2]))
	r.epmd.Stdout, r.epmd.Stderr = r.log, r.log
	r.epmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.epmd.Start(); err != nil {
		return nil, fmt.Errorf("starting epmd: %w", err)
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RabbitMQ) start() error {
	r.node = exec.Command(RabbitMQServer)
	r.node.Dir = r.dir
	r.node.Env = r.env
	r.node.Stdout, r.node.Stderr = r.log, r.log
	r.node.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.node.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", RabbitMQServer, err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(r.node, r.done)

	deadline := time.Now().Add(rabbitStartTimeout)
	for !amqpReady(r.Port) {
		select {
		case <-r.done:
			return fmt.Errorf("rabbitmq-server exited while starting; its log:\n%s", r.LogTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rabbitmq-server not accepting AMQP after %v; its log:\n%s", rabbitStartTimeout, r.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// amqpReady sends the AMQP 0-9-1 protocol header and reports whether a
// method frame (the broker's connection.start) comes back.
func amqpReady(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return false
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return err == nil && b[0] == 1
}

// StopNode stops the broker node gracefully (it writes its queues out) and
// waits for it to exit; the data folder and the port mapper stay, for
// [RabbitMQ.StartNode].
func (r *RabbitMQ) StopNode() error {
	if r.node == nil || r.node.Process == nil {
		return nil
	}
	// The start script turns SIGTERM into an orderly stop of the node.
	r.node.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(rabbitStartTimeout):
		syscall.Kill(-r.node.Process.Pid, syscall.SIGKILL)
		<-r.done
		r.node = nil
		return errors.New("rabbitmq-server did not stop on SIGTERM; killed")
	}
	// Anything of the node's process group still there (none expected).
	syscall.Kill(-r.node.Process.Pid, syscall.SIGKILL)
	r.node = nil
	return nil
}

// KillNode kills the node outright (SIGKILL to its process group), as a
// crash would; [RabbitMQ.StartNode] starts it again on the same data.
func (r *RabbitMQ) KillNode() {
	if r.node == nil || r.node.Process == nil {
		return
	}
	syscall.Kill(-r.node.Process.Pid, syscall.SIGKILL)
	<-r.done
	r.node = nil
}

// StartNode starts the node again after [RabbitMQ.StopNode], on the same
// port with the same data.
func (r *RabbitMQ) StartNode() error {
	if r.node != nil {
		return errors.New("rabbitmq: node already running")
	}
	return r.start()
}

// Restart stops the node gracefully and starts it again.
func (r *RabbitMQ) Restart() error {
	if err := r.StopNode(); err != nil {
		return err
	}
	return r.StartNode()
}

// Stop stops the node and the port mapper and removes the data folder.
func (r *RabbitMQ) Stop() error {
	err := r.StopNode()
	if r.epmd != nil && r.epmd.Process != nil {
		r.epmd.Process.Kill()
		r.epmd.Wait()
		r.epmd = nil
	}
	if r.log != nil {
		r.log.Close()
	}
	return errors.Join(err, os.RemoveAll(r.dir))
}

// LogTail returns the end of the node's output, for failure messages.
func (r *RabbitMQ) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "rabbitmq.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// ensureRabbitMQ installs Debian's rabbitmq-server when it is absent and
// we are root (as make deps does).
func ensureRabbitMQ() error {
	return ensureInstalled(RabbitMQServer, os.Geteuid() == 0, func() error {
		install := func() error {
			cmd := exec.Command("apt-get", "install", "-y", "rabbitmq-server")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("apt-get install rabbitmq-server: %w: %s", err, lastLines(out, 5))
			}
			return nil
		}
		if err := install(); err != nil {
			exec.Command("apt-get", "update").Run()
			return install()
		}
		return nil
	})
}

// ensureInstalled makes sure program exists, running install when it does
// not and we are root. Only where no broker can be had, without root, is
// the answer a [*SkipError]: root runs make deps, which installs the
// broker, so there a missing one is a failure, as for PostgreSQL.
func ensureInstalled(program string, root bool, install func() error) error {
	if _, err := os.Stat(program); err == nil {
		return nil
	}
	if !root {
		return &SkipError{Reason: program + " is not installed and we are not root to install it (apt-get install rabbitmq-server)"}
	}
	if err := install(); err != nil {
		return fmt.Errorf("%s is missing and could not be installed: %w", program, err)
	}
	if _, err := os.Stat(program); err != nil {
		return fmt.Errorf("rabbitmq-server installed but %w", err)
	}
	return nil
}

// SkipError says why a service cannot be had here; tests skip on it.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return e.Reason }

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePorts asks the kernel for n distinct free ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// sharedRabbit is the one broker of a test binary, started on first use.
var sharedRabbit struct {
	once sync.Once
	r    *RabbitMQ
	err  error
}

// SharedRabbitMQ returns the test binary's broker, starting it on first
// use (about 15 s), or skips t when there can be none here (not root, no
// broker installed; as root a missing broker fails t). The binary's
// TestMain must call [StopSharedRabbitMQ].
func SharedRabbitMQ(t testing.TB) *RabbitMQ {
	t.Helper()
	sharedRabbit.once.Do(func() {
		start := time.Now()
		sharedRabbit.r, sharedRabbit.err = StartRabbitMQ()
		if sharedRabbit.err == nil {
			fmt.Fprintf(os.Stderr, "testenv: rabbitmq started in %v at %s\n", time.Since(start).Round(time.Millisecond), sharedRabbit.r.URL)
		}
	})
	var skip *SkipError
	if errors.As(sharedRabbit.err, &skip) {
		t.Skip("no RabbitMQ: " + skip.Reason)
	}
	if sharedRabbit.err != nil {
		t.Fatalf("RabbitMQ: %v", sharedRabbit.err)
	}
	return sharedRabbit.r
}

// StopSharedRabbitMQ stops the broker [SharedRabbitMQ] started, if any.
func StopSharedRabbitMQ() {
	if sharedRabbit.r != nil {
		if err := sharedRabbit.r.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stopping rabbitmq:", err)
		}
	}
}
