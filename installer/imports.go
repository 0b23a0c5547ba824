package installer

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// imports returns the config's top-level imports.
func (c *mainConfig) imports() ([]string, error) {
	raw, ok := c.doc["imports"]
	if !ok {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: imports is not an array", ErrConfig, c.path)
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s: imports holds %v, not a path", ErrConfig, c.path, v)
		}
		out = append(out, s)
	}
	return out, nil
}

// importsFile reports whether containerd, loading the config, imports
// file: an entry names it (relative entries are relative to the
// config's directory, as containerd resolves them) or a glob matches it.
func (c *mainConfig) importsFile(file string) (bool, error) {
	list, err := c.imports()
	if err != nil {
		return false, err
	}
	for _, e := range list {
		if matchImport(c.path, e, file) {
			return true, nil
		}
	}
	return false, nil
}

func matchImport(config, entry, file string) bool {
	p := filepath.Clean(entry)
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(config), p)
	}
	if strings.Contains(p, "*") {
		ok, _ := filepath.Match(p, file)
		return ok
	}
	return p == file
}

// withImport returns the config's bytes with file appended to imports,
// or the bytes unchanged when it already imports file.
func (c *mainConfig) withImport(file string) ([]byte, error) {
	if ok, err := c.importsFile(file); err != nil || ok {
		return c.data, err
	}
	list, _ := c.imports()
	return c.setImports(append(list, file))
}

// withoutImport returns the config's bytes without the entries naming
// file exactly (a glob that matches it is the operator's, and stays); the
// imports key goes when it ends up empty.
func (c *mainConfig) withoutImport(file string) ([]byte, error) {
	list, err := c.imports()
	if err != nil {
		return nil, err
	}
	var keep []string
	for _, e := range list {
		if strings.Contains(e, "*") || !matchImport(c.path, e, file) {
			keep = append(keep, e)
		}
	}
	if len(keep) == len(list) {
		return c.data, nil
	}
	return c.setImports(keep)
}

// setImports returns the config's bytes with the imports value replaced
// by list (nil or empty: the key removed), every other byte as it was.
// The result must parse to the old document with only that change.
func (c *mainConfig) setImports(list []string) ([]byte, error) {
	loc, err := locate(c.data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, c.path, err)
	}
	value, err := toml.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("marshal imports: %w", err)
	}
	var out []byte
	switch {
	case loc.importsValue != nil && len(list) == 0:
		out = splice(c.data, lineOf(c.data, loc.importsKey, loc.importsValue[1]), nil)
	case loc.importsValue != nil:
		out = splice(c.data, *loc.importsValue, value)
	case len(list) == 0:
		return c.data, nil
	default:
		at := lineEnd(c.data, loc.versionKey)
		out = splice(c.data, [2]int{at, at}, append([]byte("\nimports = "), value...))
	}
	if err := c.verify(out, list); err != nil {
		return nil, err
	}
	return out, nil
}

// verify checks that out parses to the config's document with imports
// set to list (removed when empty).
func (c *mainConfig) verify(out []byte, list []string) error {
	var got, want map[string]any
	if err := toml.Unmarshal(out, &got); err != nil {
		return fmt.Errorf("%w: %s: edited imports do not parse: %w", ErrConfig, c.path, err)
	}
	if err := toml.Unmarshal(c.data, &want); err != nil {
		return fmt.Errorf("%w: parse %s: %w", ErrConfig, c.path, err)
	}
	delete(want, "imports")
	if len(list) > 0 {
		l := make([]any, len(list))
		for i, s := range list {
			l[i] = s
		}
		want["imports"] = l
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%w: %s: cannot edit imports without changing more (imports written in an unusual form?)", ErrConfig, c.path)
	}
	return nil
}

// location is where the top-level keys the installer edits are.
type location struct {
	versionKey   int     // offset of the version key
	importsKey   int     // offset of the imports key
	importsValue *[2]int // byte range of the imports value, nil when absent
}

// locate finds the top-level version and imports keys with the TOML
// parser and the extent of the imports array by scanning it.
func locate(data []byte) (location, error) {
	loc := location{versionKey: -1}
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind == unstable.Table || e.Kind == unstable.ArrayTable {
			break // top-level keys come before the first table
		}
		if e.Kind != unstable.KeyValue {
			continue
		}
		keys := e.Key()
		if !keys.Next() {
			continue
		}
		k := keys.Node()
		if keys.Next() {
			continue // a dotted key
		}
		switch string(k.Data) {
		case "version":
			loc.versionKey = int(k.Raw.Offset)
		case "imports":
			loc.importsKey = int(k.Raw.Offset)
			r, err := arrayExtent(data, int(k.Raw.Offset+k.Raw.Length))
			if err != nil {
				return loc, err
			}
			loc.importsValue = &r
		}
	}
	if err := p.Error(); err != nil {
		return loc, err
	}
	if loc.versionKey < 0 {
		return loc, fmt.Errorf("no top-level version key")
	}
	return loc, nil
}

// arrayExtent returns the byte range of the array value of the key that
// ends at from: from `[` to its matching `]`, skipping strings and
// comments.
func arrayExtent(data []byte, from int) ([2]int, error) {
	i := from
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '=') {
		i++
	}
	if i >= len(data) || data[i] != '[' {
		return [2]int{}, fmt.Errorf("imports is not an array")
	}
	start, depth := i, 0
	for ; i < len(data); i++ {
		switch data[i] {
		case '[':
			depth++
		case ']':
			if depth--; depth == 0 {
				return [2]int{start, i + 1}, nil
			}
		case '#':
			i = lineEnd(data, i) - 1
		case '"', '\'':
			end, err := stringEnd(data, i)
			if err != nil {
				return [2]int{}, err
			}
			i = end - 1
		}
	}
	return [2]int{}, fmt.Errorf("imports array not closed")
}

// stringEnd returns the offset after the string starting at i (basic or
// literal, single- or multi-line).
func stringEnd(data []byte, i int) (int, error) {
	q := data[i]
	delim := []byte{q}
	if bytes.HasPrefix(data[i:], []byte{q, q, q}) {
		delim = []byte{q, q, q}
	}
	for j := i + len(delim); j < len(data); j++ {
		if q == '"' && data[j] == '\\' {
			j++
			continue
		}
		if bytes.HasPrefix(data[j:], delim) {
			return j + len(delim), nil
		}
	}
	return 0, fmt.Errorf("string not closed")
}

// lineEnd returns the offset of the newline ending the line holding i
// (len(data) on the last line).
func lineEnd(data []byte, i int) int {
	if n := bytes.IndexByte(data[i:], '\n'); n >= 0 {
		return i + n
	}
	return len(data)
}

// lineOf returns the range of the whole lines from the one holding start
// to the one holding end, newline included.
func lineOf(data []byte, start, end int) [2]int {
	from := bytes.LastIndexByte(data[:start], '\n') + 1
	to := lineEnd(data, end)
	if to < len(data) {
		to++
	}
	return [2]int{from, to}
}

// splice returns data with range r replaced by with.
func splice(data []byte, r [2]int, with []byte) []byte {
	out := make([]byte, 0, len(data)-(r[1]-r[0])+len(with))
	out = append(out, data[:r[0]]...)
	out = append(out, with...)
	return append(out, data[r[1]:]...)
}
