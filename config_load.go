package gilmsg

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// How viper is used here, and why not more.
//
// viper's Viper type lower-cases every key, nested ones included, and splits
// keys on "." into nested maps. fedmsg needs both preserved: names in
// endpoints and certnames ("shell.App01") and topics in routing_policy are
// case-sensitive, and "fedmsg.consumers.gateway.port" is one top-level key.
// So Viper.ReadConfig/Unmarshal cannot be used. viper's codec registry can:
// its decoders return the document as map[string]any untouched, so the
// formats are read with them, and the merge (top-level replace, like Python's
// dict.update) and the decode (mapstructure, per key, so that an error names
// its key and file) are done here. viper's environment support reads the
// process environment only, which would defeat ConfigLoader.Environ, so
// FEDMSG_* variables are handled here too.

// ConfigError names the configuration key, and the file when known, that
// makes a configuration unusable. It matches [ErrConfig] and whatever Err
// matches.
type ConfigError struct {
	// Key is the top-level fedmsg key; empty when the file as a whole is at
	// fault (unreadable, not parseable).
	Key string
	// File is the file the value came from; empty for defaults, environment
	// variables and [ParseConfig].
	File string
	// Err is the reason.
	Err error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.File != "" {
		fmt.Fprintf(&b, " file %s", e.File)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, " key %q", e.Key)
	}
	where := b.String()
	if e.Err == nil {
		return "gilmsg: " + where
	}
	msg := e.Err.Error()
	if strings.HasPrefix(msg, "gilmsg: ") {
		// The cause is one of this package's errors, which leads; the
		// key says where to fix it. One prefix either way.
		return msg + " (" + where + ")"
	}
	return "gilmsg: " + where + ": " + msg
}

// Unwrap returns [ErrConfig] and Err, so that both match with [errors.Is].
func (e *ConfigError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrConfig}
	}
	return []error{ErrConfig, e.Err}
}

// ConfigLoader loads a configuration from explicit inputs; [LoadConfig] is
// the same with fedmsg's standard inputs. Load reads, in this order:
//
//  1. [DefaultConfig];
//  2. every *.json, *.yaml, *.yml and *.toml file of each of Dirs, in
//     lexicographic order (missing dirs are skipped, as are dot files,
//     subdirectories and other files, fedmsg's *.py included);
//  3. Files, in order: a file, or a directory read as in step 2;
//  4. FEDMSG_<KEY> variables of Environ.
//
// The files merge as fedmsg's load_config merges them: objects merge key by
// key at every depth, so a later file's endpoints, certnames or
// routing_policy add and replace entries of the earlier ones' instead of
// replacing the whole object; a list, a string or a number replaces. The
// merged files then replace defaults key by key at the top level (a file
// that sets endpoints drops the default relay_outbound unless it lists it,
// as in Python), and each FEDMSG_<KEY> replaces its key as a whole.
//
// A directory of Dirs that does not exist is skipped, as fedmsg skips it;
// one that exists but cannot be read is an error naming it, as is any file
// that cannot be read: a configuration is never silently half-loaded.
//
// Relative ssldir, ca_cert_location and crl_location values in a file are
// resolved against that file's directory, so a config and its PKI can travel
// together; values from the environment are taken as they are.
//
// An environment value is read as JSON when it parses as JSON
// (FEDMSG_ENDPOINTS='{"a": ["tcp://h:1"]}', FEDMSG_IO_THREADS=4,
// FEDMSG_SIGN_MESSAGES=true), else as a string; for keys whose value is a
// string, the text is taken as is unless it is a quoted JSON string, so that
// FEDMSG_ENVIRONMENT=5 means "5".
//
// Values must have their key's type: "yes" is not a bool, 5 is not a string;
// numbers must be in their key's range ([Config.Validate] lists the ranges),
// so that each bad value is an error naming its key and its file.
// The exceptions are fedmsg's own: a string stands for a list of one where a
// list of strings is wanted (relay_inbound, endpoints values), a whole number
// may be written as a float (JSON's 2.0), and null leaves the zero value.
// Keys Config does not know are kept in [Config.Extra].
type ConfigLoader struct {
	// Dirs are read in order, each one's files in lexicographic order.
	Dirs []string
	// Files are files or directories, read after Dirs.
	Files []string
	// Environ holds "KEY=value" entries, as from os.Environ; only FEDMSG_*
	// ones are used.
	Environ []string
	// Warn, when set, is called for each top-level key that neither Config
	// nor fedmsg knows (see [Config.UnknownKeys]), with the key and the
	// file it came from: usually a typo, which would otherwise be ignored
	// without a word. The key is still kept in Extra.
	Warn func(*ConfigError)
}

