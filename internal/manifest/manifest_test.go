package manifest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const original = `{
  "envname": "production",
  "change_description": "ping returns json",
  "deploying_workflow_name": "homelabping-abc12",
  "owner": {"team": "homelab"},
  "apps": {
    "homelabping": {
      "images": {
        "code": {"image": "ghcr.io/x/homelabping", "image_tag": "v20230101120000", "label": "main", "digest": "sha256:1"},
        "pipeline": {"image": "ghcr.io/x/homelabping-pipeline", "image_tag": "v20230101120000", "label": "main"},
        "debug": {"image": "busybox"}
      },
      "deploy": {"revision": "0123abc", "sync_wave": 2},
      "last_change_description": "ping returns json",
      "replicas_hint": 3
    }
  }
}`

func TestRoundTripKeepsUnknownFields(t *testing.T) {
	m, err := Parse([]byte(original))
	if err != nil {
		t.Fatal(err)
	}
	m.Apps["homelabping"].Images.Code.Tag = "v20240101120000"
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(strings.Replace(original, `"image_tag": "v20230101120000", "label": "main", "digest"`, `"image_tag": "v20240101120000", "label": "main", "digest"`, 1)), &want); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("round trip changed the document:\n got %s\nwant %s", gb, wb)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"not json", `{"envname":`, "decoding manifest"},
		{"bad envname", `{"envname":"../etc","apps":{}}`, "envname"},
		{"upper envname", `{"envname":"Prod","apps":{}}`, "envname"},
		{"null app", `{"envname":"production","apps":{"a":null}}`, "is null"},
		{"hostile app name", `{"envname":"production","apps":{"a;rm -rf":{"images":{"code":{"image":"x"}}}}}`, "DNS label"},
		{"no image", `{"envname":"production","apps":{"a":{"images":{"code":{}}}}}`, "no images.code.image"},
		{"wrong type", `{"envname":"production","apps":[]}`, "apps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	m, err := Parse([]byte(original))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Clone()
	c.Apps["homelabping"].Images.Code.Tag = "changed"
	if m.Apps["homelabping"].Version() != "v20230101120000" {
		t.Fatalf("clone shares state with the original")
	}
}

func TestNewVersion(t *testing.T) {
	now := time.Date(2026, 11, 25, 19, 50, 38, 900, time.FixedZone("CET", 3600))
	tests := []struct {
		name  string
		taken map[string]bool
		want  string
	}{
		{"free", nil, "v20261125185038"},
		{"same second taken", map[string]bool{"v20261125185038": true}, "v20261125185039"},
		{"two taken", map[string]bool{"v20261125185038": true, "v20261125185039": true}, "v20261125185040"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewVersion(now, func(v string) bool { return tt.taken[v] })
			if got != tt.want {
				t.Fatalf("NewVersion = %s, want %s", got, tt.want)
			}
			if err := ValidEnvName(got); err != nil {
				t.Fatalf("version is not a valid env name: %v", err)
			}
		})
	}
}

func TestEnvNameFromPath(t *testing.T) {
	tests := []struct{ name, path, want string }{
		{"production", ProductionPath, "production"},
		{"staging", "apps/staging/manifests/v1.json", "v1"},
		{"nested", "apps/staging/manifests/x/v1.json", ""},
		{"other", "README.md", ""},
		{"not json", "apps/staging/manifests/v1.yaml", ""},
		{"staging file named production", "apps/staging/manifests/production.json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EnvNameFromPath(tt.path); got != tt.want {
				t.Fatalf("EnvNameFromPath(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(original))
	f.Add([]byte(`{"envname":"x","apps":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("parsed manifest does not marshal: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("marshalled manifest does not parse: %v\n%s", err, out)
		}
	})
}

func TestValidEnvName(t *testing.T) {
	tests := []struct {
		name, env string
		ok        bool
	}{
		{"version", "v20260101000000", true},
		{"dns label", "feature-x1", true},
		{"forty characters", "a" + strings.Repeat("b", 39), true},
		{"com without digit is a name", "com", true},
		{"reserved prefix in a longer name", "nul-x", true},
		{"nul", "nul", false},
		{"con", "con", false},
		{"aux", "aux", false},
		{"prn", "prn", false},
		{"com1", "com1", false},
		{"lpt9", "lpt9", false},
		{"upper case", "NUL", false},
		{"colon", "a:b", false},
		{"backslash", `a\b`, false},
		{"slash", "a/b", false},
		{"control character", "a\x01b", false},
		{"dot", "a.b", false},
		{"empty", "", false},
		{"forty-one characters", "a" + strings.Repeat("b", 40), false},
		{"very long", strings.Repeat("a", 300), false},
		{"leading hyphen", "-a", false},
		{"trailing hyphen", "a-", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidEnvName(tt.env)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidEnvName(%q) = %v, want ok=%v", tt.env, err, tt.ok)
			}
		})
	}
}

func TestWorkflowPerApp(t *testing.T) {
	m, err := Parse([]byte(`{"envname":"production","deploying_workflow_name":"api-2-production","apps":{
  "web":{"images":{"code":{"image":"web","image_tag":"v1"}},"deploying_workflow_name":"web-1-production"},
  "api":{"images":{"code":{"image":"api","image_tag":"v2"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for app, want := range map[string]string{"web": "web-1-production", "api": "api-2-production", "gone": "api-2-production"} {
		if got := m.Workflow(app); got != want {
			t.Errorf("Workflow(%s) = %q, want %q", app, got, want)
		}
	}
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), `"deploying_workflow_name"`); n != 2 {
		t.Errorf("rewritten manifest has %d deploying_workflow_name fields, want 2 (the manifest's and web's):\n%s", n, out)
	}
}
