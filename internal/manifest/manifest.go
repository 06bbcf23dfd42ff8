// Package manifest reads and writes the state repository's environment
// manifests, in the JSON format of the original Argo-based system, and picks
// versions. Fields Runway does not know are kept on rewrite.
package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Paths in the state repository.
const (
	ProductionEnv  = "production"
	ProductionPath = "apps/production/manifests/production.json"
	StagingDir     = "apps/staging/manifests"
)

// StagingPath is the file of staging environment env.
func StagingPath(env string) string { return path.Join(StagingDir, env+".json") }

var envRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$`)

// ValidEnvName reports whether s can name an environment: a DNS label of at
// most 40 characters, so it fits in a gateway host name, and not a name
// that go-git or a filesystem refuses as a file name (<name>.json in the
// state repo): the Windows device names con, prn, aux, nul, com0-9 and
// lpt0-9, which go-git's checkout rejects on every platform.
func ValidEnvName(s string) error {
	if !envRE.MatchString(s) {
		return fmt.Errorf("environment name %q must be a DNS label of [a-z0-9-], at most 40 characters", s)
	}
	if reservedFileName(s) {
		return fmt.Errorf("environment name %q is a reserved device name (con, prn, aux, nul, com0-9, lpt0-9) that some filesystems and go-git refuse as a file name", s)
	}
	return nil
}

// reservedFileName reports whether s is a Windows device name: a file
// named s.json cannot be checked out by go-git (core.protectNTFS is on by
// default) nor created on Windows.
func reservedFileName(s string) bool {
	switch s {
	case "con", "prn", "aux", "nul":
		return true
	}
	if len(s) == 4 && (strings.HasPrefix(s, "com") || strings.HasPrefix(s, "lpt")) {
		return s[3] >= '0' && s[3] <= '9'
	}
	return false
}

// Manifest is one environment: every app it runs and at which version.
type Manifest struct {
	EnvName               string
	ChangeDescription     string
	DeployingWorkflowName string
	Apps                  map[string]*App
	extra                 fields
}

// App is one app of an environment.
type App struct {
	Images                Images
	Deploy                Deploy
	LastChangeDescription string
	// DeployingWorkflowName is the workflow that put this version of the
	// app here (deploying_workflow_name in the app's entry, a field
	// Runway adds; the original has it for the whole manifest only). The
	// manifest-wide one names the last change of any app; with several
	// apps promoted close together each app's report goes to its own
	// change's workflow. Empty: the manifest's.
	DeployingWorkflowName string
	extra                 fields
}

// Workflow is the workflow app's deploy reports go to in m: the app's
// own deploying workflow, else the manifest's.
func (m *Manifest) Workflow(app string) string {
	if a, ok := m.Apps[app]; ok && a.DeployingWorkflowName != "" {
		return a.DeployingWorkflowName
	}
	return m.DeployingWorkflowName
}

// Images are the app's artifacts: Code is what runs, Pipeline holds its
// migrations and functional tests.
type Images struct {
	Code     Image
	Pipeline *Image
	extra    fields
}

// Image names an artifact. Tag is the version.
type Image struct {
	Image string
	Tag   string
	Label string
	extra fields
}

// Deploy says which git revision the app was built from.
type Deploy struct {
	Revision string
	extra    fields
}

// Version is the app's image tag.
func (a *App) Version() string { return a.Images.Code.Tag }

// Parse decodes a manifest and checks what Runway relies on.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	if err := ValidEnvName(m.EnvName); err != nil {
		return nil, fmt.Errorf("manifest envname: %w", err)
	}
	for name, a := range m.Apps {
		if a == nil {
			return nil, fmt.Errorf("manifest app %q is null", name)
		}
		if !envRE.MatchString(name) {
			return nil, fmt.Errorf("manifest app name %q must be a DNS label of [a-z0-9-]", name)
		}
		if a.Images.Code.Image == "" {
			return nil, fmt.Errorf("manifest app %q has no images.code.image", name)
		}
	}
	return &m, nil
}

// Marshal encodes the manifest, indented, with a final newline.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// Clone returns a deep copy (through JSON, so unknown fields come along).
func (m *Manifest) Clone() *Manifest {
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("manifest: cloning: %v", err)) // cannot happen: all fields are JSON values
	}
	var c Manifest
	if err := json.Unmarshal(b, &c); err != nil {
		panic(fmt.Sprintf("manifest: cloning: %v", err))
	}
	return &c
}

// AppNames returns the app names, sorted.
func (m *Manifest) AppNames() []string {
	names := make([]string, 0, len(m.Apps))
	for n := range m.Apps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// fields holds the JSON members a type does not know, to write them back.
type fields map[string]json.RawMessage

// decode splits obj into the known members (decoded into the pointers of
// known) and the rest.
func decode(data []byte, known map[string]any) (fields, error) {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil, nil
	}
	var all fields
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, err
	}
	for k, dst := range known {
		raw, ok := all[k]
		if !ok {
			continue
		}
		delete(all, k)
		if bytes.Equal(raw, []byte("null")) {
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
	}
	return all, nil
}

// encode merges known members over extra. Members whose value is nil are
// left out.
func encode(extra fields, known map[string]any) ([]byte, error) {
	out := make(map[string]any, len(extra)+len(known))
	for k, v := range extra {
		out[k] = v
	}
	for k, v := range known {
		if v == nil {
			continue
		}
		out[k] = v
	}
	return json.Marshal(out) // map keys are sorted: stable diffs
}

// UnmarshalJSON implements json.Unmarshaler.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	extra, err := decode(b, map[string]any{
		"envname": &m.EnvName, "change_description": &m.ChangeDescription,
		"deploying_workflow_name": &m.DeployingWorkflowName, "apps": &m.Apps,
	})
	m.extra = extra
	return err
}

// MarshalJSON implements json.Marshaler.
func (m *Manifest) MarshalJSON() ([]byte, error) {
	apps := m.Apps
	if apps == nil {
		apps = map[string]*App{}
	}
	return encode(m.extra, map[string]any{
		"envname": m.EnvName, "change_description": m.ChangeDescription,
		"deploying_workflow_name": m.DeployingWorkflowName, "apps": apps,
	})
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *App) UnmarshalJSON(b []byte) error {
	extra, err := decode(b, map[string]any{
		"images": &a.Images, "deploy": &a.Deploy, "last_change_description": &a.LastChangeDescription,
		"deploying_workflow_name": &a.DeployingWorkflowName,
	})
	a.extra = extra
	return err
}

// MarshalJSON implements json.Marshaler.
func (a *App) MarshalJSON() ([]byte, error) {
	known := map[string]any{"images": &a.Images}
	if a.Deploy.Revision != "" || len(a.Deploy.extra) > 0 {
		known["deploy"] = &a.Deploy
	}
	if a.LastChangeDescription != "" {
		known["last_change_description"] = a.LastChangeDescription
	}
	if a.DeployingWorkflowName != "" {
		known["deploying_workflow_name"] = a.DeployingWorkflowName
	}
	return encode(a.extra, known)
}

// UnmarshalJSON implements json.Unmarshaler.
func (i *Images) UnmarshalJSON(b []byte) error {
	extra, err := decode(b, map[string]any{"code": &i.Code, "pipeline": &i.Pipeline})
	i.extra = extra
	return err
}

// MarshalJSON implements json.Marshaler.
func (i *Images) MarshalJSON() ([]byte, error) {
	known := map[string]any{"code": &i.Code}
	if i.Pipeline != nil {
		known["pipeline"] = i.Pipeline
	}
	return encode(i.extra, known)
}

// UnmarshalJSON implements json.Unmarshaler.
func (i *Image) UnmarshalJSON(b []byte) error {
	extra, err := decode(b, map[string]any{"image": &i.Image, "image_tag": &i.Tag, "label": &i.Label})
	i.extra = extra
	return err
}

// MarshalJSON implements json.Marshaler.
func (i *Image) MarshalJSON() ([]byte, error) {
	return encode(i.extra, map[string]any{"image": i.Image, "image_tag": i.Tag, "label": i.Label})
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Deploy) UnmarshalJSON(b []byte) error {
	extra, err := decode(b, map[string]any{"revision": &d.Revision})
	d.extra = extra
	return err
}

// MarshalJSON implements json.Marshaler.
func (d *Deploy) MarshalJSON() ([]byte, error) {
	return encode(d.extra, map[string]any{"revision": d.Revision})
}

// EnvNameFromPath returns the environment a state repo path describes, or
// "" when the path is not a manifest (including a staging file named after
// production).
func EnvNameFromPath(p string) string {
	if p == ProductionPath {
		return ProductionEnv
	}
	dir, file := path.Split(p)
	if strings.TrimSuffix(dir, "/") != StagingDir || !strings.HasSuffix(file, ".json") {
		return ""
	}
	env := strings.TrimSuffix(file, ".json")
	if env == ProductionEnv {
		return "" // a staging file can never stand for production
	}
	return env
}