// ConfigDirs returns the directories fedmsg reads: /etc/fedmsg.d,
// ~/.fedmsg.d (when the home directory is known) and ./fedmsg.d.
func ConfigDirs() []string {
	dirs := []string{"/etc/fedmsg.d"}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".fedmsg.d"))
	}
	return append(dirs, "fedmsg.d")
}

// LoadConfig loads the configuration as fedmsg does, from [ConfigDirs], then
// files (each a file or a directory), then the process environment; see
// [ConfigLoader] for the order and the rules. Errors are *[ConfigError]
// values (several joined when several keys are wrong). It does not call
// [Config.Validate].
func LoadConfig(files ...string) (*Config, error) {
	return ConfigLoader{Dirs: ConfigDirs(), Files: files, Environ: os.Environ()}.Load()
}

// Load loads the configuration from l's inputs; see [ConfigLoader].
func (l ConfigLoader) Load() (*Config, error) {
	m := newMergedConfig()
	for _, dir := range l.Dirs {
		files, err := configFilesIn(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, &ConfigError{File: dir, Err: err}
		}
		if err := m.addFiles(files); err != nil {
			return nil, err
		}
	}
	for _, path := range l.Files {
		info, err := os.Stat(path)
		if err != nil {
			return nil, &ConfigError{File: path, Err: err}
		}
		files := []string{path}
		if info.IsDir() {
			if files, err = configFilesIn(path); err != nil {
				return nil, &ConfigError{File: path, Err: err}
			}
		}
		if err := m.addFiles(files); err != nil {
			return nil, err
		}
	}
	m.addEnviron(l.Environ)
	m.warn = l.Warn
	return m.decode()
}

// ParseConfig reads one configuration document, in format "json", "yaml"
// (or "yml") or "toml", over [DefaultConfig]. Relative paths stay as they
// are, there being no file to resolve them against.
func ParseConfig(data []byte, format string) (*Config, error) {
	format = strings.ToLower(format)
	if format == "yml" {
		format = "yaml"
	}
	if format != "json" && format != "yaml" && format != "toml" {
		return nil, &ConfigError{Err: fmt.Errorf("unknown format %q: want json, yaml or toml", format)}
	}
	doc, err := parseDocument(data, format)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	m := newMergedConfig()
	m.mergeFile(doc, source{})
	return m.decode()
}

// formatOf names the format of a config file from its extension; "" for a
// file that is not one.
func formatOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return "json"
	case ".yaml", ".yml":
		return "yaml"
	case ".toml":
		return "toml"
	}
	return ""
}

// configFilesIn lists dir's config files in lexicographic order.
func configFilesIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		// Dot files are skipped, as Python's glob does, which also keeps
		// editors' lock and backup files out.
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || formatOf(e.Name()) == "" {
			continue
		}
		files = append(files, filepath.Join(dir, e.Name()))
	}
	return files, nil
}

