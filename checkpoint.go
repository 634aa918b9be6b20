package gilmsg

import (
	"fmt"
	"path/filepath"
	"strings"
)

// WithCheckpoint names the subscription's checkpoint: its [WithStatusFile] is
// <status_directory>/<name>, as fedmsg's hub keeps one status file per
// consumer there, so that a service restarted under the same name catches
// up from the configuration alone. Without status_directory a checkpoint
// is not kept (the bus warns once per subscription); an explicit
// [WithStatusFile] wins over it. The name is a file name: no path separators,
// not "." or "..". Default: no checkpoint. gilmsg tail's --name sets it.
func WithCheckpoint(name string) SubscribeOption {
	return func(o *subOptions) { o.replay.checkpoint = name }
}

// checkpointFile turns a WithCheckpoint name into the status file's path.
func (b *Bus) checkpointFile(o *subOptions) error {
	name := o.replay.checkpoint
	if name == "" || o.replay.statusFile != "" {
		return nil
	}
	if name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("%w: checkpoint name %q is not a file name (no / or \\, not . or ..)", ErrInvalidOption, name)
	}
	if b.cfg.StatusDirectory == "" {
		b.log.Warn("gilmsg: status_directory is not set, so this subscription keeps no checkpoint and will not catch up after a restart",
			"checkpoint", name)
		return nil
	}
	o.replay.statusFile = filepath.Join(b.cfg.StatusDirectory, name)
	return nil
}
