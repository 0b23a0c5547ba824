package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// RuntimeOptions decodes the runtime options containerd passes with a task,
// to a starting shim and to -info. They are runc's options
// (containerd.runc.v1.Options), as for the stock runc shim, in one of two
// wrappings:
//   - as they are: from ctr, the Go client, and CRI for the runc runtime
//     type;
//   - from CRI for any other runtime type (io.containerd.watch.v2 among
//     them), the generic runtimeoptions.v1.Options, which carries the
//     runtime's options table of config.toml as TOML (ConfigBody) or names
//     a TOML file holding it (ConfigPath).
//
// No options give the defaults. Anything else is an InvalidArgument error.
func RuntimeOptions(a *anypb.Any) (*options.Options, error) {
	if a == nil || (a.GetTypeUrl() == "" && len(a.GetValue()) == 0) {
		return &options.Options{}, nil
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, fmt.Errorf("runtime options: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	switch o := v.(type) {
	case *options.Options:
		return o, nil
	case *runtimeoptions.Options:
		body := o.GetConfigBody()
		if path := o.GetConfigPath(); path != "" {
			if body, err = readOptionsFile(path); err != nil {
				return nil, fmt.Errorf("runtime options: %w", err)
			}
		}
		ro, err := runcOptionsFromTOML(body)
		if err != nil {
			return nil, fmt.Errorf("runtime options: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		return ro, nil
	}
	return nil, fmt.Errorf("runtime options of type %T: %w", v, errdefs.ErrInvalidArgument)
}

func readOptionsFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		}
		return nil, err
	}
	defer f.Close()
	const max = 1 << 20
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && len(b) > max {
		err = fmt.Errorf("%s: larger than 1 MiB: %w", path, errdefs.ErrInvalidArgument)
	}
	return b, err
}

// runcOptionsFromTOML reads runc options from a flat TOML table, as CRI
// writes a runtime's options table of config.toml: a `Key = value` line per
// option, values strings, booleans or integers. Keys are matched ignoring
// case and underscores, so SystemdCgroup and systemd_cgroup are the same.
// Keys that are not runc options are skipped with a warning, as the runc
// runtime type's decoding ignores them.
func runcOptionsFromTOML(b []byte) (*options.Options, error) {
	// TOML is UTF-8; reading a string of other bytes would change them.
	if !utf8.Valid(b) {
		return nil, errors.New("not UTF-8")
	}
	o := &options.Options{}
	seen := map[string]bool{}
	for n, line := range bytes.Split(b, []byte("\n")) {
		s := strings.Trim(string(line), " \t\r")
		if s == "" || s[0] == '#' {
			continue
		}
		if s[0] == '[' {
			return nil, fmt.Errorf("line %d: %q: runc options are a flat table", n+1, s)
		}
		key, val, err := tomlKey(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q: %w", n+1, s, err)
		}
		v, err := tomlScalar(val)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n+1, key, err)
		}
		known, err := setRuncOption(o, key, v)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n+1, key, err)
		}
		if !known {
			log.L.WithField("key", key).Warn("runtime options: not a runc option, ignored")
			continue
		}
		// Spellings of one option are one key, which TOML sets once.
		if seen[optionName(key)] {
			return nil, fmt.Errorf("line %d: %s: set twice", n+1, key)
		}
		seen[optionName(key)] = true
	}
	return o, nil
}

// setRuncOption sets the runc option key names to v; false when key names
// none.
func setRuncOption(o *options.Options, key string, v tomlValue) (bool, error) {
	str := func(p *string) error {
		if v.str == nil {
			return errors.New("want a string")
		}
		*p = *v.str
		return nil
	}
	boolean := func(p *bool) error {
		if v.boolean == nil {
			return errors.New("want true or false")
		}
		*p = *v.boolean
		return nil
	}
	u32 := func(p *uint32) error {
		if v.integer == nil || *v.integer < 0 || *v.integer > 1<<32-1 {
			return errors.New("want an integer from 0 to 2^32-1")
		}
		*p = uint32(*v.integer)
		return nil
	}
	switch optionName(key) {
	case "nopivotroot":
		return true, boolean(&o.NoPivotRoot)
	case "nonewkeyring":
		return true, boolean(&o.NoNewKeyring)
	case "shimcgroup":
		return true, str(&o.ShimCgroup)
	case "iouid":
		return true, u32(&o.IoUid)
	case "iogid":
		return true, u32(&o.IoGid)
	case "binaryname":
		return true, str(&o.BinaryName)
	case "root":
		return true, str(&o.Root)
	case "systemdcgroup":
		return true, boolean(&o.SystemdCgroup)
	case "criuimagepath":
		return true, str(&o.CriuImagePath)
	case "criuworkpath":
		return true, str(&o.CriuWorkPath)
	case "taskapiaddress":
		return true, str(&o.TaskApiAddress)
	case "taskapiversion":
		return true, u32(&o.TaskApiVersion)
	}
	return false, nil
}

// optionName is key as setRuncOption matches it: case and underscores
// ignored.
func optionName(key string) string { return strings.ToLower(strings.ReplaceAll(key, "_", "")) }