// parseDocument decodes one document with viper's codec for format, which
// keeps keys as written, and checks that it is a mapping.
func parseDocument(data []byte, format string) (map[string]any, error) {
	doc := map[string]any{}
	if len(bytes.TrimSpace(data)) == 0 {
		return doc, nil // an empty file sets nothing, whatever its format
	}
	dec, err := viper.NewCodecRegistry().Decoder(format)
	if err != nil {
		return nil, fmt.Errorf("unknown format %q: %w", format, err)
	}
	if err := dec.Decode(data, doc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", format, err)
	}
	for k, v := range doc {
		doc[k] = stringKeys(v)
	}
	return doc, nil
}

// stringKeys turns YAML's map[any]any (non-string keys) into map[string]any
// so that every value can be decoded and printed as JSON.
func stringKeys(v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = stringKeys(e)
		}
		return m
	case map[string]any:
		for k, e := range v {
			v[k] = stringKeys(e)
		}
	case []any:
		for i, e := range v {
			v[i] = stringKeys(e)
		}
	}
	return v
}

// source is where a value came from: a file, an environment variable, or
// neither (defaults, ParseConfig).
type source struct{ file, envVar string }

// mergedConfig is the configuration as maps from fedmsg key to value before
// decoding into a Config: the defaults, what the files say (merged among
// themselves as fedmsg merges them), and the environment's overrides. Each
// value remembers its source, and so does each entry of a nested object, so
// that an error names the file at fault.
type mergedConfig struct {
	defaults map[string]any
	files    map[string]any
	env      map[string]any
	from     map[string]source            // top-level key → last source
	subFrom  map[string]map[string]source // key → entry of its object → source
	warn     func(*ConfigError)
}

func newMergedConfig() *mergedConfig {
	return &mergedConfig{
		defaults: DefaultConfig().AsMap(),
		files:    map[string]any{},
		env:      map[string]any{},
		from:     map[string]source{},
		subFrom:  map[string]map[string]source{},
	}
}

// mergeFile merges one file's document into what earlier files said, as
// fedmsg's _recursive_update does: objects merge key by key at every depth,
// anything else (a list, a string, a number, null) replaces.
func (m *mergedConfig) mergeFile(doc map[string]any, src source) {
	for k, v := range doc {
		if obj, ok := v.(map[string]any); ok {
			if m.subFrom[k] == nil {
				m.subFrom[k] = map[string]source{}
			}
			if _, wasObj := m.files[k].(map[string]any); !wasObj {
				clear(m.subFrom[k])
			}
			for sub := range obj {
				m.subFrom[k][sub] = src
			}
		} else {
			delete(m.subFrom, k)
		}
		m.files[k] = mergeValue(m.files[k], v)
		m.from[k] = src
	}
}

func mergeValue(old, v any) any {
	oldObj, ok1 := old.(map[string]any)
	obj, ok2 := v.(map[string]any)
	if !ok1 || !ok2 {
		return v
	}
	for k, e := range obj {
		oldObj[k] = mergeValue(oldObj[k], e)
	}
	return oldObj
}

// merged is the configuration as fedmsg's load_config builds it: the
// defaults, each replaced as a whole by the merged files' value (so a
// file's endpoints drop the default relay_outbound, as in Python), then
// the environment, key by key at the top level.
func (m *mergedConfig) merged() map[string]any {
	out := maps.Clone(m.defaults)
	maps.Copy(out, m.files)
	maps.Copy(out, m.env)
	return out
}

func (m *mergedConfig) addFiles(files []string) error {
	for _, path := range files {
		format := formatOf(path)
		if format == "" {
			return &ConfigError{File: path, Err: errors.New("unknown format: want a .json, .yaml, .yml or .toml file")}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return &ConfigError{File: path, Err: err}
		}
		doc, err := parseDocument(data, format)
		if err != nil {
			return &ConfigError{File: path, Err: err}
		}
		dir, err := filepath.Abs(filepath.Dir(path))
		if err != nil {
			return &ConfigError{File: path, Err: err}
		}
		// A config and its PKI can then be moved together.
		for _, key := range []string{"ssldir", "ca_cert_location", "crl_location"} {
			s, ok := doc[key].(string)
			if ok && s != "" && !strings.Contains(s, "://") && !filepath.IsAbs(s) {
				doc[key] = filepath.Join(dir, s)
			}
		}
		m.mergeFile(doc, source{file: path})
	}
	return nil
}

const envPrefix = "FEDMSG_"

func (m *mergedConfig) addEnviron(environ []string) {
	fields := configFieldIndex()
	for _, kv := range environ {
		name, raw, ok := strings.Cut(kv, "=")
		if !ok || len(name) <= len(envPrefix) || !strings.HasPrefix(name, envPrefix) {
			continue
		}
		key := strings.ToLower(name[len(envPrefix):])
		var value any
		if err := json.Unmarshal([]byte(raw), &value); err != nil {
			value = raw
		}
		if idx, known := fields[key]; known && reflect.TypeFor[Config]().FieldByIndex(idx).Type.Kind() == reflect.String {
			if _, isString := value.(string); !isString {
				value = raw
			}
		}
		m.env[key] = value
		m.from[key] = source{envVar: name}
		delete(m.subFrom, key)
	}
}

// configFieldIndex maps each fedmsg key to its Config field.
func configFieldIndex() map[string][]int {
	t := reflect.TypeFor[Config]()
	idx := make(map[string][]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if key, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ","); key != "" {
			idx[key] = f.Index
		}
	}
	return idx
}

// decode decodes the merged map into a Config, one key at a time so that
// each error names its key and source; keys Config does not know go to
// Extra untouched.
func (m *mergedConfig) decode() (*Config, error) {
	cfg := &Config{}
	fields := configFieldIndex()
	values := m.merged()
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(values)) {
		value := values[key]
		idx, known := fields[key]
		if !known {
			if cfg.Extra == nil {
				cfg.Extra = map[string]any{}
			}
			cfg.Extra[key] = value
			if src := m.from[key]; (src.file != "" || src.envVar != "") && !isFedmsgKey(key) {
				if cfg.keyFiles == nil {
					cfg.keyFiles = map[string]string{}
				}
				cfg.keyFiles[key] = cmp.Or(src.file, src.envVar)
			}
			if m.warn != nil && !isFedmsgKey(key) {
				m.warn(sourceError(key, m.from[key], unknownKeyError(key)))
			}
			continue
		}
		field := reflect.ValueOf(cfg).Elem().FieldByIndex(idx)
		if err := decodeValue(value, field.Addr().Interface()); err != nil {
			errs = append(errs, m.decodeErrors(key, value, field.Type(), err)...)
		} else if err := checkLimit(key, field); err != nil {
			errs = append(errs, sourceError(key, m.from[key], err))
		} else if slices.Contains(valueCheckedKeys, key) {
			for _, e := range cfg.valueErrors(key) {
				src, ok := m.subFrom[key][e.entry]
				if !ok {
					src = m.from[key]
				}
				errs = append(errs, sourceError(key, src, e.err))
			}
		}
	}
	if err := joinErrors(errs); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeErrors words the failure to decode key's value. An object merged
// from several files is decoded again entry by entry, so that each error
// names the file its entry came from.
func (m *mergedConfig) decodeErrors(key string, value any, typ reflect.Type, err error) []error {
	obj, isObj := value.(map[string]any)
	if subs := m.subFrom[key]; isObj && typ.Kind() == reflect.Map && len(subs) > 0 {
		var errs []error
		for _, sub := range slices.Sorted(maps.Keys(obj)) {
			elem := reflect.New(typ.Elem())
			if err := decodeValue(obj[sub], elem.Interface()); err != nil {
				sep := ": "
				if strings.HasPrefix(err.Error(), "[") {
					sep = "" // "[svc][0]: ...", as for the whole object
				}
				errs = append(errs, sourceError(key, subs[sub], fmt.Errorf("[%s]%s%w", sub, sep, err)))
			}
		}
		if len(errs) > 0 {
			return errs
		}
	}
	return []error{sourceError(key, m.from[key], err)}
}

// sourceError is a ConfigError for key naming where its value came from.
func sourceError(key string, src source, err error) *ConfigError {
	if src.envVar != "" {
		err = fmt.Errorf("environment variable %s: %w", src.envVar, err)
	}
	return &ConfigError{Key: key, File: src.file, Err: err}
}

// joinErrors returns nil, the one error, or all of them joined.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// decodeValue decodes one top-level value into target (a pointer to a
// Config field). Input is not weakly typed: "yes" is not a bool and 5 is not
// a string. ZeroFields makes a map or list replace, not merge into, the
// target; null leaves the zero value.
func decodeValue(value, target any) error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:     target,
		DecodeHook: fedmsgTypes,
		ZeroFields: true,
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(value); err != nil {
		return tidyDecodeError(err)
	}
	return nil
}

// tidyDecodeError flattens mapstructure's error tree into one line per
// wrong element, "[svc][0]: want a string, got the number 5", the top-level
// key being named by the ConfigError around it.
func tidyDecodeError(err error) error {
	var parts []string
	var walk func(error)
	walk = func(e error) {
		if de, ok := e.(*mapstructure.DecodeError); ok {
			if de.Name() == "" {
				parts = append(parts, de.Unwrap().Error())
			} else {
				parts = append(parts, de.Name()+": "+de.Unwrap().Error())
			}
			return
		}
		if joined, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range joined.Unwrap() {
				walk(inner)
			}
			return
		}
		if inner := errors.Unwrap(e); inner != nil {
			walk(inner)
			return
		}
		parts = append(parts, e.Error())
	}
	walk(err)
	return errors.New(strings.Join(parts, "; "))
}

// fedmsgTypes is the decode hook that accepts the variants fedmsg accepts
// (a string for a list of strings, as relay_inbound and endpoints values
// may be; a whole float such as JSON's 2.0 for an int) and words type
// errors for people rather than for Go.
func fedmsgTypes(from, to reflect.Value) (any, error) {
	data := from.Interface()
	fk := from.Kind()
	isInt := fk >= reflect.Int && fk <= reflect.Uint64
	isFloat := fk == reflect.Float32 || fk == reflect.Float64
	switch to.Kind() {
	case reflect.String:
		if fk != reflect.String {
			return nil, wantError("a string", data)
		}
	case reflect.Bool:
		if fk != reflect.Bool {
			return nil, wantError("true or false", data)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if isFloat {
			f := from.Float()
			if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return nil, wantError("a whole number", data)
			}
			return int64(f), nil
		}
		if !isInt {
			return nil, wantError("a whole number", data)
		}
	case reflect.Float32, reflect.Float64:
		if !isInt && !isFloat {
			return nil, wantError("a number", data)
		}
	case reflect.Slice:
		if fk == reflect.String && to.Type().Elem().Kind() == reflect.String {
			if s := from.String(); s != "" {
				return []string{s}, nil
			}
			return []string{}, nil
		}
		if fk != reflect.Slice && fk != reflect.Array {
			return nil, wantError("a list", data)
		}
	case reflect.Map:
		if fk != reflect.Map {
			return nil, wantError("an object", data)
		}
	}
	return data, nil
}

func wantError(want string, got any) error {
	var desc string
	switch v := got.(type) {
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		desc = fmt.Sprintf("the string %q", v)
	case bool:
		desc = fmt.Sprint(v)
	case float32, float64, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		desc = fmt.Sprintf("the number %v", v)
	case []any:
		desc = "a list"
	case map[string]any:
		desc = "an object"
	default:
		desc = fmt.Sprintf("a %T", v)
	}
	return fmt.Errorf("want %s, got %s", want, desc)
}

// AsMap returns the configuration as fedmsg keys and values, Extra keys
// included, as fedmsg-config would print it: unset optional keys (name,
// cert_prefix, mute) are left out, unset paths are null, and a
// relay_inbound of one address is a string, fedmsg's type for it. Lists and maps
// of known keys are copies; Extra values are shared with c.
func (c *Config) AsMap() map[string]any {
	m := make(map[string]any, len(c.Extra)+48)
	maps.Copy(m, c.Extra)
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if key == "" {
			continue
		}
		fv := v.Field(i)
		if strings.HasSuffix(f.Tag.Get("json"), ",omitempty") && fv.IsZero() {
			delete(m, key)
			continue
		}
		m[key] = exportValue(key, fv.Interface())
	}
	return m
}

func exportValue(key string, v any) any {
	switch v := v.(type) {
	case []string:
		if key == "relay_inbound" && len(v) == 1 {
			return v[0] // fedmsg's type: a string
		}
		return slices.Clone(v)
	case string:
		switch key {
		case "ca_cert_cache", "crl_location", "crl_cache":
			if v == "" {
				return nil // fedmsg's default is None
			}
		}
	case map[string]string:
		return maps.Clone(v)
	case map[string][]string:
		if v == nil {
			return v
		}
		m := make(map[string][]string, len(v))
		for k, list := range v {
			m[k] = slices.Clone(list)
		}
		return m
	}
	return v
}

// Validate reports what makes c unusable, as one *[ConfigError] per problem
// (joined when there are several): malformed addresses in endpoints or
// relay_inbound, a name that is not in endpoints (unless active), an active
// publisher without relay_inbound, numbers out of their key's range
// (io_threads 1 to 256; ack_timeout more than 0; other durations 0 or more;
// every duration at most 1e9 seconds; ZeroMQ options as libzmq takes
// them; zmq_tcp_keepalive_cnt, _idle or _intvl 0 unless zmq_tcp_keepalive
// is -1), signing with a backend other than x509 or gpg (or gpg without
// gpg_home), accepting a backend that is neither, validating without a CA,
// CA or CRL URLs that are not https://, and gpg_keys entries shorter than
// a 16-digit key id.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Err: fmt.Errorf(format, args...)})
	}

	for _, key := range valueCheckedKeys {
		for _, e := range c.valueErrors(key) {
			errs = append(errs, &ConfigError{Key: key, Err: e.err})
		}
	}
	if c.Active && len(c.RelayInbound) == 0 {
		bad("relay_inbound", "an active publisher needs an address to connect to")
	}
	if c.Name != "" && !c.Active {
		if addrs, ok := c.Endpoints[c.Name]; !ok {
			bad("name", "%q is not a name in endpoints, so there is nowhere to bind", c.Name)
		} else if len(addrs) == 0 {
			bad("endpoints", "%q (this process's name) has no address", c.Name)
		}
	}

	v := reflect.ValueOf(c).Elem()
	fields := configFieldIndex()
	for _, key := range slices.Sorted(maps.Keys(numericLimits)) {
		if key == "ack_timeout" && c.AckTimeout == 0 {
			continue // unset: AckTimeoutDuration's default
		}
		if err := checkLimit(key, v.FieldByIndex(fields[key])); err != nil {
			bad(key, "%v", err)
		}
	}

	if c.ZMQTCPKeepalive != -1 {
		// libzmq sets these only when zmq_tcp_keepalive is not -1; Linux
		// refuses 0 for each, and libzmq then drops every connection with
		// no error to anyone (TestKeepaliveZero).
		for _, k := range []struct {
			key string
			val int
		}{
			{"zmq_tcp_keepalive_cnt", c.ZMQTCPKeepaliveCnt},
			{"zmq_tcp_keepalive_idle", c.ZMQTCPKeepaliveIdle},
			{"zmq_tcp_keepalive_intvl", c.ZMQTCPKeepaliveIntvl},
		} {
			if k.val == 0 {
				bad(k.key, "0 with zmq_tcp_keepalive %d makes libzmq drop every TCP connection, silently (the system refuses 0); use -1 for the system's default", c.ZMQTCPKeepalive)
			}
		}
	}

	switch {
	case !c.SignMessages:
	case c.CryptoBackend == "gpg" && c.GPGHome == "":
		bad("gpg_home", "signing with crypto_backend gpg needs gpg_home")
	case c.CryptoBackend != "x509" && c.CryptoBackend != "gpg":
		bad("crypto_backend", "%q: only x509 and gpg can sign", c.CryptoBackend)
	}
	if c.ValidateSignatures && c.CACertLocation == "" {
		bad("ca_cert_location", "validate_signatures is on but no CA certificate is set")
	}
	return joinErrors(errs)
}

// valueCheckedKeys are the keys whose values [Config.valueErrors] judges
// alone, without the rest of the configuration: the loader checks them
// too, so that an error names the file of the bad value.
var valueCheckedKeys = []string{"endpoints", "relay_inbound", "crypto_validate_backends", "ca_cert_location", "crl_location", "gpg_keys"}

// entryError is a bad value: entry names the object entry it is in (a
// name in endpoints), "" for the key's value as a whole.
type entryError struct {
	entry string
	err   error
}

// valueErrors judges key's value alone: malformed addresses, unknown
// backends, CA or CRL URLs that are not https://, gpg_keys entries that
// are not a 16-digit key id or a fingerprint.
func (c *Config) valueErrors(key string) []entryError {
	var out []entryError
	switch key {
	case "endpoints":
		for _, name := range slices.Sorted(maps.Keys(c.Endpoints)) {
			for _, addr := range c.Endpoints[name] {
				if err := checkAddress(addr); err != nil {
					out = append(out, entryError{name, fmt.Errorf("%q: %w", name, err)})
				}
			}
		}
	case "relay_inbound":
		for _, addr := range c.RelayInbound {
			if err := checkAddress(addr); err != nil {
				out = append(out, entryError{"", err})
			}
		}
	case "crypto_validate_backends":
		for _, b := range c.CryptoValidateBackends {
			if b != "x509" && b != "gpg" {
				// As fedmsg.crypto.init raises.
				out = append(out, entryError{"", fmt.Errorf("%q is not a crypto backend (x509, gpg)", b)})
			}
		}
	case "gpg_keys":
		for _, name := range slices.Sorted(maps.Keys(c.GPGKeys)) {
			if err := checkKeySpec(c.GPGKeys[name]); err != nil {
				out = append(out, entryError{name, fmt.Errorf("%q: %w", name, err)})
			}
		}
	case "ca_cert_location", "crl_location":
		loc := c.CACertLocation
		if key == "crl_location" {
			loc = c.CRLLocation
		}
		if strings.Contains(loc, "://") && !strings.HasPrefix(loc, "https://") {
			out = append(out, entryError{"", fmt.Errorf("%q: only https:// URLs are supported", loc)})
		}
	}
	return out
}

// checkAddress accepts the ZeroMQ addresses a fedmsg bus can use:
// tcp://host:port (port a number or "*", host anything ZeroMQ resolves,
// "*" and "[::1]" included), ipc://path and inproc://name.
func checkAddress(addr string) error {
	scheme, rest, ok := strings.Cut(addr, "://")
	switch {
	case !ok:
		return fmt.Errorf("%q is not a ZeroMQ address (tcp://host:port)", addr)
	case strings.ContainsAny(addr, " \t\r\n"):
		return fmt.Errorf("%q contains white space", addr)
	case scheme == "ipc" || scheme == "inproc":
		if rest == "" {
			return fmt.Errorf("%q has no %s name", addr, scheme)
		}
		return nil
	case scheme != "tcp":
		return fmt.Errorf("%q: transport %q is not tcp, ipc or inproc", addr, scheme)
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return fmt.Errorf("%q is not tcp://host:port", addr)
	}
	if port := rest[i+1:]; port != "*" {
		if n, err := strconv.Atoi(port); err != nil || strconv.Itoa(n) != port || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not a number from 1 to 65535 or *", addr, port)
		}
	}
	return nil
}
